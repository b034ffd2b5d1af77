#!/usr/bin/env python3
"""Instructions a warm front-door request costs, by callgrind: frontdoor and the hyper floor
(`bench-tool bare-proxy conn`) each run under valgrind, one kept-alive client sends WARMUP
requests, the counters are dumped, then MEASURED requests and a second dump; each figure is
the second dump's total over MEASURED. Deterministic where wall-clock CPU on these machines
moves 5-10% run to run, so an A/B of two builds reads here to a fraction of a percent.

  frontdoor   the warm front door: the same token every request, IAM enforced, logging
              at warn (the bench's `frontdoor warm`), proxying to a tiny nginx
  floor       hyper alone between the same client and upstream, checking nothing

Usage: bench/instructions.sh [FRONTDOOR_BINARY]   (the release build by default)
With INSTRUCTIONS_KEEP=DIR, the measured dumps are copied there (frontdoor.callgrind,
floor.callgrind) for callgrind_annotate.
"""

import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import free_port, start_nginx, stop_all, tiny_upstream, wait_port  # noqa: E402
from frontdoor import CALLER, FRONTDOOR, TOOL, bench_config  # noqa: E402

WARMUP = 500
MEASURED = 2000


def dump_total(out_dir, pid):
    """Asks callgrind in `pid` to dump and zero its counters; the dump's instruction total."""
    before = set(glob.glob(os.path.join(out_dir, "cg.out*")))
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(glob.glob(os.path.join(out_dir, "cg.out*"))) - before
        for path in new:
            for line in open(path):
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise SystemExit("callgrind wrote no dump within 60 s")


def requests(port, headers, n):
    """`n` GETs on one kept-alive connection; each must be answered 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        conn.request("GET", "/", headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"got {r.status} from port {port}: {r.getheader('x-frontdoor-reason')}")
    conn.close()


def measure(name, argv, port, headers, work, env=None):
    """Instructions a request of `argv` (listening on `port`) costs under callgrind."""
    out_dir = os.path.join(work, name)
    os.makedirs(out_dir)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.out.%p"] + argv,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, deadline=120)
        requests(port, headers, WARMUP)
        dump_total(out_dir, proc.pid)
        requests(port, headers, MEASURED)
        total = dump_total(out_dir, proc.pid)
        keep = os.environ.get("INSTRUCTIONS_KEEP")
        if keep:
            # The measured dump, for callgrind_annotate (which function took what).
            newest = max(glob.glob(os.path.join(out_dir, "cg.out*")), key=os.path.getmtime)
            shutil.copy(newest, os.path.join(keep, f"{name}.callgrind"))
        return total / MEASURED
    finally:
        stop_all([proc])


def main():
    frontdoor = sys.argv[1] if len(sys.argv) > 1 else FRONTDOOR
    with tempfile.TemporaryDirectory() as work:
        up = free_port()
        procs = [start_nginx(work, "upstream", tiny_upstream(up))]
        try:
            wait_port(up)
            fd_google, fd_port = free_port(), free_port()
            config = os.path.join(work, "services.yaml")
            open(config, "w").write(bench_config(up, free_port(), fd_google)
                                    .replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{fd_port}"))
            state = os.path.join(work, "state")
            audience = "https://bench-123456789012.us-central1.run.app"
            token = subprocess.run([TOOL, "mint", config, state, CALLER, audience, "1"],
                                   capture_output=True, text=True, check=True).stdout.strip()
            env = {**os.environ, "FRONTDOOR_LOG": "warn"}
            fd = measure("frontdoor", [frontdoor, "serve", "--config", config, "--state-dir", state],
                         fd_port, {"Authorization": f"Bearer {token}"}, work, env)
            floor_port = free_port()
            floor = measure("floor", [TOOL, "bare-proxy", "conn", f"127.0.0.1:{floor_port}",
                                      f"127.0.0.1:{up}"], floor_port, {}, work)
        finally:
            stop_all(procs)
    print(json.dumps({"frontdoor": round(fd), "floor": round(floor),
                      "frontdoor above the floor": round(fd - floor)}))
    print(f"instructions a warm request: frontdoor {fd:,.0f}, hyper floor {floor:,.0f}, "
          f"frontdoor's own {fd - floor:,.0f}")


if __name__ == "__main__":
    main()
