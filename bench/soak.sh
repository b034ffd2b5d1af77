#!/usr/bin/env bash
# A 10-minute mixed soak of one frontdoor (SOAK_SECONDS to change): nothing lost on the
# allowed routes, memory flat. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/soak.py
