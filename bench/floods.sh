#!/usr/bin/env bash
# frontdoor's peak memory under the hardening issue's floods, beside the targets.
# Loopback only; about two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin frontdoor --example bench-tool
python3 bench/floods.py "$@"
