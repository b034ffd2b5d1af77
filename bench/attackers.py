"""Issue 26's attackers, run beside the soak's ordinary traffic (bench/soak.py): sockets
that never send a byte, TLS tunnels through the egress proxy that go quiet after their
handshake, and IAM policies at and over Google's limit of 1,500 principals. Each is a
thread that keeps at it until `stop` is set, reopening what the server closes, and counts
what happened to it. Loopback only."""

import http.client
import json
import resource
import select
import socket
import ssl
import threading
import time


def raise_fd_limit():
    """Thousands of sockets need more descriptors than a shell's default soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Holder(threading.Thread):
    """Holds `count` connections made by `open_one`, each silent once made; a connection
    the server closes is counted and replaced."""

    def __init__(self, name, count, stop, open_one):
        super().__init__(daemon=True)
        self.name, self.count, self.stop, self.open_one = name, count, stop, open_one
        self.opened = self.closed_by_server = self.refused = 0
        self.held_peak = 0

    def run(self):
        held = {}
        while not self.stop.is_set():
            while len(held) < self.count and not self.stop.is_set():
                try:
                    s = self.open_one()
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    self.refused += 1
                    break
                s.setblocking(False)
                held[s.fileno()] = s
                self.opened += 1
            self.held_peak = max(self.held_peak, len(held))
            poll = select.poll()
            for fd in held:
                poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
            for fd, _ in poll.poll(200):
                if gone(held[fd]):
                    held.pop(fd).close()
                    self.closed_by_server += 1
            if len(held) >= self.count:
                time.sleep(0.1)
        for s in held.values():
            s.close()

    def summary(self):
        return (f"{self.name}: {self.opened} opened, {self.closed_by_server} closed by the "
                f"server, {self.refused} not made, at most {self.held_peak} held at once")


def gone(s):
    """Whether a readable silent socket was closed by its peer (TLS records that carry no
    data, such as session tickets, are not a close)."""
    try:
        return s.recv(1) == b""
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


def silent_sockets(port, count, stop):
    """Connections to `port` that never send a byte."""
    return Holder(f"silent sockets on :{port}", count, stop,
                  lambda: socket.create_connection(("127.0.0.1", port), timeout=2))


def idle_tunnels(proxy_port, ca_file, count, stop, host="oauth2.googleapis.com"):
    """TLS tunnels to `host` through the egress proxy on `proxy_port`, quiet after the
    handshake."""
    context = ssl.create_default_context(cafile=ca_file)

    def open_one():
        s = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
        try:
            s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("the proxy closed the CONNECT")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise OSError(head.split(b"\r\n")[0].decode(errors="replace"))
            return context.wrap_socket(s, server_hostname=host)
        except BaseException:
            s.close()
            raise

    return Holder(f"idle TLS tunnels via :{proxy_port}", count, stop, open_one)


class LargePolicies(threading.Thread):
    """`setIamPolicy` on service `service` as the holder of `token`, back to back: 30,000
    one-member bindings of one role and 1,501 principals (both Google's 400), and every
    10 s 1,500 principals (accepted, a change in force)."""

    def __init__(self, google_port, token, service, stop):
        super().__init__(daemon=True)
        self.port, self.token, self.stop = google_port, token, stop
        self.path = (f"/v1/projects/demo-project/locations/us-central1/services/"
                     f"{service}:setIamPolicy")
        members = [f"user:u{i}@example.com" for i in range(30_000)]
        self.bodies = [
            json.dumps({"policy": {"bindings": [
                {"role": "roles/run.invoker", "members": [m]} for m in members]}}),
            json.dumps({"policy": {"bindings": [
                {"role": "roles/run.invoker", "members": members[:1501]}]}}),
            json.dumps({"policy": {"bindings": [
                {"role": "roles/run.invoker", "members": members[:1500]}]}}),
        ]
        self.answers = {}

    def run(self):
        i, accepted_at = 0, time.monotonic()
        kinds = ["30,000 bindings", "1,501 principals", "1,500 principals"]
        while not self.stop.is_set():
            which = i % 2
            if time.monotonic() - accepted_at >= 10:
                which, accepted_at = 2, time.monotonic()
            body, kind = self.bodies[which], kinds[which]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("POST", self.path, body=body, headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json"})
                status = conn.getresponse().status
                conn.close()
            except (http.client.HTTPException, OSError) as e:
                status = f"error: {type(e).__name__}"
            key = (kind, status)
            self.answers[key] = self.answers.get(key, 0) + 1
            i += 1

    def summary(self):
        rows = ", ".join(f"{kind} → {status} × {n}"
                         for (kind, status), n in sorted(self.answers.items(), key=str))
        return f"large policies: {rows}"
