#!/usr/bin/env python3
"""What each dependency costs in the wasm module: `make size`.

Reads a module built with its `name` section (the release profile without `strip`), sums the
code of every function by the crate its mangled name belongs to, and prints a markdown table
by feature. Data (the module's constant tables) has no names in the binary; its total is shown
as one line. The release module itself is stripped, so its size is the sum of the code and data
sections plus a few small ones.

Usage: module_size.py UNSTRIPPED.wasm [RELEASE.wasm]
"""
import collections
import os
import re
import sys

# Which feature each crate serves (a crate not listed is shown under its own name).
FEATURES = {
    "JSON Schema (boon) with its regex, URL and IDNA validation": [
        "boon", "regex", "regex_automata", "regex_syntax", "aho_corasick", "memchr", "url", "idna",
        "idna_adapter", "icu_normalizer", "icu_properties", "icu_collections", "icu_provider",
        "icu_locale_core", "fluent_uri", "percent_encoding", "ahash", "appendlist", "once_cell",
        "form_urlencoded", "utf8_iter", "write16", "zerovec", "zerofrom", "yoke", "tinystr",
        "potential_utf", "smallvec", "borrow"],
    "JWT signatures in Rust (PS*, EdDSA, HS*; RS* and ES* when Envoy has no verify_signature)": [
        "rsa", "num_bigint_dig", "num_integer", "num_traits", "num_iter", "p256", "p384", "p521",
        "primeorder", "elliptic_curve", "ecdsa", "crypto_bigint", "ed25519_compact", "der", "spki",
        "pkcs1", "pkcs8", "const_oid", "signature", "ff", "group", "subtle", "zeroize",
        "base16ct", "sec1", "hmac_sha256", "hmac_sha512", "digest", "block_buffer", "crypto_common",
        "generic_array", "typenum"],
    "SHA-256 (API keys, token cache, rate-limit slots)": ["sha2", "cpufeatures"],
    "Configuration parsing with JSON paths in errors (serde_path_to_error)": [
        "serde_path_to_error"],
    "JSON (serde, serde_json)": ["serde_json", "serde", "serde_core", "itoa", "ryu", "zmij"],
    "SQLi/XSS screening (libinjectionrs)": ["libinjectionrs"],
    "Global rate limits: protobuf (prost)": ["prost", "bytes"],
    "CIDR lists (ipnet)": ["ipnet"],
    "base64": ["base64"],
    "proxy-wasm SDK": ["proxy_wasm", "log"],
    "api-guard itself": ["api_guard"],
    "Rust standard library and allocator": ["core", "alloc", "std", "hashbrown", "dlmalloc",
                                            "compiler_builtins", "wasi", "adler2", "rustc_demangle",
                                            "panic_abort"],
}
CRATE_FEATURE = {crate: feature for feature, crates in FEATURES.items() for crate in crates}


def leb(data, i):
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def read_module(path):
    """Section sizes, function body sizes by index, function names by index."""
    data = open(path, "rb").read()
    pos, imported, bodies, names = 8, 0, [], {}
    sections = collections.Counter()
    while pos < len(data):
        sid = data[pos]
        size, pos = leb(data, pos + 1)
        end = pos + size
        if sid == 0:
            length, p = leb(data, pos)
            name = data[p:p + length].decode()
            p += length
            sections["custom " + name] += size
            if name == "name":
                while p < end:
                    sub = data[p]
                    sub_size, p = leb(data, p + 1)
                    sub_end = p + sub_size
                    if sub == 1:  # function names
                        count, q = leb(data, p)
                        for _ in range(count):
                            index, q = leb(data, q)
                            length, q = leb(data, q)
                            names[index] = data[q:q + length].decode("utf8", "replace")
                            q += length
                    p = sub_end
        else:
            sections[{10: "code", 11: "data"}.get(sid, "other")] += size
            if sid == 2:  # imports: functions among them come first in the index space
                count, p = leb(data, pos)
                for _ in range(count):
                    for _ in range(2):
                        length, p = leb(data, p)
                        p += length
                    kind = data[p]
                    p += 1
                    if kind == 0:
                        _, p = leb(data, p)
                        imported += 1
                    elif kind == 1:
                        p += 1
                        flags, p = leb(data, p)
                        _, p = leb(data, p)
                        if flags & 1:
                            _, p = leb(data, p)
                    elif kind == 2:
                        flags, p = leb(data, p)
                        _, p = leb(data, p)
                        if flags & 1:
                            _, p = leb(data, p)
                    elif kind == 3:
                        p += 2
            elif sid == 10:
                count, p = leb(data, pos)
                for k in range(count):
                    length, p = leb(data, p)
                    bodies.append((imported + k, length))
                    p += length
        pos = end
    return sections, bodies, names


def crate_of(symbol):
    """The crate of a mangled Rust symbol (legacy `_ZN` or v0 `_R`); for a trait impl, the
    crate of the implementing type."""
    if symbol.startswith("_ZN"):
        m = re.match(r"_ZN(\d+)", symbol)
        first = symbol[m.end():m.end() + int(m.group(1))]
        if first.startswith("_$LT$"):
            inner = re.match(r"_\$LT\$(?:\$RF\$|mut\$u20\$|\$u5b\$)*([a-z_0-9]+)\.\.", first)
            return inner.group(1) if inner else "(generic impls)"
        return first
    if symbol.startswith("_R"):
        m = re.search(r"C(?:s[0-9a-zA-Z]*_)?(\d+)([a-z_0-9]+)", symbol)
        if m:
            return m.group(2)[:int(m.group(1))]
    return "(exports and runtime)"


def main():
    sections, bodies, names = read_module(sys.argv[1])
    release = os.path.getsize(sys.argv[2]) if len(sys.argv) > 2 else None
    by_feature = collections.Counter()
    by_crate = collections.Counter()
    for index, size in bodies:
        crate = crate_of(names.get(index, ""))
        by_crate[crate] += size
        by_feature[CRATE_FEATURE.get(crate, crate)] += size
    code, data = sections["code"], sections["data"]
    print("| part of the module | bytes | share |")
    print("|---|---:|---:|")
    total = code + data
    for feature, size in by_feature.most_common():
        if size >= 4096:
            print(f"| code: {feature} | {size:,} | {size / total:.0%} |")
    rest = sum(size for size in by_feature.values() if size < 4096)
    print(f"| code: everything else | {rest:,} | {rest / total:.0%} |")
    print(f"| data: constant tables (Unicode tables of regex and IDNA, libinjection's keywords, "
          f"strings) | {data:,} | {data / total:.0%} |")
    if release:
        print(f"| **the release module** (stripped) | **{release:,}** ({release / (1 << 20):.2f} MiB) | |")
    print()
    print("Largest crates by code: " + ", ".join(
        f"{crate} {size / 1024:,.0f} KiB" for crate, size in by_crate.most_common(12)) + ".")


if __name__ == "__main__":
    main()
