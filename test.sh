#!/usr/bin/env bash
# The whole test suite: sets up what the tests need (controller venv with test tools, the payload stack
# through the provision playbook), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh dev
scripts/test-deps.sh
exec .venv/bin/python -m pytest "$@"
