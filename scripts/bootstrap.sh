#!/usr/bin/env bash
# Create or update the controller venv (.venv) from the hash-pinned locks. Idempotent: a second call with
# unchanged locks does nothing. Usage: scripts/bootstrap.sh [controller|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-controller}
locks=(requirements/controller.txt)
[ "$profile" = dev ] && locks+=(requirements/dev.txt)

py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "fleetbench needs Python 3.10 or newer on the controller (found: $("$py" --version 2>&1)). Set PYTHON=/path/to/python3." >&2
  exit 1
fi
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "Python's venv module is missing: on Debian/Ubuntu run: apt-get install python3-venv" >&2
  exit 1
fi

stamp=$(cat "${locks[@]}" pyproject.toml | sha256sum | cut -d' ' -f1)
marker=.venv/.fleetbench-$profile
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$stamp" ]; then
  exit 0
fi
echo "[fleetbench] setting up the controller venv (.venv, $profile) ..." >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
args=()
for lock in "${locks[@]}"; do args+=(-r "$lock"); done
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes "${args[@]}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
echo "$stamp" > "$marker"
echo "[fleetbench] controller venv ready: source .venv/bin/activate" >&2
