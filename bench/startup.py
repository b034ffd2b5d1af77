"""How long `frontdoor serve` with an existing state directory takes to answer its first
JWKS request: spawn, then poll GET /oauth2/v3/certs every 0.5 ms until it answers 200.

usage: python3 bench/startup.py [RUNS]   (run by bench/startup.sh after a release build)"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "frontdoor")


def first_jwks(port, deadline):
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/oauth2/v3/certs")
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                return json.loads(body)
        except OSError:
            time.sleep(0.0005)
    raise SystemExit("no JWKS within the deadline")


def main(runs):
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "services.yaml")
        state = os.path.join(d, "state")
        times = []
        for i in range(runs + 1):
            port = free_port()
            with open(config, "w") as f:
                f.write(f"listen: {{frontdoor: 127.0.0.1:0, google: 127.0.0.1:{port}, metadata: 127.0.0.1:0}}\n"
                        "project: {id: demo-project, number: '123456789012', region: us-central1}\n")
            start = time.monotonic()
            child = subprocess.Popen([BINARY, "serve", "--config", config, "--state-dir", state],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                jwks = first_jwks(port, start + 10)
                elapsed = time.monotonic() - start
            finally:
                child.terminate()
                child.wait()
            assert len(jwks["keys"]) == 2
            if i > 0:  # run 0 creates the state directory's keys
                times.append(elapsed * 1000)
        times.sort()
        print(f"first JWKS answer after start, existing state dir, {runs} runs:")
        print(f"  median {statistics.median(times):.1f} ms   min {times[0]:.1f} ms   "
              f"max {times[-1]:.1f} ms   (target: median <= 100 ms)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)
