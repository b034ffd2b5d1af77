#!/usr/bin/env bash
# The front door against nginx, haproxy and the upstream itself, in one run.
# Installs its references (Debian's nginx, haproxy, wrk) when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in nginx haproxy wrk openssl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq nginx haproxy wrk openssl >/dev/null
fi
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/frontdoor.py
