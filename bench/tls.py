"""The warm front door through TLS against nginx terminating TLS, side by side, in one run
(the egress issue's benchmark). Run through bench/tls.sh, which installs nginx and builds
frontdoor and bench-tool in release mode.

One tiny upstream (nginx answering `ok`), and one load generator for both servers
(`bench-tool tls-load`: wrk cannot go through a proxy's CONNECT), one thread, HTTP/1.1:
  nginx TLS       client → nginx (TLS 1.3, an ECDSA P-256 certificate from frontdoor's CA,
                  no auth) → upstream with keep-alive
  frontdoor TLS   client → CONNECT through the service's proxy → TLS 1.3 ended by frontdoor
                  (an ECDSA P-256 leaf from its CA) → the front door, checking the token and
                  IAM every request → upstream
Keep-alive throughput (64 connections), then the new-connection rate (16 connections, a
TCP connect and a full TLS handshake per request, no session resumption; frontdoor's
connections also pay the CONNECT round trip). Three alternating runs of each, medians."""

import json
import os
import re
import statistics
import subprocess
import tempfile

from common import free_port, stop_all, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTDOOR = os.path.join(ROOT, "target", "release", "frontdoor")
TOOL = os.path.join(ROOT, "target", "release", "examples", "bench-tool")
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
CALLER = "bench-caller@demo-project.iam.gserviceaccount.com"
HOST = "bench-123456789012.us-central1.run.app"


def load(mode, route, ca, token, connections, seconds=DURATION):
    out = subprocess.run([TOOL, "tls-load", mode, route, HOST, ca, token or "-", str(connections),
                          str(seconds)], capture_output=True, text=True, check=True).stdout
    requests, secs, p50, p99, non2xx, errors = re.search(
        r"RESULT (\d+) ([\d.]+) (\d+) (\d+) (\d+) (\d+)", out).groups()
    if int(non2xx) or int(errors):
        raise SystemExit(f"{route}: {non2xx} non-2xx answers, {errors} errors")
    return {"rps": int(requests) / float(secs), "p50_ms": int(p50) / 1000, "p99_ms": int(p99) / 1000}


def nginx(work, name, body):
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "logs"))
    conf = os.path.join(d, "nginx.conf")
    open(conf, "w").write(f"daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n{body}")
    return subprocess.Popen(["nginx", "-p", d, "-c", conf])


def main():
    work = tempfile.mkdtemp(prefix="frontdoor-bench-tls-")
    procs = []
    try:
        up, ngx, fd_google = free_port(), free_port(), free_port()
        procs.append(nginx(work, "upstream", f"""
            worker_processes 1;
            events {{ worker_connections 4096; }}
            http {{ access_log off;
              server {{ listen 127.0.0.1:{up}; keepalive_requests 1000000;
                location / {{ return 200 "ok\\n"; }} }} }}"""))

        config = os.path.join(work, "services.yaml")
        open(config, "w").write(f"""
listen: {{frontdoor: 127.0.0.1:0, google: 127.0.0.1:{fd_google}, metadata: 127.0.0.1:0}}
project: {{id: demo-project, number: "123456789012", region: us-central1}}
service_accounts: [{{email: {CALLER}}}]
services:
  - name: bench
    upstream: http://127.0.0.1:{up}
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{CALLER}]}}]}}
""")
        state = os.path.join(work, "state")
        fd_proc = subprocess.Popen([FRONTDOOR, "serve", "--config", config, "--state-dir", state],
                                   stdout=subprocess.DEVNULL, env={**os.environ, "FRONTDOOR_LOG": "warn"})
        procs.append(fd_proc)
        wait_port(fd_google)
        addresses = json.load(open(os.path.join(state, "addresses.json")))
        proxy = addresses["services"]["bench"]["metadata"]
        token = subprocess.run([TOOL, "mint", config, state, CALLER, f"https://{HOST}", "1"],
                               capture_output=True, text=True, check=True).stdout.strip()
        ca_pem, ca_key = os.path.join(state, "ca", "ca.pem"), os.path.join(state, "ca", "key.pem")

        # nginx's certificate: the same type as frontdoor's leaves (ECDSA P-256, signed by
        # the same CA), served with the CA after it as frontdoor serves its chain.
        key, csr, leaf, chain = (os.path.join(work, f) for f in ("leaf.key", "leaf.csr", "leaf.pem", "chain.pem"))
        ext = os.path.join(work, "leaf.ext")
        open(ext, "w").write(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={HOST}"],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                        "-CAcreateserial", "-days", "2", "-out", leaf, "-extfile", ext],
                       check=True, capture_output=True)
        open(chain, "w").write(open(leaf).read() + open(ca_pem).read())
        procs.append(nginx(work, "nginx-tls", f"""
            worker_processes 2;
            events {{ worker_connections 4096; }}
            http {{ access_log off;
              upstream tiny {{ server 127.0.0.1:{up}; keepalive 128; }}
              server {{ listen 127.0.0.1:{ngx} ssl; keepalive_requests 1000000;
                ssl_certificate {chain}; ssl_certificate_key {key};
                ssl_protocols TLSv1.3;
                location / {{ proxy_pass http://tiny; proxy_http_version 1.1;
                             proxy_set_header Connection ""; }} }} }}"""))
        wait_port(up)
        wait_port(ngx)

        setups = [("nginx TLS (no auth)", f"direct:127.0.0.1:{ngx}", None),
                  ("frontdoor TLS (token and IAM checked)", f"proxy:{proxy}", token)]
        runs = {(mode, name): [] for mode in ("keepalive", "handshake") for name, _, _ in setups}
        for mode, conns in (("keepalive", 64), ("handshake", 16)):
            for name, route, tok in setups:
                load(mode, route, ca_pem, tok, conns, seconds=2)  # warm-up
            for _ in range(3):
                for name, route, tok in setups:
                    runs[(mode, name)].append(load(mode, route, ca_pem, tok, conns))

        print(f"\n{DURATION} s per run, 3 alternating runs each, one client thread, "
              "2 cores shared by everything\n")
        print("| setup | mode | runs req/s | median req/s | median p50 ms | median p99 ms | vs nginx |")
        print("|---|---|---|---:|---:|---:|---:|")
        medians = {}
        for (mode, name), rs in runs.items():
            medians[(mode, name)] = statistics.median(r["rps"] for r in rs)
        for (mode, name), rs in runs.items():
            ref = medians[(mode, setups[0][0])]
            each = " / ".join(f"{r['rps']:.0f}" for r in rs)
            shown = {"keepalive": "keep-alive", "handshake": "new connection each"}[mode]
            print(f"| {name} | {shown} | {each} | "
                  f"{medians[(mode, name)]:.0f} | {statistics.median(r['p50_ms'] for r in rs):.2f} | "
                  f"{statistics.median(r['p99_ms'] for r in rs):.2f} | {medians[(mode, name)] / ref:.2f}× |")
        keep = medians[("keepalive", setups[1][0])] / medians[("keepalive", setups[0][0])]
        hand = medians[("handshake", setups[1][0])] / medians[("handshake", setups[0][0])]
        print("\n| target | measured | met |")
        print("|---|---|---|")
        print(f"| keep-alive ≥ 1.0× nginx-TLS (median of 3) | {keep:.2f}× | "
              f"{'yes' if keep >= 1 else 'no'} |")
        print(f"| new-connection rate, beside nginx on the same work | {hand:.2f}× | (no target; reported) |")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
