"""Shared fixtures: repo paths, the shared SST-2 data, and the payload stack provisioned by the real role."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SST2 = SHARED / "data" / "sst2"
BIN = Path(sys.executable).parent


def ansible_playbook(*args: str, cwd: Path = REPO, timeout: int = 1800, env: dict | None = None):
    """Run ansible-playbook from the controller venv, as a user would from the repo root."""
    full_env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0", **(env or {})}
    return subprocess.run([str(BIN / "ansible-playbook"), *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="session")
def stack_python() -> Path:
    """The payload stack's interpreter, created (or found up to date) by the provision playbook."""
    override = os.environ.get("FLEETBENCH_STACK_PYTHON")
    if override:
        return Path(override)
    proc = ansible_playbook("playbooks/provision.yml", "-e", "provision_os_packages_enabled=false")
    assert proc.returncode == 0, f"provisioning the stack failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    home = Path.home()
    lock = (REPO / "requirements" / "stack.txt").read_bytes()
    venv = home / ".cache" / "fleetbench" / "stacks" / f"venv-{hashlib.sha256(lock).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    assert python.exists(), f"provision reported success but {python} is missing"
    return python


def read_json(path: Path):
    return json.loads(path.read_text())
