#!/usr/bin/env bash
# Runs the three-service example: installs its Python dependencies into .venv/ (once),
# then starts frontdoor on this directory's services.yaml, which starts the services.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! cmp -s "$here/requirements.txt" "$here/.venv/.installed-requirements" 2>/dev/null; then
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$here/.venv/.installed-requirements"
fi
# The frontdoor the README's first command installed; without one, build it here (cargo
# shows its progress).
if command -v frontdoor >/dev/null; then
  exec frontdoor serve --config "$here/services.yaml" "$@"
fi
cd "$here/../.."
exec cargo run --release -- serve --config "$here/services.yaml" "$@"
