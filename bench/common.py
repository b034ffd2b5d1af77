"""What the benchmark scripts share: loopback ports and a process's memory."""

import socket
import subprocess
import time


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=20):
    """Returns once something accepts on the loopback port; exits after `deadline` s."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def start_nginx(work, name, body):
    """Starts an nginx of its own under work/name with the `body` of its config (after the
    daemon, pid and error-log lines every one has)."""
    import os
    d = os.path.join(work, name)
    os.makedirs(os.path.join(d, "logs"))
    conf = os.path.join(d, "nginx.conf")
    open(conf, "w").write(f"daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n{body}")
    return subprocess.Popen(["nginx", "-p", d, "-c", conf])


def tiny_upstream(port):
    """The config body of an nginx answering `ok` on the loopback port: the upstream."""
    return f"""
            worker_processes 1;
            events {{ worker_connections 4096; }}
            http {{ access_log off;
              server {{ listen 127.0.0.1:{port}; keepalive_requests 1000000;
                location / {{ return 200 "ok\\n"; }} }} }}"""


def memory_mib(pid, field):
    """A /proc/PID/status memory line in MiB: VmRSS now, or VmHWM, the peak so far."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop_all(procs):
    """Terminates every process, then waits for each (10 s, then kills it)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
