"""A Pub/Sub push endpoint as Google's push-authentication sample writes one, for
frontdoor's Pub/Sub tests: it verifies the push's ID token with google-auth
(`id_token.verify_oauth2_token`, Google's default certificates URL, reached through the
proxy `frontdoor env` sets), checks its `email` and `aud`, and records each delivery.

usage: push_receiver.py RECORD AUDIENCE EMAIL [FAIL_FIRST]

RECORD is a file that gets one JSON line per push received: the envelope, the token's
claims, and the status answered. The first FAIL_FIRST pushes of each message id are
answered 500 (to prove retries); every later one 204. POST /raw records a push sent with
`noWrapper` (its body and headers) instead."""

import http.server
import json
import os
import sys
import threading

from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

RECORD, AUDIENCE, EMAIL = sys.argv[1], sys.argv[2], sys.argv[3]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 0
seen = {}
lock = threading.Lock()
session = google_requests.Request()


def record(entry):
    with lock, open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {"path": self.path}
        try:
            token = self.headers.get("Authorization", "").split(" ", 1)[1]
            claims = id_token.verify_oauth2_token(token, session, audience=AUDIENCE)
            if claims["email"] != EMAIL or not claims.get("email_verified"):
                raise ValueError(f"unexpected email {claims['email']}")
            entry["claims"] = claims
        except Exception as e:  # the sample answers 400 on any verification failure
            entry["error"] = f"{type(e).__name__}: {e}"
            self.answer(400, entry)
            return
        if self.path.startswith("/raw"):
            entry["body"] = body.decode()
            entry["headers"] = {k.lower(): v for k, v in self.headers.items()}
            self.answer(204, entry)
            return
        envelope = json.loads(body)
        entry["envelope"] = envelope
        message_id = envelope["message"]["messageId"]
        with lock:
            seen[message_id] = seen.get(message_id, 0) + 1
            attempt = seen[message_id]
        self.answer(500 if attempt <= FAIL_FIRST else 204, entry)

    def answer(self, status, entry):
        entry["status"] = status
        record(entry)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
