#!/usr/bin/env python3
"""Packs the api-guard wasm module as an OCI image layout, without a container engine.

The image follows the *compat* variant of the Wasm OCI image specification, the one format
that both Istio (pkg/wasm, WasmPlugin/TrafficExtension `oci://` URLs) and Envoy Gateway
(internal/wasm, EnvoyExtensionPolicy `type: Image`) pull as a single-layer image: one
`application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm`, the manifest
annotated `module.wasm.image/variant: compat`. (Their *oci* variant,
`application/vnd.module.wasm.content.layer.v1+wasm`, must have exactly two layers, and
neither reads the CNCF `application/wasm` layer; see docs/mesh.md.)

The output is byte-for-byte reproducible: fixed tar metadata, gzip without name or time,
JSON with sorted keys. The same module always gives the same manifest digest, which is the
value Istio's and Envoy Gateway's `sha256` fields compare with.

  oci_image.py build --module M --out DIR [--tag T]   write the layout and DIR.digest
  oci_image.py pin --image REF --digest HEX [--root R]  write url and sha256 into manifests
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
WASM_FILE = "plugin.wasm"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def layer_tar(module):
    """An uncompressed tar with one file, plugin.wasm, and no varying metadata."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(WASM_FILE)
        info.size = len(module)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(module))
    return out.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return out.getvalue()


def cargo_version(root):
    with open(os.path.join(root, "Cargo.toml"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r'^version\s*=\s*"([^"]+)"', line)
            if m:
                return m.group(1)
    raise SystemExit("Cargo.toml has no version")


def build(module_path, out_dir, tag, version):
    with open(module_path, "rb") as f:
        module = f.read()
    if module[:4] != b"\0asm":
        raise SystemExit(f"{module_path} is not a wasm module")

    tar = layer_tar(module)
    layer = gzip_bytes(tar)
    config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(tar)]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": "sha256:" + sha256_hex(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": LAYER_MEDIA_TYPE,
                    "digest": "sha256:" + sha256_hex(layer),
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": WASM_FILE},
                }
            ],
            "annotations": {
                "module.wasm.image/variant": "compat",
                "org.opencontainers.image.title": "api-guard",
                "org.opencontainers.image.description": "api-guard proxy-wasm HTTP filter for Envoy, Istio and Envoy Gateway",
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.licenses": "Apache-2.0",
            },
        }
    )
    digest = sha256_hex(manifest)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": "sha256:" + digest,
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )

    blobs = os.path.join(out_dir, "blobs", "sha256")
    if os.path.isdir(blobs):
        for name in os.listdir(blobs):  # a rebuild leaves no stale blob behind
            os.remove(os.path.join(blobs, name))
    os.makedirs(blobs, exist_ok=True)
    for blob in (layer, config, manifest):
        with open(os.path.join(blobs, sha256_hex(blob)), "wb") as f:
            f.write(blob)
    with open(os.path.join(out_dir, "oci-layout"), "wb") as f:
        f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(out_dir, "index.json"), "wb") as f:
        f.write(index)
    return digest, sha256_hex(module)


# `url:` followed by `sha256:` as the manifests write them (Istio: oci://REF, Envoy Gateway:
# REF under `image:`). The API-key digests inside pluginConfig are never touched.
PIN = re.compile(r"^(\s*url: )(oci://)?(\S+)\n(\s*sha256: )([0-9a-f]{64})$", re.M)


def pin(root, image, digest):
    changed = []
    for sub in ("envoy/istio", "envoy/gateway"):
        directory = os.path.join(root, sub)
        for name in sorted(os.listdir(directory)):
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            new = PIN.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{image}\n{m.group(4)}{digest}", text)
            if new != text:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
                changed.append(os.path.join(sub, name))
    return changed


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build")
    b.add_argument("--module", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--tag", default=None, help="ref name in index.json (default: Cargo version)")
    p = commands.add_parser("pin")
    p.add_argument("--image", required=True, help="registry/repository:tag, without oci://")
    p.add_argument("--digest", required=True, help="manifest digest, 64 hex digits")
    p.add_argument("--root", default=root)
    args = parser.parse_args()

    if args.command == "build":
        version = cargo_version(root)
        digest, module_sha = build(args.module, args.out, args.tag or version, version)
        print(f"oci image layout: {args.out} (ref {args.tag or version})")
        print(f"module sha256:    {module_sha}")
        print(f"manifest digest:  sha256:{digest}")
        # Beside the layout (not in it): what `make pin` writes into the manifests.
        with open(args.out.rstrip("/") + ".digest", "w", encoding="utf-8") as f:
            f.write(digest + "\n")
    else:
        image = args.image.removeprefix("oci://")
        if not re.fullmatch(r"[0-9a-f]{64}", args.digest.removeprefix("sha256:")):
            raise SystemExit("--digest: expected 64 lowercase hex digits")
        changed = pin(args.root, image, args.digest.removeprefix("sha256:"))
        print("pinned " + (", ".join(changed) if changed else "nothing (already pinned)"))


if __name__ == "__main__":
    sys.exit(main())
