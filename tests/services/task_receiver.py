"""A Cloud Tasks (or Cloud Scheduler) HTTP target as Google's samples write one, for
frontdoor's tests: it verifies each request's ID token with google-auth
(`id_token.verify_oauth2_token`, Google's default certificates URL, reached through the
proxy `frontdoor env` sets), checks its `email` and `aud`, and records the request.

usage: task_receiver.py RECORD AUDIENCE EMAIL

RECORD gets one JSON line per request: its method, path, headers, body, the token's
claims (or why it was refused), and the status answered. A path under /fail is answered
503 (to prove retries); /hang never answers (to prove the dispatch deadline); any other
204."""

import http.server
import json
import os
import sys
import threading
import time

from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

RECORD, AUDIENCE, EMAIL = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()
session = google_requests.Request()


def record(entry):
    with lock, open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(errors="replace"),
        }
        try:
            token = self.headers.get("Authorization", "").split(" ", 1)[1]
            claims = id_token.verify_oauth2_token(token, session, audience=AUDIENCE)
            if claims["email"] != EMAIL or not claims.get("email_verified"):
                raise ValueError(f"unexpected email {claims['email']}")
            entry["claims"] = claims
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
            self.answer(400, entry)
            return
        if self.path.startswith("/hang"):
            entry["status"] = None
            record(entry)
            time.sleep(3600)
            return
        self.answer(503 if self.path.startswith("/fail") else 204, entry)

    do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = handle_any

    def answer(self, status, entry):
        entry["status"] = status
        record(entry)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
