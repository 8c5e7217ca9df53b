"""Provisioning is idempotent and --check changes nothing (localhost, a fresh host root)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ansible_playbook

pytestmark = pytest.mark.e2e


def recap(out: str) -> dict[str, int]:
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert m, out[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))


def test_second_provision_changes_nothing_and_check_mode_writes_nothing(tmp_path, stack_python):
    root = tmp_path / "host-root"
    args = ("playbooks/provision.yml", "-e", f"fleetbench_host_root={root}",
            "-e", "provision_os_packages_enabled=false")

    check = ansible_playbook(*args, "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)["changed"] > 0, "check mode must report what a first run would change"
    assert not root.exists(), "--check must not write anything"

    first = ansible_playbook(*args)
    assert first.returncode == 0 and recap(first.stdout)["changed"] > 0, first.stdout[-3000:]
    second = ansible_playbook(*args)
    assert second.returncode == 0 and recap(second.stdout)["changed"] == 0, second.stdout[-3000:]
    again = ansible_playbook(*args, "--check")
    assert recap(again.stdout)["changed"] == 0


def test_a_bad_offline_value_is_refused_before_any_host():
    proc = ansible_playbook("playbooks/provision.yml", "--check", "-e", "offline=maybe")
    assert proc.returncode != 0 and "offline=maybe is not allowed: expected true or false" in proc.stdout
    assert "Validating arguments against arg spec" not in proc.stdout, "the provision role must not have started"
