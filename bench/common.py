"""What the benchmark scripts share: loopback ports, a process's memory and CPU, and
the Envoy in front of the upstream (jwt_authn and rbac) that two of them measure against."""

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


def cpu_seconds(pid):
    """User and system CPU time a process has used so far."""
    import os
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def envoy_config(port, up, issuer, audience, jwks, caller, http2=False):
    """Envoy in front of the upstream on `up`: jwt_authn (RS256 against the local JWKS, the
    issuer and the audience checked, verified tokens cached) and rbac letting `caller`'s
    email in, the front door's warm work in Envoy's filters. With `http2`, it speaks HTTP/2
    to the upstream (clients may speak either to it)."""
    upstream_http2 = """
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}""" if http2 else ""
    return f"""
static_resources:
  listeners:
  - name: in
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: upstream}}}}]
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                google:
                  issuer: "{issuer}"
                  audiences: ["{audience}"]
                  local_jwks: {{filename: "{jwks}"}}
                  payload_in_metadata: jwt_payload
                  jwt_cache_config: {{jwt_cache_size: 1000}}
              rules: [{{match: {{prefix: "/"}}, requires: {{provider_name: google}}}}]
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  invoker:
                    permissions: [{{any: true}}]
                    principals:
                    - metadata:
                        filter: envoy.filters.http.jwt_authn
                        path: [{{key: jwt_payload}}, {{key: email}}]
                        value: {{string_match: {{exact: "{caller}"}}}}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: upstream
    connect_timeout: 1s
    type: STATIC{upstream_http2}
    load_assignment:
      cluster_name: upstream
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {up}}}}}}}}}]}}]
"""
