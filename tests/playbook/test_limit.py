"""`--limit` to some hosts of an inventory that does not name localhost: the report is still written."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from tests.conftest import SST2, ansible_playbook

pytestmark = pytest.mark.e2e


def test_limit_without_localhost_still_reports_the_run(tmp_path):
    # Two simulated hosts (local connection, each with its own root); the payload runs in dry-run mode.
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                    "fleetbench_host_root": str(tmp_path / name)} for name in ("sim-a", "sim-b")}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"fleetbench": {"hosts": hosts}}}}))
    results = tmp_path / "results"
    proc = ansible_playbook("-i", str(inventory), "run.yml", "--limit", "sim-a", "-e", "dry_run=true",
                            "-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}", "-e", "precision=avx_fp32",
                            "-e", "provision_os_packages_enabled=false", "-e", f"fleetbench_results_dir={results}")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((results / "latest" / "summary.json").read_text())
    assert {row["host"] for row in summary["rows"]} == {"sim-a"}
    assert "Write summary.json, kpi.csv and report.md" in proc.stdout
