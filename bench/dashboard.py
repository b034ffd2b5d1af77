"""Does an open dashboard slow the front door? (issue 15: 100 dashboard clients at once must
not slow it by more than a few percent.) Run through bench/dashboard.sh.

One tiny upstream (nginx answering `ok`), frontdoor enforcing IAM on one token (the warm
path, its default logging into a file), and wrk (1 thread, 64 connections). Alternating
runs with no dashboard open and with 100 clients reading the dashboard's live feed
(`GET /frontdoor/v1/events`, server-sent events) for the whole run; each client counts the
decision events it receives, so that the feed is known to have been live under the load.
Prints each run, the medians and their ratio beside the target."""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import free_port, start_nginx, stop_all, tiny_upstream, wait_port  # noqa: E402
from frontdoor import CALLER, FRONTDOOR, TOOL, bench_config, wrk  # noqa: E402

CLIENTS = 100
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
TARGET = 0.95


class Dashboards:
    """`count` feed readers on the google listener, each counting decision events."""

    def __init__(self, port, count):
        self.events = [0] * count
        self.bytes = 0
        self.stop = threading.Event()
        self.socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /frontdoor/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.settimeout(0.5)
            self.socks.append(s)
        self.threads = [threading.Thread(target=self.read, args=(i,)) for i in range(count)]
        for t in self.threads:
            t.start()

    def read(self, i):
        s = self.socks[i]
        while not self.stop.is_set():
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                return
            self.events[i] += chunk.count(b"event: decisions")
            self.bytes += len(chunk)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()
        for s in self.socks:
            s.close()


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-bench-dashboard-")
    procs = []
    try:
        up, fd, google = free_port(), free_port(), free_port()
        procs.append(start_nginx(work, "upstream", tiny_upstream(up)))
        wait_port(up)
        config = os.path.join(work, "services.yaml")
        open(config, "w").write(bench_config(up, fd, google))
        state = os.path.join(work, "state")
        audience = "https://bench-123456789012.us-central1.run.app"
        token = subprocess.run([TOOL, "mint", config, state, CALLER, audience, "1"],
                               capture_output=True, text=True, check=True).stdout.strip()
        log = open(os.path.join(work, "frontdoor.log"), "w")
        fd_proc = subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                                   stdout=subprocess.DEVNULL, stderr=log,
                                   env={k: v for k, v in os.environ.items() if k != "FRONTDOOR_LOG"})
        procs.append(fd_proc)
        wait_port(google)
        addresses = json.load(open(os.path.join(state, "addresses.json")))
        port = int(addresses["services"]["bench"]["listen"].rsplit(":", 1)[1])
        env = {"TOKEN": token}
        wrk(port, env, seconds=2)  # warm-up

        runs = {"no dashboard": [], f"{CLIENTS} dashboards": []}
        received = []
        for _ in range(RUNS):
            runs["no dashboard"].append(wrk(port, env)["rps"])
            boards = Dashboards(google, CLIENTS)
            time.sleep(1)
            before = sum(boards.events)
            runs[f"{CLIENTS} dashboards"].append(wrk(port, env)["rps"])
            time.sleep(0.5)
            per_client = [e for e in boards.events]
            received.append((min(per_client), sum(boards.events) - before, boards.bytes))
            boards.close()

        print(f"front door warm (wrk, 64 connections, {os.environ.get('BENCH_SECONDS', '10')} s a run), "
              f"alternating, {RUNS} runs of each\n")
        print("| setup | runs req/s | median |")
        print("|---|---|---:|")
        medians = {}
        for name, values in runs.items():
            medians[name] = statistics.median(values)
            print(f"| {name} | {' / '.join(f'{v:.0f}' for v in values)} | {medians[name]:.0f} |")
        ratio = medians[f"{CLIENTS} dashboards"] / medians["no dashboard"]
        print()
        for least, events, got in received:
            print(f"feed: every dashboard got ≥ {least} decision events; {events} in all "
                  f"during the loaded run, {got / 1e6:.1f} MB read")
        if min(least for least, _, _ in received) == 0:
            raise SystemExit("a dashboard received no decision event: the feed was not live")
        print()
        print("| target | measured | met |")
        print("|---|---|---|")
        print(f"| with {CLIENTS} dashboards ≥ {TARGET:.2f}× without | {ratio:.3f}× | "
              f"{'yes' if ratio >= TARGET else 'no'} |")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
