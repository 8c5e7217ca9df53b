"""The nightly playbook end to end: a real run on localhost judged against a history it regressed from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import SST2, ansible_playbook

pytestmark = pytest.mark.e2e

FAST = ["-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}", "-e", "precision=avx_fp32", "-e", "steps=20",
        "-e", "warmup_steps=2", "-e", "max_seq_length=16", "-e", "provision_os_packages_enabled=false"]
CASE = "inference-throughput-gated"  # one case of the nightly matrix (cases.yml)
FLEETBENCH = [sys.executable, "-m", "fleetbench.cli"]


def _earlier_copy(run: Path, history: Path, nights_ago: int, speedup: float) -> str:
    """`run` as if it had run `nights_ago` nights earlier, `speedup` times faster (every throughput figure)."""
    started = datetime.now(timezone.utc) - timedelta(days=nights_ago)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-seed{nights_ago:02d}"
    copy = history / run_id
    shutil.copytree(run, copy, symlinks=True)
    meta = json.loads((copy / "run.json").read_text())
    meta.update(run_id=run_id, started_at=started.isoformat(timespec="seconds"))
    (copy / "run.json").write_text(json.dumps(meta))
    for path in copy.glob("hosts/*/*/result.json"):
        doc = json.loads(path.read_text())
        doc["run_id"] = run_id
        doc["kpi"]["throughput"] *= speedup
        for inst in doc.get("instances", []):
            inst["throughput"] *= speedup
        path.write_text(json.dumps(doc))
    for stale in ("summary.json", "kpi.csv", "report.md"):
        (copy / stale).unlink(missing_ok=True)
    return run_id


def test_nightly_stores_the_run_flags_the_regression_writes_the_html_and_fails(tmp_path, stack_python):
    first = tmp_path / "first"
    proc = ansible_playbook("run.yml", *FAST, "-e", f"cases=^{CASE}$", "-e", f"fleetbench_results_dir={first}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    measured = (first / "latest").resolve()

    # Six earlier nights, three times faster than this machine is now: tonight's run is a regression.
    history = tmp_path / "results"
    history.mkdir()
    db = history / "fleetbench.sqlite"
    for night in range(7, 1, -1):
        seeded = _earlier_copy(measured, history, night, 3.0)
        ingest = subprocess.run([*FLEETBENCH, "ingest", str(history / seeded)], capture_output=True, text=True,
                                env={"FLEETBENCH_DB": str(db), "PATH": "/usr/bin:/bin"})
        assert ingest.returncode == 0 and ": added," in ingest.stdout, ingest.stdout + ingest.stderr

    proc = ansible_playbook("playbooks/nightly.yml", *FAST, "-e", f"nightly_cases=^{CASE}$",
                            "-e", f"fleetbench_results_dir={history}")
    out = proc.stdout
    assert proc.returncode != 0, "a regression must fail the nightly job"
    assert "Regressions against the history" in out and "The run is partial" not in out, out[-4000:]
    tonight = (history / "latest").resolve()
    assert tonight.name not in {p.name for p in history.iterdir() if "-seed" in p.name}
    result = json.loads((tonight / f"hosts/localhost/{CASE}/result.json").read_text())
    assert result["status"] == "passed", result["reason"]
    html = (tonight / "report.html").read_text()
    assert "<svg" in html and tonight.name in html
    check = subprocess.run([*FLEETBENCH, "check", "--run", tonight.name], capture_output=True, text=True,
                           env={"FLEETBENCH_DB": str(db), "PATH": "/usr/bin:/bin"})
    assert check.returncode == 1 and "regression" in check.stdout.lower(), check.stdout + check.stderr
    assert CASE in check.stdout and "localhost" in check.stdout
