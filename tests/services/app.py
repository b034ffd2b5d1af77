"""A small container for frontdoor's tests of `command` services: it listens on $PORT as
Cloud Run asks and answers with what it was given.

usage: app.py serve     answer every request with JSON: the contract's environment
       app.py once      answer one request, then exit (to prove restarts)
       app.py noisy     serve, while printing about a megabyte a second
       app.py relay     fetch the URL in ?target= and answer with the status it got

In every mode, GET /stream?n=N&gap=S answers N lines, one every S seconds, and a request
with `Upgrade: websocket` is switched and its bytes echoed (raw, unframed: enough to prove
the front door splices the connection) until the client closes."""

import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

MODE = sys.argv[1] if len(sys.argv) > 1 else "serve"
CONTRACT = ["PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION", "GOOGLE_CLOUD_PROJECT",
            "GCE_METADATA_HOST", "GCE_METADATA_IP", "CLOUDSDK_CORE_PROJECT", "CLOUDSDK_RUN_REGION", "EXTRA"]


def relay(path):
    target = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["target"][0]
    try:
        with urllib.request.urlopen(target, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/stream"):
            self.stream()
            return
        if self.headers.get("upgrade", "").lower() == "websocket":
            self.echo_upgraded()
            return
        if MODE == "relay":
            body = json.dumps({"status": relay(self.path)}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = json.dumps({"env": {k: os.environ.get(k) for k in CONTRACT}, "pid": os.getpid(),
                           "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if MODE == "once":
            threading.Thread(target=lambda: (time.sleep(0.1), os._exit(0))).start()

    def stream(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        n, gap = int(query.get("n", ["8"])[0]), float(query.get("gap", ["0.25"])[0])
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        for i in range(n):
            time.sleep(gap)
            self.wfile.write(f"line {i} from {os.getpid()}\n".encode())

    def echo_upgraded(self):
        self.protocol_version = "HTTP/1.1"
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.end_headers()
        while data := self.rfile.read1(4096):
            self.wfile.write(data)
        self.close_connection = True

    def log_message(self, *args):
        pass


def noise():
    line = "x" * 1023
    while True:
        for _ in range(100):
            print(line)
        sys.stdout.flush()
        time.sleep(0.1)


if __name__ == "__main__":
    print(f"starting {MODE} on {os.environ['PORT']}", flush=True)
    if MODE == "noisy":
        threading.Thread(target=noise, daemon=True).start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    server.serve_forever()
