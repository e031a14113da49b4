"""A webhook receiver that checks knot's signatures: `python3 receiver.py PORT SECRET`.

Standard library only. Each POST is verified twice — Knot's `X-Knot-Signature` and the Standard
Webhooks `webhook-signature` — then printed as one line; a bad signature is answered 401 (which
knot counts as a failed attempt, retries, and finally audits).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def knot_signature_ok(body: bytes, header: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def standard_signature_ok(body: bytes, headers: dict[str, str], secret: str) -> bool:
    key = secret.encode()
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            pass
    stamp = headers.get("webhook-timestamp", "0")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return False  # replayed or clock-skewed
    signed = f"{headers.get('webhook-id', '')}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[-1] for s in headers.get("webhook-signature", "").split()]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: knot reuses its connection for every event
    # The status line and headers go out in one write, the body in a second: with Nagle's
    # algorithm on, the second waits for the client's (delayed, ~40 ms) ACK of the first, and
    # the receiver manages ~23 requests/s. TCP_NODELAY sends both at once.
    disable_nagle_algorithm = True
    secret = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        ok = knot_signature_ok(body, headers.get("x-knot-signature", ""), self.secret)
        ok = ok and standard_signature_ok(body, headers, self.secret)
        kind, event_id = headers.get("x-knot-event-type"), headers.get("x-knot-event-id")
        if ok:
            print(f"verified {kind} {event_id} {json.dumps(json.loads(body))}", flush=True)
        else:
            print(f"REJECTED {kind} {event_id}: bad signature", flush=True)
        reply = json.dumps({"ok": ok}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port, Handler.secret = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
