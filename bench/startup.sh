#!/usr/bin/env bash
# Start-up latency of `frontdoor serve` with an existing state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
python3 bench/startup.py "${1:-21}"
