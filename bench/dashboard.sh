#!/usr/bin/env bash
# The front door with and without 100 dashboards open (issue 15), in one run.
# Installs its references (Debian's nginx as the upstream, wrk) when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/need.sh
need nginx wrk
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/dashboard.py
