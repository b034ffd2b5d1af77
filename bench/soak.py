"""A mixed soak of one frontdoor process (default 10 minutes; SOAK_SECONDS to change):
warm and cold front-door calls, a `command` service frontdoor runs, the metadata server,
tokeninfo and IAM Credentials, new clients on a fresh connection each call, a
configuration change every 30 s (a new revision of both services, the command restarted),
a flood of oversized and distinct requests, and issue 26's attackers (bench/attackers.py:
silent sockets past the google and metadata listeners' caps, idle TLS tunnels past the
egress proxy's, IAM policies at and over Google's limit) all the while. Run through
bench/soak.sh, which builds the release binary first.

It must lose nothing on the allowed routes (every answer a 200), serve every new client
within a second, keep its memory flat (the last minute's peak RSS within 10% of the second
minute's) and at most 150 MiB. A kept-alive connection the server closed between requests
is reopened and the request sent again, once, as HTTP clients do; those are counted."""

import array
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import attackers
from common import free_port, memory_mib, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench-tool")
APP = os.path.join(ROOT, "tests", "services", "app.py")
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
CALLER = "soak-caller@demo-project.iam.gserviceaccount.com"
BENCH = "bench-123456789012.us-central1.run.app"
WORKER = "worker-123456789012.us-central1.run.app"


def config_text(ports, revision):
    return f"""
listen: {{frontdoor: 127.0.0.1:{ports['frontdoor']}, google: 127.0.0.1:{ports['google']}, metadata: 127.0.0.1:{ports['metadata']}}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts:
  - email: {CALLER}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountOpenIdTokenCreator, members: [serviceAccount:{CALLER}]}}]}}
metadata_service_account: {CALLER}
iam_policy: {{bindings: [{{role: roles/run.admin, members: [serviceAccount:{CALLER}]}}]}}
services:
  - name: target
    upstream: builtin:echo
  - name: bench
    upstream: builtin:echo
    custom_audiences: [https://revision-{revision}.example]
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
  - name: worker
    command: [python3, "{APP}", serve]
    env: {{EXTRA: "revision-{revision}"}}
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
"""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.rows = {}
        self.seconds = {}
        self.reopened = {}

    def add(self, route, status, seconds, reopened):
        with self.lock:
            row = self.rows.setdefault(route, {})
            row[status] = row.get(status, 0) + 1
            self.seconds.setdefault(route, array.array("d")).append(seconds)
            self.reopened[route] = self.reopened.get(route, 0) + reopened

    def percentile(self, route, p):
        times = sorted(self.seconds.get(route, []))
        return times[min(len(times) - 1, int(len(times) * p))] * 1000 if times else 0.0


def connection(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(conn_box, port, method, path, headers, body=None):
    """One request on a kept-alive connection; a connection error is a lost request, but
    for one the server closed between requests, which is reopened and sent again once (as
    HTTP clients do). Returns the status, the body and whether it was reopened."""
    reused = conn_box[0] is not None
    try:
        if conn_box[0] is None:
            conn_box[0] = connection(port)
        conn_box[0].request(method, path, body=body, headers=headers)
        r = conn_box[0].getresponse()
        data = r.read()
        return r.status, data, False
    except (http.client.HTTPException, OSError) as e:
        if conn_box[0] is not None:
            conn_box[0].close()
        conn_box[0] = None
        closed_between = isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError,
                                        BrokenPipeError))
        if reused and closed_between:
            status, data, _ = call(conn_box, port, method, path, headers, body)
            return status, data, True
        return f"error: {type(e).__name__}", b"", False


def loop(stop, tally, route, port, make, fresh=False):
    box = [None]
    i = 0
    while not stop.is_set():
        method, path, headers, body = make(i)
        started = time.monotonic()
        status, _, reopened = call(box, port, method, path, headers, body)
        tally.add(route, status, time.monotonic() - started, reopened)
        if fresh and box[0] is not None:
            box[0].close()
            box[0] = None
        i += 1


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-soak-")
    ports = {name: free_port() for name in ("frontdoor", "google", "metadata")}
    config = os.path.join(work, "services.yaml")
    open(config, "w").write(config_text(ports, 0))
    state = os.path.join(work, "state")
    log = open(os.path.join(work, "frontdoor.log"), "w")
    proc = subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                            stdout=subprocess.DEVNULL, stderr=log)
    stop = threading.Event()
    tally = Tally()
    try:
        wait_port(ports["google"])
        wait_port(ports["frontdoor"])
        warm = subprocess.run([TOOL, "mint", config, state, CALLER, f"https://{BENCH}", "1"],
                              capture_output=True, text=True, check=True).stdout.strip()
        cold = subprocess.run([TOOL, "mint", config, state, CALLER, f"https://{BENCH}", "20000"],
                              capture_output=True, text=True, check=True).stdout.split()
        worker_token = subprocess.run([TOOL, "mint", config, state, CALLER, f"https://{WORKER}", "1"],
                                      capture_output=True, text=True, check=True).stdout.strip()
        box = [None]
        status, body, _ = call(box, ports["metadata"], "GET",
                            "/computeMetadata/v1/instance/service-accounts/default/token",
                            {"Metadata-Flavor": "Google"})
        access = json.loads(body)["access_token"]
        meta_id = "/computeMetadata/v1/instance/service-accounts/default/identity?audience="
        iam_path = f"/v1/projects/-/serviceAccounts/{CALLER}:generateIdToken"

        allowed = {
            "front door warm": (ports["frontdoor"], lambda i: (
                "GET", "/", {"Host": BENCH, "Authorization": f"Bearer {warm}"}, None)),
            "front door cold": (ports["frontdoor"], lambda i: (
                "GET", "/", {"Host": BENCH, "Authorization": f"Bearer {cold[i % len(cold)]}"}, None)),
            "command service": (ports["frontdoor"], lambda i: (
                "GET", "/", {"Host": WORKER, "Authorization": f"Bearer {worker_token}"}, None)),
            "metadata identity": (ports["metadata"], lambda i: (
                "GET", meta_id + urllib.parse.quote(f"https://aud-{i % 50}.example", safe=""),
                {"Metadata-Flavor": "Google"}, None)),
            "tokeninfo": (ports["google"], lambda i: (
                "GET", f"/tokeninfo?id_token={warm}", {}, None)),
            "iamcredentials": (ports["google"], lambda i: (
                "POST", iam_path, {"Authorization": f"Bearer {access}",
                                   "Content-Type": "application/json"},
                json.dumps({"audience": f"https://iam-{i % 20}.example", "includeEmail": True}))),
        }
        flood = {
            "flood: 8 KB audiences (mint)": (ports["metadata"], lambda i: (
                "GET", meta_id + f"https://f{i}.example/" + "x" * 7_900,
                {"Metadata-Flavor": "Google"}, None)),
            "flood: 60 KB scopes (refused)": (ports["metadata"], lambda i: (
                "GET", "/computeMetadata/v1/instance/service-accounts/default/token?scopes="
                + "s" * 60_000, {"Metadata-Flavor": "Google"}, None)),
            "flood: forged tokens (refused)": (ports["frontdoor"], lambda i: (
                "GET", "/", {"Host": BENCH, "Authorization": f"Bearer {cold[i % len(cold)][:-4]}AAAA"}, None)),
        }
        # New clients, a connection each call: what a listener shut out would refuse.
        fresh = {
            "new client: google": (ports["google"], lambda i: (
                "GET", "/oauth2/v3/certs", {}, None)),
            "new client: metadata": (ports["metadata"], lambda i: (
                "GET", "/computeMetadata/v1/project/project-id",
                {"Metadata-Flavor": "Google"}, None)),
        }
        allowed.update(fresh)
        threads = [threading.Thread(target=loop, args=(stop, tally, route, port, make,
                                                        route in fresh))
                   for route, (port, make) in {**allowed, **flood}.items()]
        for t in threads:
            t.start()
        attackers.raise_fd_limit()
        ca = os.path.join(state, "ca", "ca.pem")
        attacks = [
            attackers.silent_sockets(ports["google"], 4200, stop),
            attackers.silent_sockets(ports["metadata"], 4200, stop),
            attackers.idle_tunnels(ports["metadata"], ca, 1100, stop),
            attackers.LargePolicies(ports["google"], access, "target", stop),
            attackers.LargePolicies(ports["google"], access, "target", stop),
        ]
        for a in attacks:
            a.start()

        started = time.monotonic()
        samples = []
        reloads = 0
        next_reload = started + 30
        while time.monotonic() - started < SECONDS:
            time.sleep(5)
            now = time.monotonic()
            samples.append((now - started, memory_mib(proc.pid, "VmRSS")))
            if now >= next_reload:
                reloads += 1
                open(config + ".new", "w").write(config_text(ports, reloads))
                os.replace(config + ".new", config)
                next_reload += 30
            print(f"{now - started:5.0f} s  RSS {samples[-1][1]:6.1f} MiB  reloads {reloads}",
                  flush=True)
        stop.set()
        for t in threads + attacks:
            t.join()
        status = json.loads(call([None], ports["google"], "GET", "/frontdoor/v1/status", {})[1])
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=30)

    print()
    print(f"{SECONDS} s, {reloads} configuration changes "
          f"(status: generation {status.get('generation')}, last reload {status.get('last_reload')})")
    print()
    print("| route | requests | 200 | other answers | lost | reopened | p50 ms | p99 ms |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    lost_total = 0
    for route in list(allowed) + list(flood):
        row = tally.rows.get(route, {})
        total = sum(row.values())
        ok = row.get(200, 0)
        other = {k: v for k, v in row.items() if k != 200}
        lost = total - ok if route in allowed else sum(
            v for k, v in row.items() if isinstance(k, str))
        if route in allowed:
            lost_total += lost
        print(f"| {route} | {total} | {ok} | {other or '-'} | {lost} | "
              f"{tally.reopened.get(route, 0)} | {tally.percentile(route, 0.5):.1f} | "
              f"{tally.percentile(route, 0.99):.1f} |")
    slow_new = [r for r in fresh if tally.percentile(r, 1.0) >= 1000]
    print()
    for a in attacks:
        print(a.summary())
    minute = lambda m: max((r for t, r in samples if m * 60 <= t < (m + 1) * 60), default=0.0)
    minutes = max(1, SECONDS // 60)
    second, last = minute(1), minute(minutes - 1)
    print()
    print("| minute | peak RSS MiB |")
    print("|---:|---:|")
    for m in range(minutes):
        print(f"| {m + 1} | {minute(m):.1f} |")
    print()
    peak = max((r for _, r in samples), default=0.0)
    bounded = peak <= 150
    print(f"peak RSS {peak:.1f} MiB (target at most 150); new clients served within a second: "
          f"{'every one' if not slow_new else 'NOT ' + ', '.join(slow_new)}")
    if minutes < 3:
        # Too short to tell a trend from start-up: memory is not judged.
        flat = True
        print(f"lost on allowed routes: {lost_total} (target 0); shorter than 3 minutes, "
              f"memory not judged (peak {minute(0):.1f} MiB)")
    else:
        flat = last <= second * 1.10
        print(f"lost on allowed routes: {lost_total} (target 0); last minute {last:.1f} MiB vs "
              f"second {second:.1f} MiB: {'flat' if flat else 'GREW'} (target within 10%)")
    sys.exit(0 if lost_total == 0 and flat and bounded and not slow_new else 1)


if __name__ == "__main__":
    main()
