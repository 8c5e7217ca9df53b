#!/usr/bin/env bash
# The main job: sets up the controller venv on first use, then runs `ansible-playbook run.yml` with your
# options, e.g. ./run.sh -e precision=avx_fp32
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh controller
exec .venv/bin/ansible-playbook run.yml "$@"
