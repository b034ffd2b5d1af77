#!/usr/bin/env bash
# The front door through TLS (frontdoor's egress proxy and local CA) against nginx
# terminating TLS, in one run. Installs nginx and openssl when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/need.sh
need nginx openssl
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/tls.py
