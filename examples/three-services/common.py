"""What the three example services share: a JSON HTTP server on $PORT, as Cloud Run asks."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(answer, receive=None):
    """Serves GET requests with answer(handler) -> (status, JSON-able body), and POST
    requests, if `receive` is given, with receive(handler, body bytes) -> the same."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.reply(*answer(self))

        def do_POST(self):
            if receive is None:
                self.reply(405, {"error": "GET only"})
                return
            try:
                length = int(self.headers.get("content-length", ""))
            except ValueError:
                length = -1
            if not 0 <= length <= 10_000_000:
                self.reply(411, {"error": "a body with a content-length of at most 10 MB"})
                return
            self.reply(*receive(self, self.rfile.read(length)))

        def reply(self, status, body):
            if body is None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            data = json.dumps(body, indent=2).encode() + b"\n"
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)

    port = int(os.environ["PORT"])
    # Loopback beside frontdoor; all interfaces in a container (docker-compose sets BIND).
    bind = os.environ.get("BIND", "127.0.0.1")
    print(f"{os.environ.get('K_REVISION')} listening on {bind}:{port}", flush=True)
    ThreadingHTTPServer((bind, port), Handler).serve_forever()
