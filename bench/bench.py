#!/usr/bin/env python3
"""api-guard side-by-side benchmark: Envoy with no filter, with api-guard, and with Envoy's
native filters doing the same job, one worker each, driven by wrk in interleaved rounds.

Run it with `make bench`. Settings (environment):
  BENCH_SECONDS      seconds of wrk per measurement (default 5)
  BENCH_ROUNDS       interleaved rounds (default 3)
  BENCH_CONNECTIONS  wrk connections (default 16; one wrk thread)
  BENCH_TOKENS       distinct JWTs per no-cache scenario (default 1000)
  BENCH_SCENARIOS    comma-separated scenario names to run (default: all)
  BENCH_MEMORY       1 (default) to measure wasm memory after 100,000 distinct clients
  BENCH_OUT          where to write the markdown (default bench/RESULTS.md)
  BENCH_MODULE       the wasm module (default target/wasm32-wasip1/release/api_guard.wasm)
  BENCH_COMPARE      extra api-guard builds to run next to it, `label=path.wasm;label2=...`
                     (before/after comparisons: each becomes a variant `api-guard@label`)
  BENCH_CHECKS       0 skips the checks of response headers (for experimental builds)
  BENCH_ROUTES       direct or up: measure only that route (default both)
  ENVOY_BIN          Envoy (default .venv/bin/envoy)
  BENCH_SCREENING    1: measure only what screening a large body costs (no wrk; a few
                     seconds), and print a markdown table instead of writing BENCH_OUT

Standard library only, plus `cryptography` (to mint JWTs) which the Makefile provides.
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
TOKENS = int(os.environ.get("BENCH_TOKENS", "1000"))
ONLY = [s for s in os.environ.get("BENCH_SCENARIOS", "").split(",") if s]
ROUTES = [r for r in os.environ.get("BENCH_ROUTES", "").split(",") if r]
MEMORY = os.environ.get("BENCH_MEMORY", "1") == "1"
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "RESULTS.md"))
MODULE = os.path.abspath(
    os.environ.get("BENCH_MODULE", os.path.join(ROOT, "target/wasm32-wasip1/release/api_guard.wasm"))
)
NOOP_MODULE = os.path.join(ROOT, "bench/noop/target/wasm32-wasip1/release/bench_noop.wasm")
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(ROOT, ".venv/bin/envoy"))
COMPARE = [tuple(x.split("=", 1)) for x in os.environ.get("BENCH_COMPARE", "").split(";") if "=" in x]
WORK = tempfile.mkdtemp(prefix="api-guard-bench-")

ISSUER = "https://idp.bench.example"
AUDIENCE = "bench-api"
API_KEY = "ak_bench_partner_7c1e5d2a9b"
CLIENT_ID = "partner-bench"

PENDING = "pending: feature not built"


class BenchError(Exception):
    pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Keys and tokens (cryptography signs; the JWS encoding is a few lines of base64url).


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Keys:
    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()

    def jwks(self, alg):
        from cryptography.hazmat.primitives import serialization

        if alg == "RS256":
            n = self.rsa.public_key().public_numbers()
            key = {"kty": "RSA", "n": uint_b64(n.n), "e": uint_b64(n.e)}
        elif alg == "ES256":
            n = self.ec.public_key().public_numbers()
            key = {"kty": "EC", "crv": "P-256", "x": b64url(n.x.to_bytes(32, "big")),
                   "y": b64url(n.y.to_bytes(32, "big"))}
        else:
            raw = self.ed.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            key = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        key.update({"kid": alg.lower() + "-1", "alg": alg, "use": "sig"})
        return {"keys": [key]}

    def token(self, alg, sub):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "kid": alg.lower() + "-1"}
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now - 60,
                  "exp": now + 6 * 3600, "scope": "orders:read"}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        if alg == "RS256":
            sig = self.rsa.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256":
            r, s = decode_dss_signature(self.ec.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = self.ed.sign(signing_input)
        return signing_input.decode() + "." + b64url(sig)


# ---------------------------------------------------------------------------------------------
# Envoy configurations.

WASM_FILTER = "envoy.filters.http.wasm"
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}

# Reads the whole request body before the route answers: a real upstream reads the body, and
# Envoy answering early (direct_response) closes the connection, one connection per request.
BUFFER = {"name": "envoy.filters.http.buffer",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                           "max_request_bytes": 1 << 20}}

# api-guard's `api` profile, spelled for Envoy's header_mutation (src/policy/harden.rs).
HARDEN_REMOVE = ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator",
                 "x-runtime", "x-version", "x-powered-cms", "x-drupal-cache", "x-drupal-dynamic-cache",
                 "x-varnish", "x-backend-server", "x-server", "x-sourcemap", "sourcemap",
                 "liferay-portal", "x-nextjs-cache", "x-php-version"]
HARDEN_SET = [("strict-transport-security", "max-age=31536000; includeSubDomains"),
              ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
              ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
              ("referrer-policy", "no-referrer"), ("cross-origin-resource-policy", "same-origin"),
              ("x-permitted-cross-domain-policies", "none")]
NO_HARDENING = {"profile": "off", "response_remove": []}


def api_guard_filter(config, module=None):
    return {"name": WASM_FILTER, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": "api-guard", "root_id": "api-guard", "fail_open": False,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(config)},
                   "vm_config": {"vm_id": "api-guard", "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": module or MODULE}}}}}}


# A proxy-wasm filter that does nothing: what any wasm filter costs before its own work.
NOOP = api_guard_filter({}, NOOP_MODULE)


def with_module(filter_config, module):
    copy = json.loads(json.dumps(filter_config))
    copy["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = module
    return copy


def header_mutation_filter():
    mutations = [{"remove": name} for name in HARDEN_REMOVE]
    mutations += [{"append": {"header": {"key": k, "value": v},
                              "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}} for k, v in HARDEN_SET]
    mutations.append({"append": {"header": {"key": "cache-control", "value": "no-store"},
                                 "append_action": "ADD_IF_ABSENT"}})
    return {"name": "envoy.filters.http.header_mutation", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"response_mutations": mutations}}}


def jwt_authn_filter(jwks, cache):
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": json.dumps(jwks)}}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 4096}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def api_key_auth_filter():
    return {"name": "envoy.filters.http.api_key_auth", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
        "credentials": [{"key": API_KEY, "client": CLIENT_ID}],
        "key_sources": [{"header": "x-api-key"}],
        "forwarding": {"header": "x-api-client", "hide_credentials": True}}}


def local_ratelimit_filter(tokens, fill_seconds):
    percent = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "rl_on"}
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "bench_rl",
        "token_bucket": {"max_tokens": tokens, "tokens_per_fill": tokens,
                         "fill_interval": f"{fill_seconds}s"},
        "filter_enabled": percent, "filter_enforced": percent,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03"}}


def bootstrap(filters, upstream_port, direct_body="direct\n"):
    """Listener on a free port: /direct answered by Envoy itself, /up proxied to the upstream."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "server_header_transformation": "PASS_THROUGH",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/direct"},
                             "direct_response": {"status": 200, "body": {"inline_string": direct_body}}},
                            {"match": {"prefix": "/up"},
                             "route": {"cluster": "upstream", "timeout": "10s"}}]}]},
                        "http_filters": filters + [ROUTER]}}]}]}],
            "clusters": [{
                "name": "upstream", "connect_timeout": "1s", "type": "STATIC",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": upstream_port}}}}]}]}}]}}


def upstream_bootstrap():
    """The real upstream: a second Envoy answering every request itself, with headers that
    hardening removes."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "upstream",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "upstream",
                    "server_header_transformation": "PASS_THROUGH",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "{\"ok\":true}\n"}},
                        "response_headers_to_add": [
                            {"header": {"key": "server", "value": "upstream/1.0"}},
                            {"header": {"key": "x-powered-by", "value": "bench"}},
                            {"header": {"key": "content-type", "value": "application/json"}}]}]}]},
                    "http_filters": [BUFFER, ROUTER]}}]}]}]}}


class Envoy:
    def __init__(self, name, config, concurrency=1):
        self.name = name
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        self.admin_path = os.path.join(self.dir, "admin-address")
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.proc = subprocess.Popen(
            [ENVOY, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart",
             "--admin-address-path", self.admin_path, "--log-path", self.log_path,
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = self.admin_port = None

    def wait_ready(self, timeout=60):
        """True when ready; False when Envoy exited (see log())."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.admin_port is None and os.path.exists(self.admin_path):
                text = open(self.admin_path).read().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port:
                try:
                    status, body = get(self.admin_port, "/ready")
                    if status == 200:
                        _, listeners = get(self.admin_port, "/listeners?format=json")
                        v = json.loads(listeners)
                        self.port = v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                        return True
                except (OSError, KeyError, ValueError, http.client.HTTPException):
                    pass
            time.sleep(0.1)
        raise BenchError(f"{self.name}: Envoy not ready within {timeout} s\n{self.log()[-3000:]}")

    def log(self):
        try:
            return open(self.log_path).read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def get(port, path, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def probe(port, path, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# wrk.


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_lua(name, method="GET", headers=None, body=None, header_cycle=None):
    """A wrk script: fixed headers and body, or one request per element of header_cycle
    (name, values), prebuilt in init() so the client's cost stays small and equal for all."""
    lines = [f"wrk.method = {lua_string(method)}"]
    for k, v in (headers or {}).items():
        lines.append(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}")
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    if header_cycle:
        hname, values = header_cycle
        lines.append("local values = {" + ",\n".join(lua_string(v) for v in values) + "}")
        lines.append(f"""
local reqs = {{}}
local i = 0
function init(args)
  for k, v in ipairs(values) do
    local h = {{}}
    for hk, hv in pairs(wrk.headers) do h[hk] = hv end
    h[{lua_string(hname)}] = v
    reqs[k] = wrk.format(nil, nil, h)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end""")
    path = os.path.join(WORK, name + ".lua")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def connections_total(admin_port):
    _, body = get(admin_port, "/stats?filter=^http.bench.downstream_cx_total$")
    m = re.search(rb"downstream_cx_total: (\d+)", body)
    return int(m.group(1)) if m else 0


def wrk(port, path, script, seconds=None, connections=None, pid=None, admin_port=None):
    seconds = seconds or SECONDS
    cpu_before = cpu_seconds(pid) if pid else None
    cx_before = connections_total(admin_port) if admin_port else None
    connections = connections or CONNECTIONS
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s",
           "-s", script, f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {out.stderr}{out.stdout}")
    text = out.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        raise BenchError(f"cannot read wrk output:\n{text}")
    result = {"rps": float(m.group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        result["p" + pct] = float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    result["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    result["errors"] = sum(int(x) for x in m.groups()) if m else 0
    if pid and result["requests"]:
        result["cpu_us"] = (cpu_seconds(pid) - cpu_before) * 1e6 / result["requests"]
    if admin_port and result["requests"]:
        result["cx_per_rq"] = (connections_total(admin_port) - cx_before) / result["requests"]
    return result


# ---------------------------------------------------------------------------------------------
# Scenarios.


def sha256_hex(s):
    return hashlib.sha256(s.encode()).hexdigest()


ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "customer", "items"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "pattern": "^ord-[0-9]+$"},
        "customer": {"type": "object", "required": ["id", "email"],
                     "properties": {"id": {"type": "string", "maxLength": 64},
                                    "email": {"type": "string", "maxLength": 254}}},
        "note": {"type": "string", "maxLength": 1024},
        "items": {"type": "array", "minItems": 1, "maxItems": 2000, "items": {
            "type": "object", "required": ["sku", "qty", "price"], "additionalProperties": False,
            "properties": {"sku": {"type": "string", "maxLength": 32},
                           "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                           "price": {"type": "number", "minimum": 0}}}}}}


def order_body(size):
    """A JSON document valid against ORDER_SCHEMA, of about `size` bytes."""
    doc = {"order_id": "ord-1234567", "customer": {"id": "cust-42", "email": "buyer@example.com"},
           "items": []}
    i = 0
    while True:
        doc["items"].append({"sku": f"SKU-{i:06d}", "qty": 1 + i % 9, "price": round(9.99 + i, 2)})
        text = json.dumps(doc, separators=(",", ":"))
        if len(text) >= size - 40:
            pad = max(0, size - len(text) - len(',"note":""'))
            doc["note"] = "x" * pad
            return json.dumps(doc, separators=(",", ":"))
        i += 1


class Scenario:
    """One job, three ways. variants: name -> list of Envoy filters (None: not applicable)."""

    def __init__(self, name, title, variants, routes=("direct", "up"), headers=None,
                 method="GET", body=None, cycle=None, expect=200, check=None, note=""):
        if variants.get("api-guard") is not None:
            for label, path in COMPARE:
                variants[f"api-guard@{label}"] = [
                    with_module(f, os.path.abspath(path)) for f in variants["api-guard"]]
        if ROUTES:
            routes = tuple(r for r in routes if r in ROUTES)
        self.name, self.title, self.variants, self.routes = name, title, variants, routes
        self.headers, self.method, self.body, self.cycle = headers or {}, method, body, cycle
        self.expect, self.check, self.note = expect, check, note


def hardening_check(variant, route, headers):
    if variant in ("none", "wasm-noop"):
        return None
    if headers.get("x-content-type-options") != "nosniff":
        return "x-content-type-options not set"
    if route == "up" and "x-powered-by" in headers:
        return "x-powered-by not removed"
    return None


def scenarios(keys):
    out = []
    out.append(Scenario(
        "hardening", "Header hardening only (`{}`)",
        {"none": [], "api-guard": [api_guard_filter({})], "native": [header_mutation_filter()],
         "wasm-noop": [NOOP]},
        check=hardening_check,
        note="native: header_mutation with the same 18 removals, 7 sets and cache-control if absent; "
             "`wasm-noop`: a proxy-wasm filter that does nothing (bench/noop), the floor of any wasm "
             "filter"))

    def jwt_config(alg, cache_entries):
        return {"jwt_providers": {"bench": {
            "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": [alg],
            "local_jwks": keys.jwks(alg), "cache_entries": cache_entries}},
            "rules": [{"name": "jwt", "match": {"prefix": "/"}, "auth": ["bench"]}],
            "headers": NO_HARDENING}

    token = keys.token("RS256", "user-repeated")
    out.append(Scenario(
        "jwt-rs256-cached", "JWT RS256, one repeated token, cache on",
        {"none": [], "api-guard": [api_guard_filter(jwt_config("RS256", 4096))],
         "native": [jwt_authn_filter(keys.jwks("RS256"), cache=True)], "wasm-noop": [NOOP]},
        headers={"Authorization": "Bearer " + token},
        note="api-guard `cache_entries: 4096`; native jwt_authn with `jwt_cache_config`; "
             "`wasm-noop`: the floor of any wasm filter"))
    for alg in ("RS256", "ES256", "EdDSA"):
        log(f"minting {TOKENS} {alg} tokens")
        tokens = ["Bearer " + keys.token(alg, f"user-{i}") for i in range(TOKENS)]
        out.append(Scenario(
            f"jwt-{alg.lower()}-nocache", f"JWT {alg}, {TOKENS} distinct tokens, cache off",
            {"none": [], "api-guard": [api_guard_filter(jwt_config(alg, 0))],
             "native": [jwt_authn_filter(keys.jwks(alg), cache=False)]},
            cycle=("Authorization", tokens),
            note="every request verifies: api-guard `cache_entries: 0`; native jwt_authn without cache"))

    def key_config(requests, per, log="deny"):
        return {"log": {"decisions": log},"api_keys": {"from_headers": ["x-api-key"], "client_header": "x-api-client",
                             "clients": [{"id": CLIENT_ID, "sha256": sha256_hex(API_KEY)}]},
                "rate_limits": {"bench": {"requests": requests, "per": per}},
                "rules": [{"name": "keyed", "match": {"prefix": "/"}, "auth": ["api_key"],
                           "rate_limit": "bench"}],
                "headers": NO_HARDENING}

    out.append(Scenario(
        "key-ratelimit", "API key + rate limit, under the limit",
        {"none": [], "api-guard": [api_guard_filter(key_config(1_000_000_000, "second"))],
         "native": [api_key_auth_filter(), local_ratelimit_filter(1_000_000_000, 1)],
         "wasm-noop": [NOOP]},
        headers={"x-api-key": API_KEY},
        note="native: api_key_auth + local_ratelimit (one bucket, x-ratelimit headers)"))
    out.append(Scenario(
        "key-ratelimit-429", "API key + rate limit, over the limit (429)",
        {"none": [], "api-guard": [api_guard_filter(key_config(1, "hour", log="off"))],
         "native": [api_key_auth_filter(), local_ratelimit_filter(1, 3600)],
         "api-guard, default log": [api_guard_filter(key_config(1, "hour"))],
         "wasm-noop": [NOOP]},
        routes=("direct",), headers={"x-api-key": API_KEY}, expect=429,
        note="every request but the first is refused; `none` answers 200 (the floor). Like "
             "local_ratelimit, which counts 429s in stats but logs nothing, `api-guard` runs with "
             "`log.decisions: off` (its counters still count every 429); `api-guard, default log` "
             "is the default `deny`, which also writes one log line per 429; `wasm-noop` answers "
             "200 like `none`: the floor of any wasm filter"))

    for size, label in ((1024, "1k"), (65536, "64k")):
        body = order_body(size)
        out.append(Scenario(
            f"body-{label}", f"JSON body {len(body)} B against a schema (POST)",
            {"none": [BUFFER], "api-guard": [api_guard_filter({
                "rules": [{"name": "orders", "match": {"prefix": "/"}, "threats": "off", "body": {
                    "max_bytes": 131072, "content_types": ["application/json"],
                    "json_schema": ORDER_SCHEMA}}],
                "headers": NO_HARDENING})],
             "api-guard, threats: log": [api_guard_filter({
                "rules": [{"name": "orders", "match": {"prefix": "/"}, "body": {
                    "max_bytes": 131072, "content_types": ["application/json"],
                    "json_schema": ORDER_SCHEMA}}],
                "headers": NO_HARDENING})],
             "wasm-noop": [BUFFER, NOOP],
             "native": None},
            method="POST", headers={"Content-Type": "application/json"}, body=body, routes=("up",),
            note="Only through the upstream: on the `direct_response` route Envoy answers at the "
                 "request headers, before any filter sees the body, and closes the connection, so "
                 "nothing of the body stage would be measured. "
                 "Envoy has no native schema validator: compared with no filter. `none` here is "
                 "Envoy's `buffer` filter: without a filter, Envoy answers a `direct_response` before "
                 "reading the body and then closes the connection (a new connection per request), "
                 "which is not a baseline; api-guard reads the whole body before the route answers. "
                 "`api-guard` validates only (`threats: off`); `api-guard, threats: log` adds the "
                 "default threat screening of every JSON string; `wasm-noop` is the `buffer` filter "
                 "plus a proxy-wasm filter that does nothing"))
    return out


# ---------------------------------------------------------------------------------------------
# Running.


def start_variant(scenario, variant, filters, upstream_port):
    envoy = Envoy(f"{scenario.name}-{variant}", bootstrap(filters, upstream_port))
    if envoy.wait_ready():
        return envoy, None
    text = envoy.log()
    refused = re.search(r"configuration refused: ([^\n]*)", text)
    if refused and "not supported yet" in refused.group(1):
        return None, PENDING
    raise BenchError(f"{scenario.name}/{variant}: Envoy did not start:\n{text[-4000:]}")


def check_variant(scenario, variant, envoy, route):
    path = "/direct/bench" if route == "direct" else "/up/bench"
    headers = dict(scenario.headers)
    if scenario.cycle:
        headers[scenario.cycle[0]] = scenario.cycle[1][0]
    body = scenario.body.encode() if scenario.body is not None else None
    expect = scenario.expect if variant not in ("none", "wasm-noop") else 200
    statuses = []
    for _ in range(2):  # the 429 scenario refuses from the second request on
        status, got = probe(envoy.port, path, headers, scenario.method, body)
        statuses.append(status)
    if statuses[-1] != expect:
        raise BenchError(f"{scenario.name}/{variant}/{route}: expected {expect}, got {statuses}\n"
                         f"{envoy.log()[-2000:]}")
    if scenario.check and os.environ.get("BENCH_CHECKS", "1") == "1":
        problem = scenario.check(variant, route, got)
        if problem:
            raise BenchError(f"{scenario.name}/{variant}/{route}: {problem}: {got}")


def run_scenario(scenario, upstream_port):
    script = write_lua(scenario.name, scenario.method, scenario.headers, scenario.body, scenario.cycle)
    envoys, status = {}, {}
    try:
        for variant, filters in scenario.variants.items():
            if filters is None:
                status[variant] = "n/a"
                continue
            envoy, pending = start_variant(scenario, variant, filters, upstream_port)
            if envoy is None:
                status[variant] = pending
                continue
            envoys[variant] = envoy
            for route in scenario.routes:
                check_variant(scenario, variant, envoy, route)
        samples = {(v, r): [] for v in envoys for r in scenario.routes}
        for round_no in range(ROUNDS):
            for route in scenario.routes:
                for variant, envoy in envoys.items():
                    path = "/direct/bench" if route == "direct" else "/up/bench"
                    result = wrk(envoy.port, path, script, pid=envoy.proc.pid,
                                 admin_port=envoy.admin_port)

                    expect = scenario.expect if variant not in ("none", "wasm-noop") else 200
                    bad = result["non2xx"] if expect == 200 else result["requests"] - result["non2xx"]
                    if result["errors"] or bad > 1:
                        raise BenchError(f"{scenario.name}/{variant}/{route}: {result}")
                    samples[(variant, route)].append(result)
                    log(f"  round {round_no + 1}/{ROUNDS} {scenario.name:20} {route:6} {variant:9} "
                        f"{result['rps']:9.0f} req/s  p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms  "
                        f"Envoy CPU {result.get('cpu_us', float('nan')):.1f} us/req")
        return samples, status
    finally:
        for envoy in envoys.values():
            envoy.stop()


def summary(samples):
    return {"rps": statistics.median(s["rps"] for s in samples),
            "p50": statistics.median(s["p50"] for s in samples),
            "p99": statistics.median(s["p99"] for s in samples),
            "cpu": statistics.median(s.get("cpu_us", float("nan")) for s in samples),
            "cx": statistics.median(s.get("cx_per_rq", 0.0) for s in samples),
            "spread": (max(s["rps"] for s in samples) - min(s["rps"] for s in samples))
            / max(1.0, statistics.median(s["rps"] for s in samples))}


# ---------------------------------------------------------------------------------------------
# Memory after 100,000 distinct clients.


def wasm_memories(pid):
    """Each VM's wasm linear memory as (size, resident) bytes. V8 reserves 8 GiB per memory
    (the 4 GiB a wasm32 memory can address plus guard pages): the memory in use is the
    read-write mapping just below the inaccessible rest of that reservation."""
    regions, current = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
            if m:
                current = [int(m.group(1), 16), int(m.group(2), 16), m.group(3), 0]
                regions.append(current)
            elif line.startswith("Rss:") and current is not None:
                current[3] = int(line.split()[1]) * 1024
    ends = {r[1]: r for r in regions if r[2].startswith("rw")}
    out = []
    for start, end, perm, _ in regions:
        if perm == "---p" and end - start >= 4 << 30 and start in ends:
            memory = ends[start]
            out.append((memory[1] - memory[0], memory[3]))
    return sorted(out, reverse=True)


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def admin_memory(envoy):
    _, body = get(envoy.admin_port, "/memory")
    v = json.loads(body)
    return int(v["allocated"]), int(v["heap_size"])


def measure_memory(upstream_port):
    config = {"client_ip": {"xff_trusted_hops": 1},
              "rate_limits": {"per-client": {"requests": 10, "per": "minute"}},
              "rules": [{"name": "all", "match": {"prefix": "/"}, "rate_limit": "per-client"}]}
    envoy = Envoy("memory-api-guard", bootstrap([api_guard_filter(config)], upstream_port))
    if not envoy.wait_ready():
        raise BenchError(f"memory: Envoy did not start:\n{envoy.log()[-3000:]}")
    try:
        n = 100_000
        addrs = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 2001)]
        warm = write_lua("memory-warm", header_cycle=("X-Forwarded-For", addrs))
        wrk(envoy.port, "/direct/m", warm, seconds=2)
        before = {"wasm": wasm_memories(envoy.proc.pid), "rss": rss(envoy.proc.pid),
                  "admin": admin_memory(envoy)}
        # 100,000 more distinct clients, each once: 11.x.y.z from index `offset` on, in wrk runs
        # of a few seconds until 100,000 were answered.
        script = os.path.join(WORK, "memory.lua")
        with open(script, "w") as f:
            f.write("""
local i = 0
local offset = 0
function init(args) offset = tonumber(args[1]) or 0 end
function request()
  local n = offset + i
  i = i + 1
  local addr = string.format("11.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = addr})
end
""")
        started = time.time()
        answered = non2xx = 0
        while answered < n:
            out = subprocess.run(
                ["wrk", "-t1", f"-c{CONNECTIONS}", "-d3s", "-s", script,
                 f"http://127.0.0.1:{envoy.port}/direct/m", "--", str(answered)],
                capture_output=True, text=True, timeout=120)
            m = re.search(r"(\d+) requests in", out.stdout)
            if out.returncode != 0 or not m:
                raise BenchError(f"memory: wrk failed: {out.stderr}{out.stdout}")
            answered += int(m.group(1))
            m = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
            non2xx += int(m.group(1)) if m else 0
        elapsed = time.time() - started
        result = {"requests": answered, "non2xx": non2xx}
        after = {"wasm": wasm_memories(envoy.proc.pid), "rss": rss(envoy.proc.pid),
                 "admin": admin_memory(envoy)}
        _, stats = get(envoy.admin_port, "/stats?filter=wasm")
        vms = re.search(r"wasm.envoy.wasm.runtime.v8.active: (\d+)", stats.decode())
        return {"requests": result["requests"], "non2xx": result["non2xx"], "seconds": elapsed,
                "before": before, "after": after, "vms": int(vms.group(1)) if vms else None}
    finally:
        envoy.stop()


# ---------------------------------------------------------------------------------------------
# Report.


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    version = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"version: \S+/(\d+\.\d+\.\d+)/\S+/(\S+)/(\S+)", version)
    envoy_version = f"{m.group(1)} ({m.group(2)}, {m.group(3)})" if m else version
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "envoy": envoy_version, "wrk": wrk_version.strip(),
            "module": os.path.getsize(MODULE), "load": os.getloadavg()}


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}x"


TARGETS = [
    # (description, scenario, compare with, threshold): req/s ratios, on every route measured
    ("hardening only ≥ 0.9x no filter", "hardening", "none", 0.9),
    ("RS256 repeated token ≥ 1.0x native jwt_authn with its cache", "jwt-rs256-cached", "native", 1.0),
    ("RS256 cache off ≥ 0.8x native jwt_authn without cache", "jwt-rs256-nocache", "native", 0.8),
    ("ES256 cache off ≥ 0.8x native jwt_authn without cache", "jwt-es256-nocache", "native", 0.8),
    ("429 path ≥ 1.0x native local_ratelimit", "key-ratelimit-429", "native", 1.0),
    ("1 KiB JSON with schema ≥ 0.7x no filter", "body-1k", "none", 0.7),
]


def report(info, results, memory, started, finished):
    lines = []
    w = lines.append
    w("# api-guard benchmark results")
    w("")
    w(f"Produced by `make bench` on {started:%Y-%m-%d %H:%M} UTC (finished {finished:%H:%M} UTC). "
      "Each Envoy runs one worker (`--concurrency 1`); wrk runs one thread with "
      f"{CONNECTIONS} connections for {SECONDS} s per measurement, in {ROUNDS} interleaved rounds "
      "(each round runs every variant in turn); the table gives the median of the rounds. "
      "`direct`: the route is answered by Envoy's `direct_response` (the filters' own cost); "
      "`up`: proxied to a real upstream (a second Envoy answering with `direct_response`).")
    w("")
    w("## Machine")
    w("")
    w(f"- CPU: {info['cpu']}, {info['cores']} cores")
    w(f"- memory: {info['memory'] / (1 << 30):.1f} GiB; kernel {info['kernel']}")
    w(f"- Envoy {info['envoy']}; {info['wrk']}")
    w(f"- api-guard module: {info['module']:,} bytes ({info['module'] / (1 << 20):.2f} MiB), "
      f"`{os.path.relpath(MODULE, ROOT) if MODULE.startswith(ROOT) else MODULE}`")
    w(f"- load average at start: {' '.join(f'{x:.2f}' for x in info['load'])}; at the end: "
      f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if os.environ.get("BENCH_NOTE"):
        w(f"- note: {os.environ['BENCH_NOTE']}")
    w("")
    w("## Results")
    w("")
    w("| scenario | route | variant | req/s (median) | p50 ms | p99 ms | spread | Envoy CPU µs/req | vs native | vs none |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scenario, samples, status in results:
        for route in scenario.routes:
            rows = {}
            for variant in scenario.variants:
                s = samples.get((variant, route))
                rows[variant] = summary(s) if s else None
            for variant in scenario.variants:
                r = rows[variant]
                if r is None:
                    w(f"| {scenario.title} | {route} | {variant} | {status.get(variant, '–')} | | | | | | |")
                    continue
                vs_native = vs_none = ""
                if variant == "api-guard":
                    native = rows.get("native")
                    none = rows.get("none")
                    vs_native = fmt_ratio(r["rps"], native["rps"]) if native else "–"
                    vs_none = fmt_ratio(r["rps"], none["rps"]) if none else "–"
                w(f"| {scenario.title} | {route} | {variant} | {r['rps']:,.0f} | {r['p50']:.2f} | "
                  f"{r['p99']:.2f} | {r['spread'] * 100:.0f}% | {r['cpu']:.1f} | {vs_native} | {vs_none} |")
    w("")
    w("`spread`: (max − min) / median of the rounds' req/s, a measure of the noise. "
      "Notes on the scenarios:")
    w("")
    for scenario, _, _ in results:
        if scenario.note:
            w(f"- {scenario.title}: {scenario.note}.")
    churn = [(scenario.title, variant, route, summary(s)["cx"])
             for scenario, samples, _ in results for (variant, route), s in samples.items()
             if s and summary(s)["cx"] > 0.05]
    if churn:
        w("")
        w("Keep-alive broken (new downstream connections per request, from Envoy's "
          "`downstream_cx_total`; such a variant pays a TCP connect per request):")
        w("")
        for title, variant, route, cx in churn:
            w(f"- {title}, {route}, {variant}: {cx:.2f} connections per request")
    w("")
    w("## Targets (issue 7)")
    w("")
    w("The last column is the same ratio for `wasm-noop`, a proxy-wasm filter that does nothing, "
      "in the same run: the most any wasm filter can reach on this Envoy and machine.")
    w("")
    w("| target | route | measured | status | wasm-noop floor |")
    w("|---|---|---|---|---:|")
    by_name = {s.name: (s, samples, status) for s, samples, status in results}
    for text, name, base, threshold in TARGETS:
        entry = by_name.get(name)
        if entry is None:
            w(f"| {text} | | not run | – |")
            continue
        scenario, samples, status = entry
        if "api-guard" in status:
            w(f"| {text} | | {status['api-guard']} | pending |")
            continue
        for route in scenario.routes:
            ours, theirs = samples.get(("api-guard", route)), samples.get((base, route))
            if not ours or not theirs:
                w(f"| {text} | {route} | not measured | – |")
                continue
            ratio = summary(ours)["rps"] / summary(theirs)["rps"]
            noop = samples.get(("wasm-noop", route))
            floor = f"{summary(noop)['rps'] / summary(theirs)['rps']:.2f}x" if noop else "–"
            w(f"| {text} | {route} | {ratio:.2f}x | {'met' if ratio >= threshold else 'not met'} "
              f"| {floor} |")
    size_ok = info["module"] <= 2 << 20
    w(f"| module ≤ 2 MiB | | {info['module'] / (1 << 20):.2f} MiB | "
      f"{'met' if size_ok else 'not met'} | |")
    w("")
    if memory:
        w("## Memory after 100,000 distinct clients")
        w("")
        b, a = memory["before"], memory["after"]
        w(f"api-guard with a per-client rate limit (client = X-Forwarded-For, one trusted hop, "
          f"default table of 16,384 slots), one worker; {memory['requests']:,} requests, each from "
          f"a new client (at least 100,000 distinct), in {memory['seconds']:.1f} s, after a "
          f"warm-up of 2,000 clients ({memory['non2xx']} answers not 2xx).")
        w("")
        w("| measure | before | after | growth |")
        w("|---|---:|---:|---:|")
        for i, ((sb, rb), (sa, ra)) in enumerate(zip(b["wasm"], a["wasm"])):
            w(f"| VM {i + 1}: wasm linear memory size | {sb / 1024:,.0f} KiB | {sa / 1024:,.0f} KiB | "
              f"{(sa - sb) / 1024:+,.0f} KiB |")
            w(f"| VM {i + 1}: of which resident | {rb / 1024:,.0f} KiB | {ra / 1024:,.0f} KiB | "
              f"{(ra - rb) / 1024:+,.0f} KiB |")
        w(f"| Envoy heap allocated (admin `/memory`) | {b['admin'][0] / 1024:,.0f} KiB | "
          f"{a['admin'][0] / 1024:,.0f} KiB | {(a['admin'][0] - b['admin'][0]) / 1024:+,.0f} KiB |")
        w(f"| process RSS | {b['rss'] / 1024:,.0f} KiB | {a['rss'] / 1024:,.0f} KiB | "
          f"{(a['rss'] - b['rss']) / 1024:+,.0f} KiB |")
        w("")
        w(f"Method: Envoy's wasm stats give VM counts only (`wasm.envoy.wasm.runtime.v8.active` = "
          f"{memory['vms']}: the configuration VM, the main-thread VM and one per worker), not "
          "memory. V8 reserves 8 GiB of address space per wasm memory (what a wasm32 memory can "
          "address, plus guard pages), outside Envoy's tcmalloc heap; the part in use is the "
          "read-write mapping at the start of that reservation. The bench reads it from "
          "`/proc/<pid>/smaps`: its size is the module's linear memory (what `memory.grow` "
          "reached, in 64 KiB pages), and its resident bytes what the pages touched cost. The "
          "worker's VM is the one that serves the requests; the shared bucket table lives in "
          "Envoy's heap (shared data), which `/memory` reports.")
        w("")
    return "\n".join(lines) + "\n"


def screening_body(size=1_000_000):
    """A JSON array of short strings that are not plain words (each one goes through the
    detector): the costliest body per byte for screening."""
    items = []
    length = 2
    i = 0
    while length < size - 16:
        item = f'"a b{i % 1000}"'
        items.append(item)
        length += len(item) + 1
        i += 1
    return ("[" + ",".join(items) + "]").encode()


def screening_cost(upstream_port, requests=5):
    """Envoy CPU and wall time per 1 MB JSON POST under `threats: log` (a `body` block), with
    the default budget and with a budget large enough to scan it all (as before the budget),
    and under `threats: block` with the default budget (refused when the budget runs out)."""
    body = screening_body()
    variants = [
        ("threats: off", {"rules": [{"match": {"prefix": "/up"}, "threats": "off", "body": {}}]}),
        ("threats: log, budget 64 MiB (everything scanned, as before the budget)",
         {"threat_scan_max_bytes": 64 * 1024 * 1024,
          "rules": [{"match": {"prefix": "/up"}, "threats": "log", "body": {}}]}),
        ("threats: log, default budget (1 MiB)",
         {"rules": [{"match": {"prefix": "/up"}, "threats": "log", "body": {}}]}),
        ("threats: block, default budget (1 MiB)",
         {"rules": [{"match": {"prefix": "/up"}, "threats": "block", "body": {}}]}),
    ]
    rows = []
    for i, (title, config) in enumerate(variants):
        envoy = Envoy(f"screening-{i}", bootstrap([api_guard_filter(config)], upstream_port))
        try:
            if not envoy.wait_ready():
                raise BenchError(f"{title}: Envoy did not start:\n{envoy.log()[-3000:]}")
            headers = {"content-type": "application/json"}
            get(envoy.port, "/up", headers, "POST", body)  # warm-up
            cpu0 = cpu_seconds(envoy.proc.pid)
            walls, statuses = [], set()
            for _ in range(requests):
                t0 = time.perf_counter()
                status, _ = get(envoy.port, "/up", headers, "POST", body)
                walls.append(time.perf_counter() - t0)
                statuses.add(status)
            cpu = (cpu_seconds(envoy.proc.pid) - cpu0) / requests
            rows.append((title, statistics.median(walls), cpu, sorted(statuses)))
        finally:
            envoy.stop()
    lines = [f"POST of a {len(body):,}-byte JSON array of {body.count(b',') + 1:,} short strings "
             f"(`\"a b123\"`), {requests} times after a warm-up, one worker; Envoy {ENVOY_VERSION()}.",
             "", "| rule | status | wall time per request (median) | Envoy CPU per request |",
             "|---|---|---:|---:|"]
    for title, wall, cpu, statuses in rows:
        lines.append(f"| {title} | {', '.join(map(str, statuses))} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms |")
    return "\n".join(lines)


def screening_section(table):
    """The RESULTS.md section for `screening_cost`'s table."""
    return ("## Screening a large body (issue 14)\n\n"
            "CPU is the api-guard Envoy's user + system time (`/proc/<pid>/stat`, 10 ms ticks) "
            "divided by the requests; wall time includes the upstream. Each string goes through "
            "the detector (not a plain word). Run alone with `BENCH_SCREENING=1 python3 "
            "bench/bench.py` (about 30 s).\n\n" + table + "\n\n"
            "The budget counts each detector call as 256 bytes on top of its input, so such a body "
            "exhausts the default budget after about 4,000 strings: what a client can buy is "
            "bounded by `threat_scan_max_bytes`, not by `max_bytes` (docs/request-model.md, "
            "\"What is screened\").\n")


def ENVOY_VERSION():
    try:
        out = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"version: [0-9a-f]+/([0-9.]+)/", out)
        return m.group(1) if m else "?"
    except OSError:
        return "?"


def main():
    if os.environ.get("BENCH_SCREENING") == "1":
        upstream = Envoy("upstream", upstream_bootstrap())
        try:
            if not upstream.wait_ready():
                raise BenchError(f"upstream Envoy did not start:\n{upstream.log()[-3000:]}")
            print(screening_section(screening_cost(upstream.port)))
        finally:
            upstream.stop()
            shutil.rmtree(WORK, ignore_errors=True)
        return
    if not os.path.exists(ENVOY):
        raise BenchError(f"Envoy not found at {ENVOY}: run `make envoy` or set ENVOY_BIN")
    if not os.path.exists(MODULE):
        raise BenchError(f"module not found at {MODULE}: run `make build`")
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: `make bench` installs it (apt-get install wrk)")
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    log(f"api-guard bench: {SECONDS} s x {ROUNDS} rounds, {CONNECTIONS} connections; work dir {WORK}")
    keys = Keys()
    upstream = Envoy("upstream", upstream_bootstrap())
    if not upstream.wait_ready():
        raise BenchError(f"upstream Envoy did not start:\n{upstream.log()[-3000:]}")
    results = []
    memory = None
    try:
        for scenario in scenarios(keys):
            if ONLY and scenario.name not in ONLY:
                continue
            log(f"scenario {scenario.name}: {scenario.title}")
            samples, status = run_scenario(scenario, upstream.port)
            for variant, text in status.items():
                log(f"  {variant}: {text}")
            results.append((scenario, samples, status))
        if MEMORY:
            log("memory: 100,000 distinct clients")
            memory = measure_memory(upstream.port)
        log("screening a large body")
        screening = screening_section(screening_cost(upstream.port))
    finally:
        upstream.stop()
    finished = datetime.datetime.now(datetime.timezone.utc)
    text = report(info, results, memory, started, finished) + "\n" + screening
    with open(OUT, "w") as f:
        f.write(text)
    print(text)
    log(f"written to {OUT}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"bench: error: {e}")
        log(f"(Envoy configurations and logs kept in {WORK})")
        sys.exit(1)
