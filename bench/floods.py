"""frontdoor's peak memory under the floods of the hardening issue, each against a fresh
server, printed beside the targets: at most 150 MiB under any flood, at most 50 MiB under
ordinary load. Run through bench/floods.sh (it builds the release binary first).

  ordinary     20,000 front-door requests with one token and 2,000 metadata ID tokens
  scopes       30,000 metadata `token?scopes=` requests, each a distinct list just under the
               8 KiB limit (then 100 of 60 KB, which must be refused)
  claims       4,200 distinct valid tokens just under the 16 KiB limit through the front
               door (then 100 of 40 KB and 20 with a 200 KB claim, which must be refused)
  audiences    20,000 metadata ID tokens, each for a distinct audience just under 8 KiB,
               then the decision log read 20 times
  headers      500 connections each sending 60 KB of headers and never finishing them
  config       the configuration replaced by a link to /dev/zero, then by YAML nested
               100,000 deep; both must be reported and neither read whole

Peak RSS is the kernel's high-water mark (VmHWM) of the server process after the flood."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.parse

from common import free_port, memory_mib, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench-tool")
CALLER = "bench-caller@demo-project.iam.gserviceaccount.com"
AUDIENCE = "https://bench-123456789012.us-central1.run.app"
HOST = "bench-123456789012.us-central1.run.app"
THREADS = 8
FLOOD_LIMIT_MIB = 150
ORDINARY_LIMIT_MIB = 50


class Server:
    """A fresh `frontdoor serve` in its own directory, default logging to /dev/null."""

    def __init__(self, work, name):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.google = free_port()
        self.metadata = free_port()
        self.frontdoor = free_port()
        self.config = os.path.join(self.dir, "services.yaml")
        self.text = f"""
listen: {{frontdoor: 127.0.0.1:{self.frontdoor}, google: 127.0.0.1:{self.google}, metadata: 127.0.0.1:{self.metadata}}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts: [{{email: {CALLER}}}]
metadata_service_account: {CALLER}
services:
  - name: bench
    upstream: builtin:echo
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
"""
        open(self.config, "w").write(self.text)
        self.state = os.path.join(self.dir, "state")
        self.proc = subprocess.Popen([FRONTDOOR, "serve", "--config", self.config,
                                      "--state-dir", self.state],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.google)
        wait_port(self.frontdoor)

    def mint(self, n, pad=0):
        out = subprocess.run([TOOL, "mint", self.config, self.state, CALLER, AUDIENCE, str(n),
                              str(pad)], capture_output=True, text=True, check=True).stdout
        return out.split()

    def peak(self):
        return memory_mib(self.proc.pid, "VmHWM")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def spread(requests, send):
    """Runs send(conn_factory, item) for every item over THREADS keep-alive connections;
    returns the statuses counted."""
    counts = {}
    lock = threading.Lock()
    chunks = [requests[i::THREADS] for i in range(THREADS)]

    def worker(items):
        mine = {}
        for item in items:
            status = send(item)
            mine[status] = mine.get(status, 0) + 1
        with lock:
            for k, v in mine.items():
                counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def client(port):
    local = threading.local()

    def get(path, headers):
        for attempt in range(2):
            if not hasattr(local, "conn"):
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                local.conn.request("GET", path, headers=headers)
                r = local.conn.getresponse()
                r.read()
                return r.status
            except (http.client.HTTPException, OSError):
                local.conn.close()
                del local.conn
        return "error"
    return get


def expect(counts, status, n, what):
    if counts.get(status, 0) != n:
        raise SystemExit(f"{what}: expected {n} × {status}, got {counts}")


def ordinary(s):
    token = s.mint(1)[0]
    front = client(s.frontdoor)
    counts = spread(list(range(20_000)),
                    lambda _: front("/", {"Host": HOST, "Authorization": f"Bearer {token}"}))
    expect(counts, 200, 20_000, "front door")
    meta = client(s.metadata)
    path = "/computeMetadata/v1/instance/service-accounts/default/identity?audience="
    counts = spread([f"https://ordinary-{i % 20}.example" for i in range(2_000)],
                    lambda a: meta(path + urllib.parse.quote(a, safe=""), {"Metadata-Flavor": "Google"}))
    expect(counts, 200, 2_000, "metadata")
    return "20,000 allowed + 2,000 metadata tokens"


def scopes(s):
    meta = client(s.metadata)
    path = "/computeMetadata/v1/instance/service-accounts/default/token?scopes="

    def scope_list(i, size):
        head = f"https://www.googleapis.com/auth/s{i}"
        return head + "," + "x" * (size - len(head) - 1)
    counts = spread([scope_list(i, 8_000) for i in range(30_000)],
                    lambda sc: meta(path + sc, {"Metadata-Flavor": "Google"}))
    expect(counts, 200, 30_000, "scopes under the limit")
    counts = spread([scope_list(i, 60_000) for i in range(100)],
                    lambda sc: meta(path + sc, {"Metadata-Flavor": "Google"}))
    expect(counts, 400, 100, "60 KB scopes")
    return "30,000 × 8 KB scopes (200), 100 × 60 KB (400)"


def claims(s):
    tokens = s.mint(4_200, 11_500)
    longest = max(len(t) for t in tokens)
    if longest > 16 * 1024:
        raise SystemExit(f"padded tokens are {longest} bytes, over the limit")
    front = client(s.frontdoor)
    counts = spread(tokens, lambda t: front("/", {"Host": HOST, "Authorization": f"Bearer {t}"}))
    expect(counts, 200, 4_200, "tokens under the limit")
    over = s.mint(100, 30_000)
    counts = spread(over, lambda t: front("/", {"Host": HOST, "Authorization": f"Bearer {t}"}))
    expect(counts, 401, 100, "tokens over 16 KiB")
    huge = s.mint(20, 200_000)
    counts = spread(huge, lambda t: front("/", {"Host": HOST, "Authorization": f"Bearer {t}"}))
    # Past the 64 KiB header budget the answer is 431 before any token is read.
    expect(counts, 431, 20, "200 KB claims")
    return (f"4,200 distinct {longest // 1024} KiB tokens (200), 100 of 40 KB (401), "
            f"20 with 200 KB claims (431)")


def audiences(s):
    meta = client(s.metadata)
    path = "/computeMetadata/v1/instance/service-accounts/default/identity?audience="

    def audience(i):
        head = f"https://a{i}.example/"
        return head + "x" * (7_900 - len(head))
    counts = spread([audience(i) for i in range(20_000)],
                    lambda a: meta(path + a, {"Metadata-Flavor": "Google"}))
    expect(counts, 200, 20_000, "audiences under the limit")
    largest = 0
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", s.google, timeout=30)
        conn.request("GET", "/frontdoor/v1/decisions?limit=1000")
        r = conn.getresponse()
        largest = max(largest, len(r.read()))
        conn.close()
    return f"20,000 × 8 KB audiences (200); decisions read 20 times, largest {largest / 2**20:.1f} MiB"


def headers(s):
    """250 connections past the header budget (answered 431 and closed) and 250 that stay
    under it and stall (closed by the header timeout), all open at once."""
    socks = []
    line = b"x-pad: " + b"p" * 1000 + b"\r\n"
    for i in range(500):
        c = socket.create_connection(("127.0.0.1", s.frontdoor))
        c.sendall(b"GET / HTTP/1.1\r\nhost: " + HOST.encode() + b"\r\n")
        socks.append((c, 70 if i % 2 == 0 else 60))
    for round in range(70):
        for c, lines in socks:
            if round < lines:
                try:
                    c.sendall(line)
                except OSError:
                    pass
    outcomes = {}
    started = time.monotonic()
    for c, lines in socks:
        c.settimeout(20)
        try:
            first = c.recv(64)
            outcome = "431" if first.startswith(b"HTTP/1.1 431") else (
                "closed" if not first else first[:12].decode(errors="replace"))
        except OSError as e:
            outcome = type(e).__name__
        key = f"{lines} KB: {outcome}"
        outcomes[key] = outcomes.get(key, 0) + 1
        c.close()
    if outcomes != {"70 KB: 431": 250, "60 KB: closed": 250}:
        raise SystemExit(f"slow headers: {outcomes}")
    return (f"500 connections: 250 × 70 KB of headers answered 431, 250 × 60 KB stalled and "
            f"closed by the header timeout (all within {time.monotonic() - started:.1f} s)")


def config(s):
    conn = lambda: http.client.HTTPConnection("127.0.0.1", s.google, timeout=10)

    def last_error():
        c = conn()
        c.request("GET", "/frontdoor/v1/status")
        return (json.loads(c.getresponse().read()).get("last_reload") or {}).get("error") or ""
    os.replace(s.config, s.config + ".good")
    os.symlink("/dev/zero", s.config)
    deadline = time.monotonic() + 10
    while "not a regular file" not in last_error():
        if time.monotonic() > deadline:
            raise SystemExit(f"/dev/zero not reported: {last_error()!r}")
        time.sleep(0.1)
    time.sleep(2)
    os.remove(s.config)
    deep = 100_000
    open(s.config, "w").write(s.text + "internal_callers: " + "[" * deep + "]" * deep + "\n")
    started = time.monotonic()
    while "levels deep" not in last_error():
        if time.monotonic() > started + 10:
            raise SystemExit(f"deep YAML not reported: {last_error()!r}")
        time.sleep(0.05)
    return f"/dev/zero and 100,000-deep YAML refused and reported (the YAML in {time.monotonic() - started:.2f} s)"


FLOODS = [("ordinary", ordinary, ORDINARY_LIMIT_MIB), ("scopes", scopes, FLOOD_LIMIT_MIB),
          ("claims", claims, FLOOD_LIMIT_MIB), ("audiences", audiences, FLOOD_LIMIT_MIB),
          ("headers", headers, FLOOD_LIMIT_MIB), ("config", config, FLOOD_LIMIT_MIB)]


def main():
    chosen = sys.argv[1:] or [name for name, _, _ in FLOODS]
    work = tempfile.mkdtemp(prefix="frontdoor-floods-")
    rows = []
    for name, flood, limit in FLOODS:
        if name not in chosen:
            continue
        s = Server(work, name)
        try:
            started = time.monotonic()
            what = flood(s)
            took = time.monotonic() - started
            peak = s.peak()
            alive = s.proc.poll() is None
        finally:
            s.stop()
        rows.append((name, what, took, peak, limit, alive))
        print(f"{name}: {peak:.1f} MiB peak in {took:.1f} s — {what}", flush=True)
    print()
    print("| flood | what | s | peak RSS MiB | target MiB | met |")
    print("|---|---|---:|---:|---:|---|")
    failed = False
    for name, what, took, peak, limit, alive in rows:
        met = peak <= limit and alive
        failed |= not met
        print(f"| {name} | {what} | {took:.1f} | {peak:.1f} | ≤ {limit} | {'yes' if met else 'no'} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
