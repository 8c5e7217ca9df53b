#!/usr/bin/env bash
# Re-pin the three locks from their .in files (needs uv: `pip install uv`). Hashes cover every wheel.
set -euo pipefail
cd "$(dirname "$0")"
compile() { uv pip compile --universal --python-version 3.10 --generate-hashes --no-header "$1" -o "$2"; }
compile controller.in controller.txt
compile dev.in dev.txt
compile stack.in stack.body
# Provisioning reads this line to refuse a host Python the lock was not made for.
{ echo "# requires-python: >=3.10,<3.14"; cat stack.body; } > stack.txt
rm stack.body
