#!/usr/bin/env python3
"""The demo upstream behind Envoy (make run, docker compose): answers every request with a
JSON report of what it received, and with headers that reveal its stack, which api-guard
strips. Standard library only. Listens on 127.0.0.1:8080 (override with PORT / BIND)."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache/2.4.1"
    sys_version = "(Unix)"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        report = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body_bytes": len(body),
            },
            indent=2,
        ).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(report)))
        self.send_header("x-powered-by", "PHP/8.3.1")
        self.end_headers()
        self.wfile.write(report)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    address = (os.environ.get("BIND", "127.0.0.1"), int(os.environ.get("PORT", "8080")))
    ThreadingHTTPServer(address, Echo).serve_forever()
