#!/usr/bin/env python3
"""A webhook receiver for keyrot's tests, written from the documented
contract (docs/notifications.md), not from keyrot's code.

It accepts POSTs on 127.0.0.1:PORT and, for each, checks the
`X-Keyrot-Signature: t=UNIX,v1=HEX` header: HEX must be HMAC-SHA256 under
the shared secret over `UNIX.body` (compared in constant time) and UNIX
within the replay window of the receiver's clock. It appends one JSON line
per request to LOG: the event id (header and body), the event, whether the
signature held, the SHA-256 of the body and the attempt header; answers
204 to a valid delivery and 401 to any other. `--status CODE` answers
every valid delivery CODE instead (an unhealthy receiver).

Prints "listening on PORT" once it listens. Standard library only.
"""

import argparse
import hashlib
import hmac
import http.server
import json
import sys
import time

WINDOW = 300


def verify(secret, header, body):
    """Whether `header` is a valid signature of `body` now."""
    if not header:
        return False, "no signature"
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False, "no timestamp"
    if abs(time.time() - t) > WINDOW:
        return False, "outside the replay window"
    want = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts.get("v1", "")):
        return False, "bad signature"
    return True, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--status", type=int, default=204)
    args = ap.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            ok, why = verify(secret, self.headers.get("X-Keyrot-Signature"), body)
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {}
            entry = {
                "path": self.path,
                "header_id": self.headers.get("X-Keyrot-Event-Id"),
                "header_event": self.headers.get("X-Keyrot-Event"),
                "attempt": self.headers.get("X-Keyrot-Delivery-Attempt"),
                "content_type": self.headers.get("Content-Type"),
                "id": parsed.get("id") if isinstance(parsed, dict) else None,
                "event": parsed.get("event") if isinstance(parsed, dict) else None,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "signature_ok": ok,
                "why": why,
                "body": body.decode("utf-8", "replace"),
            }
            with open(args.log, "a") as log:
                log.write(json.dumps(entry) + "\n")
            code = args.status if ok else 401
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt, *a):
            sys.stderr.write("%s\n" % (fmt % a))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
