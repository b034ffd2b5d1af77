"""A mixed soak of one frontdoor process (default 10 minutes; SOAK_SECONDS to change):
warm and cold front-door calls, a `command` service frontdoor runs, the metadata server,
tokeninfo and IAM Credentials, a configuration change every 30 s (a new revision of both
services, the command restarted), and a flood of oversized and distinct requests all the
while. Run through bench/soak.sh, which builds the release binary first.

It must lose nothing on the allowed routes (every answer a 200) and keep its memory flat:
the last minute's peak RSS within 10% of the second minute's."""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

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
services:
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

    def add(self, route, status):
        with self.lock:
            row = self.rows.setdefault(route, {})
            row[status] = row.get(status, 0) + 1


def connection(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(conn_box, port, method, path, headers, body=None):
    """One request on a kept-alive connection; a connection error is a lost request."""
    try:
        if conn_box[0] is None:
            conn_box[0] = connection(port)
        conn_box[0].request(method, path, body=body, headers=headers)
        r = conn_box[0].getresponse()
        data = r.read()
        return r.status, data
    except (http.client.HTTPException, OSError) as e:
        if conn_box[0] is not None:
            conn_box[0].close()
        conn_box[0] = None
        return f"error: {type(e).__name__}", b""


def loop(stop, tally, route, port, make):
    box = [None]
    i = 0
    while not stop.is_set():
        method, path, headers, body = make(i)
        status, _ = call(box, port, method, path, headers, body)
        tally.add(route, status)
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
        status, body = call(box, ports["metadata"], "GET",
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
        threads = [threading.Thread(target=loop, args=(stop, tally, route, port, make))
                   for route, (port, make) in {**allowed, **flood}.items()]
        for t in threads:
            t.start()

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
        for t in threads:
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
    print("| route | requests | 200 | other answers | lost |")
    print("|---|---:|---:|---|---:|")
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
        print(f"| {route} | {total} | {ok} | {other or '-'} | {lost} |")
    minute = lambda m: max((r for t, r in samples if m * 60 <= t < (m + 1) * 60), default=0.0)
    minutes = max(1, SECONDS // 60)
    second, last = minute(1), minute(minutes - 1)
    print()
    print("| minute | peak RSS MiB |")
    print("|---:|---:|")
    for m in range(minutes):
        print(f"| {m + 1} | {minute(m):.1f} |")
    print()
    if minutes < 3:
        # Too short to tell a trend from start-up: memory is not judged.
        flat = True
        print(f"lost on allowed routes: {lost_total} (target 0); shorter than 3 minutes, "
              f"memory not judged (peak {minute(0):.1f} MiB)")
    else:
        flat = last <= second * 1.10
        print(f"lost on allowed routes: {lost_total} (target 0); last minute {last:.1f} MiB vs "
              f"second {second:.1f} MiB: {'flat' if flat else 'GREW'} (target within 10%)")
    sys.exit(0 if lost_total == 0 and flat else 1)


if __name__ == "__main__":
    main()
