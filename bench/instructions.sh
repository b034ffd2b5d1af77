#!/usr/bin/env bash
# Instructions a warm front-door request costs, and the hyper floor's, by callgrind
# (bench/instructions.py). Installs valgrind and nginx when missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in valgrind nginx; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq valgrind nginx >/dev/null
fi
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/instructions.py "$@"
