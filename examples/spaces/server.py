"""A tiny HTTP server to run as a knot space: `python3 server.py PORT`.

GET /        a greeting
GET /health  200 while well, 503 while sick
POST /sick   make /health fail (to watch space.unhealthy arrive)
POST /well   make it pass again (space.healthy)
"""

from __future__ import annotations

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    sick = False

    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(503 if Handler.sick else 200, "sick\n" if Handler.sick else "ok\n")
        else:
            self.answer(200, "hello from a knot space\n")

    def do_POST(self) -> None:
        if self.path in ("/sick", "/well"):
            Handler.sick = self.path == "/sick"
            print(f"health is now {'failing' if Handler.sick else 'passing'}", flush=True)
            self.answer(200, "ok\n")
        else:
            self.answer(404, "not found\n")

    def answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per health check would drown the space's log


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"serving on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
