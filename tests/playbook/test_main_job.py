"""The main job end to end on localhost: `ansible-playbook run.yml` exactly as a user types it."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import REPO, SST2, ansible_playbook

sys.path.insert(0, str(REPO / "payload"))
from fleetbench_payload import cpuinfo  # stdlib only

SCHEMA = json.loads((REPO / "payload/fleetbench_payload/result.schema.json").read_text())
OFFLINE = ["-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}"]

pytestmark = pytest.mark.e2e


def _run(tmp_path, *extra):
    results = tmp_path / "results"
    proc = ansible_playbook("run.yml", *OFFLINE, "-e", f"fleetbench_results_dir={results}", *extra)
    return proc, results


def _only_run(results):
    runs = [p for p in results.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1
    assert (results / "latest").resolve() == runs[0].resolve()
    return runs[0]


def test_avx_fp32_throughput_end_to_end(tmp_path, stack_python):
    proc, results = _run(tmp_path, "-e", "precision=avx_fp32", "-e", "steps=12", "-e", "warmup_steps=2")
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:]
    run = _only_run(results)
    result_path = run / "hosts" / "localhost" / "inference-throughput" / "result.json"
    result = json.loads(result_path.read_text())
    jsonschema.validate(result, SCHEMA)
    assert result["status"] == "passed", result["reason"]
    assert result["kpi"]["throughput"] > 0
    assert result["kpi"]["samples_timed"] == 12
    assert result["kpi"]["accuracy_meaningful"] is False or result["kpi"]["accuracy"] is None
    assert result["execution"]["backend"] == "ipex"
    assert result["provenance"]["dataset"]["sha256"] == \
        "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"
    assert (run / "hosts" / "localhost" / "inference-throughput" / "payload.log").read_text().count("Throughput:") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete"
    rows = list(csv.DictReader((run / "kpi.csv").open()))
    assert len(rows) == 1 and float(rows[0]["throughput"]) == pytest.approx(result["kpi"]["throughput"], rel=1e-3)
    assert "#Key KPI" in (run / "report.md").read_text()
    # The table and the WSF block are printed at the end of the playbook.
    assert "#Key KPI" in out and "*Throughput (samples/sec):" in out
    assert "avx_fp32" in out and "localhost" in out
    # The host's working folder for this run is gone; only the deliberate caches remain.
    assert not (Path.home() / ".cache/fleetbench/host/runs" / run.name).exists()


def test_amx_int8_runs_on_amx_and_is_skipped_with_the_reason_elsewhere(tmp_path, stack_python):
    """The default ISA gate and check, as a user meets them: judged by this host's flags."""
    lacks = cpuinfo.missing_isa("amx_int8", cpuinfo.detect()["platform"]["isa"])
    proc, results = _run(tmp_path, "-e", "precision=amx_int8", "-e", "steps=5")
    assert proc.returncode == 0, proc.stdout[-6000:]
    run = _only_run(results)
    result = json.loads((run / "hosts/localhost/inference-throughput/result.json").read_text())
    jsonschema.validate(result, SCHEMA)
    if lacks:
        assert result["status"] == "skipped"
        assert result["reason"].startswith(f"precision amx_int8 needs {', '.join(lacks)}")
        assert not (result.get("kpi") or {}).get("throughput")
        assert "skipped" in proc.stdout and "amx" in proc.stdout
    else:  # verify_isa is on by default for amx_*: oneDNN's own output says AMX int8 kernels ran
        assert result["status"] == "passed", result["reason"]
        check = result["isa_verification"]
        assert check["passed"] and check["amx"] and check["int8_kernels"] > 0, check
        assert any("amx" in isa for isa in check["compute_isa"]), check
        assert result["kpi"]["throughput"] > 0 and result["execution"]["dtype"] == "int8 + bfloat16"
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(("arg", "expected"), [
    ("precision=amx_int9", "precision='amx_int9' is not allowed"),
    ("batch_size=0", "batch_size=0 is not allowed"),
    ("mode=Throughput", "did you mean 'throughput'"),
])
def test_bad_parameters_fail_before_any_host_is_touched(tmp_path, arg, expected):
    proc, results = _run(tmp_path, "-e", arg)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert "Gather the minimal host facts" not in proc.stdout
    assert not results.exists(), "no run folder may be created for invalid parameters"


def test_upper_case_name_is_an_alias(tmp_path):
    # Validation accepts the alias; a wrong value under the alias is still rejected early.
    proc, _ = _run(tmp_path, "-e", "PRECISION=amx_int9")
    assert proc.returncode != 0 and "precision='amx_int9'" in proc.stdout + proc.stderr


def test_offline_hub_model_fails_early_and_leaves_no_run_behind(tmp_path):
    # The default model comes from the Hub; port 9 on loopback refuses, as an offline machine does.
    results = tmp_path / "results"
    proc = ansible_playbook("run.yml", "-e", f"dataset_dir={SST2}", "-e", f"fleetbench_results_dir={results}",
                            env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "model_source=synthetic" in out, "the error says how to run offline"
    assert "Gather the minimal host facts" not in proc.stdout
    assert not results.exists(), "a run that cannot stage leaves no run folder and does not move results/latest"


def test_oversized_host_files_are_not_fetched(tmp_path):
    # A host cannot fill the controller's disk: files over benchmark_fetch_max_mib stay on the host.
    proc, results = _run(tmp_path, "-e", "precision=avx_fp32", "-e", "dry_run=true",
                         "-e", "benchmark_fetch_max_mib=0")
    assert proc.returncode != 0
    run = _only_run(results)
    [result] = run.glob("hosts/*/*/result.json")
    doc = json.loads(result.read_text())
    assert doc["status"] == "failed"
    assert "over benchmark_fetch_max_mib=0 MiB on the host: not fetched" in doc["reason"]
    assert not list(run.glob("hosts/*/*/payload.log"))
