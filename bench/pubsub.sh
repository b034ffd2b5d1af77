#!/usr/bin/env bash
# Pub/Sub push deliveries through the front door with an ID token, against pushes to the
# same receiver directly, and the memory 100,000 undelivered messages take. Loopback only;
# bounded in count (a few thousand messages a run, three runs each) and time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin frontdoor
python3 bench/pubsub.py
