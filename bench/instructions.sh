#!/usr/bin/env bash
# Instructions a warm front-door request costs, and the hyper floor's, by callgrind
# (bench/instructions.py). Installs valgrind and nginx when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/need.sh
need valgrind nginx
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/instructions.py "$@"
