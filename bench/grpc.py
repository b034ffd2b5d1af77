"""gRPC unary calls with a warm token, side by side in one run (issue 28's benchmark). Run
through bench/grpc.sh, which installs Envoy, builds the Go load generator and server
(bench/grpc/) and frontdoor in release mode.

One gRPC server (grpc-go, answering "ok") and one load generator (grpc-go, a bearer token on
every call, h2c) on loopback:
  direct     load → the server
  frontdoor  load → frontdoor enforcing IAM (the token verified once, then cached) → server
  envoy      load → Envoy: jwt_authn (verified-token cache on) and rbac on the email → server
Three alternating closed-loop runs of each and their medians, with frontdoor's and Envoy's
CPU per call; one call at a time, for the latency a hop adds unloaded; then each paced at
half of frontdoor's median peak, for the p99 it adds to the direct call's."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request

from common import cpu_seconds, envoy_config, free_port, stop_all, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench-tool")
LOAD = os.path.join(ROOT, "target", "grpc-bench")
ENVOY = os.environ.get("ENVOY", "envoy")
SECONDS = os.environ.get("BENCH_SECONDS", "8")
CONNECTIONS, CONCURRENCY = "4", "64"
CALLER = "bench-caller@demo-project.iam.gserviceaccount.com"
AUDIENCE = "https://grpc-123456789012.us-central1.run.app"


def frontdoor_config(up, google_port):
    return f"""
listen: {{frontdoor: 127.0.0.1:0, google: 127.0.0.1:{google_port}, metadata: 127.0.0.1:0}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts: [{{email: {CALLER}}}]
services:
  - name: grpc
    upstream: http://127.0.0.1:{up}
    use_http2: true
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
"""


def load(port, token, rate=None, connections=CONNECTIONS, concurrency=CONCURRENCY):
    args = [LOAD, "load", f"127.0.0.1:{port}", AUDIENCE[len("https://"):], token,
            connections, concurrency, SECONDS]
    if rate:
        args.append(str(rate))
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    if out["errors"]:
        sys.exit(f"{out['errors']} calls failed on port {port}: the comparison would be unfair")
    return out


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-grpc-bench-")
    procs = []
    try:
        up, google, envoy_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([LOAD, "serve", str(up)]))
        wait_port(up)

        config = os.path.join(work, "services.yaml")
        open(config, "w").write(frontdoor_config(up, google))
        state = os.path.join(work, "state")
        token = subprocess.run([TOOL, "mint", config, state, CALLER, AUDIENCE, "1"],
                               check=True, capture_output=True, text=True).stdout.split()[0]
        procs.append(subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                                      stdout=subprocess.DEVNULL, env={**os.environ, "FRONTDOOR_LOG": "warn"}))
        wait_port(google)
        addresses = json.load(open(os.path.join(state, "addresses.json")))
        fd_port = int(addresses["services"]["grpc"]["listen"].rsplit(":", 1)[1])

        jwks = os.path.join(work, "jwks.json")
        open(jwks, "w").write(urllib.request.urlopen(f"http://127.0.0.1:{google}/oauth2/v3/certs").read().decode())
        issuer = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{google}/.well-known/openid-configuration"))["issuer"]
        econf = os.path.join(work, "envoy.yaml")
        open(econf, "w").write(envoy_config(envoy_port, up, issuer, AUDIENCE, jwks, CALLER, http2=True))
        procs.append(subprocess.Popen([ENVOY, "-c", econf, "--concurrency", "2", "-l", "error",
                                       "--base-id", str(os.getpid() % 1000)]))
        wait_port(envoy_port)

        targets = [("direct", up), ("frontdoor", fd_port), ("envoy jwt_authn + rbac", envoy_port)]
        pids = {"frontdoor": procs[1].pid, "envoy jwt_authn + rbac": procs[2].pid}
        peaks = {name: [] for name, _ in targets}
        cpu = {name: [] for name in pids}
        for round in range(3):
            for name, port in targets:
                before = cpu_seconds(pids[name]) if name in pids else 0
                out = load(port, token)
                if name in pids:
                    cpu[name].append((cpu_seconds(pids[name]) - before) / out["calls"] * 1e6)
                peaks[name].append(out["calls_per_second"])
                print(f"round {round + 1}: {name}: {out['calls_per_second']:.0f} calls/s, "
                      f"p50 {out['p50_us']} us, p99 {out['p99_us']} us", flush=True)
        med = {name: statistics.median(v) for name, v in peaks.items()}
        single = {}
        for name, port in targets:
            single[name] = load(port, token, connections="1", concurrency="1")
            print(f"one at a time: {name}: p50 {single[name]['p50_us']} us, "
                  f"p99 {single[name]['p99_us']} us", flush=True)
        half = int(med["frontdoor"] / 2)
        paced = {}
        for name, port in targets:
            paced[name] = load(port, token, rate=half)
            print(f"paced at {half}/s: {name}: p50 {paced[name]['p50_us']} us, "
                  f"p99 {paced[name]['p99_us']} us", flush=True)

        print(f"\n| gRPC unary, warm token ({CONNECTIONS} connections, {CONCURRENCY} in flight, "
              f"{SECONDS} s a run) | calls/s, median of 3 | CPU per call, median | "
              f"p50 one at a time | p99 at {half}/s | p99 added to direct |")
        print("|---|---|---|---|---|---|")
        for name, _ in targets:
            added = paced[name]["p99_us"] - paced["direct"]["p99_us"]
            shown = "—" if name == "direct" else f"{added / 1000:.2f} ms"
            used = f"{statistics.median(cpu[name]):.1f} us" if name in cpu else "—"
            print(f"| {name} | {med[name]:.0f} | {used} | {single[name]['p50_us']} us | "
                  f"{paced[name]['p99_us'] / 1000:.2f} ms | {shown} |")
        ratio = med["frontdoor"] / med["envoy jwt_authn + rbac"]
        added = (paced["frontdoor"]["p99_us"] - paced["direct"]["p99_us"]) / 1000
        print("\n| target | measured | met |\n|---|---|---|")
        print(f"| frontdoor ≥ 1.5× Envoy's calls/s | {ratio:.2f}× | {'yes' if ratio >= 1.5 else 'no'} |")
        print(f"| p99 added ≤ 1 ms at half load | {added:.2f} ms | {'yes' if added <= 1 else 'no'} |")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
