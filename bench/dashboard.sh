#!/usr/bin/env bash
# The front door with and without 100 dashboards open (issue 15), in one run.
# Installs its references (Debian's nginx as the upstream, wrk) when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in nginx wrk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq nginx wrk >/dev/null
fi
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/dashboard.py
