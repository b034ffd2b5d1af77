"""Pub/Sub push deliveries (issue 29's benchmark). Run through bench/pubsub.sh, which
builds frontdoor in release mode.

One receiver (a small asyncio HTTP server that answers 204 and notes when each message
arrived) and two push subscriptions to it on one topic, used in turn:
  frontdoor  the receiver's run.app URL: each push through the front door, with an ID token
             for the push account, its run.invoker checked and the decision recorded
  direct     the receiver's own http://127.0.0.1 address: the same pushes, no front door,
             no token (the reference: what the broker and the push loop cost alone)
For each, alternating, three runs: messages published at a paced rate, for the latency
from publish to delivery (p50, p99); then a burst, for sustained deliveries per second.
Medians of the runs. Last, the memory frontdoor holds for 100,000 undelivered messages of
100 bytes (a pull subscription nobody reads), as /frontdoor/v1/status counts it and as the
process's resident size grows."""

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from common import free_port, memory_mib, stop_all, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
PUSHER = "pusher@demo-project.iam.gserviceaccount.com"
RECEIVER = "https://receiver-123456789012.us-central1.run.app"
RATE, PACED_SECONDS, BURST, RUNS = 200, 5, 5000, 3


class Receiver:
    """Notes each message's arrival (by its `n` attribute) and answers 204."""

    def __init__(self, port):
        self.port = port
        self.arrived = {}
        self.lock = threading.Lock()
        threading.Thread(target=lambda: asyncio.run(self.serve()), daemon=True).start()

    async def serve(self):
        server = await asyncio.start_server(self.connection, "127.0.0.1", self.port, backlog=1024)
        async with server:
            await server.serve_forever()

    async def connection(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                n = json.loads(body)["message"]["attributes"]["n"]
                with self.lock:
                    self.arrived[n] = time.monotonic()
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def api(google, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{google}/v1/projects/demo-project/{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def publish(google, first, count):
    """Publishes `count` messages numbered from `first`; the time each was published."""
    data = base64.b64encode(b"x" * 100).decode()
    messages = [{"data": data, "attributes": {"n": str(first + i)}} for i in range(count)]
    api(google, "POST", "topics/bench:publish", {"messages": messages})
    now = time.monotonic()
    return {str(first + i): now for i in range(count)}


def wait_for(receiver, wanted, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with receiver.lock:
            if all(n in receiver.arrived for n in wanted):
                return
        time.sleep(0.005)
    sys.exit(f"not every message was delivered within {deadline}s")


def run(google, receiver, endpoint, oidc, first):
    """One paced run and one burst through a fresh subscription; (p50 ms, p99 ms, per s)."""
    push = {"pushEndpoint": endpoint}
    if oidc:
        push["oidcToken"] = {"serviceAccountEmail": PUSHER, "audience": RECEIVER}
    api(google, "PUT", "subscriptions/bench-push", {"topic": "projects/demo-project/topics/bench",
                                                     "pushConfig": push})
    sent = {}
    n = first
    gap = 1 / RATE
    start = time.monotonic()
    for i in range(RATE * PACED_SECONDS):
        target = start + i * gap
        pause = target - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent.update(publish(google, n, 1))
        n += 1
    wait_for(receiver, sent)
    latencies = sorted((receiver.arrived[k] - t) * 1000 for k, t in sent.items())
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    burst = {}
    start = time.monotonic()
    for b in range(0, BURST, 1000):
        burst.update(publish(google, n + b, min(1000, BURST - b)))
    wait_for(receiver, burst)
    last = max(receiver.arrived[k] for k in burst)
    rate = BURST / (last - start)
    api(google, "DELETE", "subscriptions/bench-push")
    return p50, p99, rate, n + BURST


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-pubsub-bench-")
    procs = []
    try:
        google, receiver_port = free_port(), free_port()
        receiver = Receiver(receiver_port)
        wait_port(receiver_port)
        config = os.path.join(work, "services.yaml")
        open(config, "w").write(f"""
listen: {{frontdoor: 127.0.0.1:0, google: 127.0.0.1:{google}, metadata: 127.0.0.1:0}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts: [{{email: {PUSHER}}}]
services:
  - name: publisher
    service_account: {PUSHER}
    upstream: builtin:echo
  - name: receiver
    upstream: http://127.0.0.1:{receiver_port}
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{PUSHER}]}}]}}
""")
        state = os.path.join(work, "state")
        server = subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                                  stdout=subprocess.DEVNULL, env={**os.environ, "FRONTDOOR_LOG": "warn"})
        procs.append(server)
        wait_port(google)
        api(google, "PUT", "topics/bench")
        results = {"frontdoor": [], "direct": []}
        n = 0
        for _ in range(RUNS):
            for name, endpoint, oidc in [("frontdoor", RECEIVER, True),
                                         ("direct", f"http://127.0.0.1:{receiver_port}/", False)]:
                p50, p99, rate, n = run(google, receiver, endpoint, oidc, n)
                results[name].append((p50, p99, rate))
        print(f"publish to push delivered, {RATE} messages/s for {PACED_SECONDS}s, then a burst of {BURST}; "
              f"medians of {RUNS} alternating runs")
        print("| path | p50 ms | p99 ms | deliveries/s |")
        print("|---|---|---|---|")
        for name, rows in results.items():
            med = [statistics.median(r[i] for r in rows) for i in range(3)]
            print(f"| {name} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.0f} |")

        # Memory with 100,000 undelivered messages.
        api(google, "PUT", "subscriptions/bench-pull", {"topic": "projects/demo-project/topics/bench"})
        before = memory_mib(server.pid, "VmRSS")
        for b in range(0, 100_000, 1000):
            publish(google, 10_000_000 + b, 1000)
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{google}/frontdoor/v1/status"))
        after = memory_mib(server.pid, "VmRSS")
        held = status["pubsub"]
        print(f"100,000 undelivered messages of 100 bytes: {held['undelivered']} held, "
              f"{held['bytes'] / 1048576:.1f} MiB counted against {held['limit_bytes'] / 1048576:.0f} MiB; "
              f"resident size {before:.1f} → {after:.1f} MiB (+{after - before:.1f})")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
