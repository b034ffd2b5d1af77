"""The `search` service of the example: answers every GET with 200 and what it was asked.
With an argument, appends its process id to that file (the helper's tests check that it
stops with frontdoor)."""

import http.server
import os
import sys

if len(sys.argv) > 1:
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")


class Search(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"results for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Search).serve_forever()
