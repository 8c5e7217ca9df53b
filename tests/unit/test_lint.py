"""Static checks the project promises: ruff, yamllint, ansible-lint (production profile), syntax check."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("cmd", [
    ["ruff", "check", "."],
    ["yamllint", "-s", "."],
    ["ansible-playbook", "--syntax-check", "run.yml"],
    ["ansible-playbook", "--syntax-check", "playbooks/provision.yml"],
    ["ansible-playbook", "--syntax-check", "playbooks/selfcheck.yml"],
    ["ansible-lint", "--profile", "production", "--offline", "-q"],
], ids=lambda c: c[0] + (" " + c[-1] if "syntax" in " ".join(c) else ""))
def test_clean(cmd):
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
