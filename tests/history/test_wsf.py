"""`fleetbench import-wsf`: logs written here in the reference workload's format, one of them malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetbench.cli import main
from fleetbench.db import Database
from fleetbench.history import load_samples


def params_dump(**over: str) -> str:
    """The reference's show_info block (run_test.sh's ALL_KEYS), as `KEY: value` lines."""
    values = {"WORKLOAD": "distilbert_pytorch_public", "PLATFORM": "SPR", "MODE": "throughput",
              "TOPOLOGY": "distilbert_base", "FUNCTION": "inference", "PRECISION": "amx_bfloat16",
              "BATCH_SIZE": "1", "STEPS": "100", "DATA_TYPE": "real", "CORES_PER_INSTANCE": "56",
              "INSTANCE_NUMBER": "2", "WEIGHT_SHARING": "False", "TRAIN_EPOCHS": "", "CASE_TYPE": "",
              "MAX_SEQ_LENGTH": "128", "ONEDNN_VERBOSE": "False", "MAX_CPU_ISA": "", "CUSTOMER_ENV": "",
              "WARMUP_STEPS": "10", **over}
    lines = ["-" * 20 + " Test Parameters Used " + "-" * 20, *(f"{k}: {v}" for k, v in values.items())]
    lines += ["Architecture:            x86_64", "CPU(s):                  224", "Model name:              "
              "Intel(R) Xeon(R) Platinum 8480+", "Set ENV OMP_NUM_THREADS=56", "Torch_Version: 2.8.0+cpu",
              "Running", "2025-01-01 12:00:00 - INFO - transformers - ***** Running Evaluation *****"]
    return "\n".join(lines) + "\n"


def kpi_lines(throughput: float, p50: float, p99: float) -> str:
    return (f"Throughput: {throughput} sentences/s\nP50 Latency {p50} ms\nP90 Latency {(p50 + p99) / 2} ms\n"
            f"P99 Latency {p99} ms\n")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def wsf_logs(tmp_path: Path) -> Path:
    """Three WSF runs as kpi.sh finds them (<run>/<pod>/benchmark_*.log), one with two instance pods."""
    root = tmp_path / "wsf"
    spr = root / "logs-spr-throughput"
    write(spr / "benchmark-pod-0" / "benchmark_0.log", params_dump() + kpi_lines(406.1, 2.41, 3.87) + "Finish case\n")
    write(spr / "benchmark-pod-1" / "benchmark_1.log", params_dump() + kpi_lines(406.245, 2.43, 3.91))
    acc = root / "logs-emr-accuracy"
    write(acc / "benchmark-pod-0" / "benchmark_accuracy.log",
          params_dump(PLATFORM="EMR", MODE="accuracy", BATCH_SIZE="100", PRECISION="avx_fp32")
          + "***** eval metrics *****\n  eval_accuracy           =     0.9106\n  eval_loss  =  0.39\n")
    bad = root / "logs-icx-broken"
    write(bad / "benchmark-pod-0" / "benchmark_0.log",
          params_dump(PLATFORM="ICX", PRECISION="avx_int4")
          + "Throughput: fast sentences/s\nP50 Latency 4.1 ms\nP99 Latency -- ms\neval_accuracy = 91.06\n")
    return root


def test_import_applies_the_reference_semantics(wsf_logs, tmp_path, capsys):
    url, results = str(tmp_path / "h.sqlite"), tmp_path / "results"
    assert main(["import-wsf", str(wsf_logs), "--db", url, "--results-dir", str(results)]) == 1
    out = capsys.readouterr().out
    database = Database(url)
    samples = {s.platform: s for s in load_samples(database)}
    database.close()
    spr = samples["SPR"]
    assert (spr.host, spr.case, spr.precision, spr.status, spr.included) == (
        "wsf-spr", "inference-throughput", "amx_bfloat16", "passed", True)
    assert spr.throughput == pytest.approx(406.1 + 406.245)  # summed over the instance lines
    assert spr.latency_p50 == pytest.approx((2.41 + 2.43) / 2) and spr.latency_p99 == pytest.approx(3.89)
    assert spr.stack == "torch 2.8.0+cpu"
    stored = [json.loads(p.read_text()) for p in results.glob("wsf-*/hosts/*/*/result.json")]
    spr_doc = next(d for d in stored if d["platform"]["name"] == "SPR")
    # The reference's latency KPI: 1000 x instances / summed throughput.
    assert spr_doc["kpi"]["latency_ms"]["mean"] == pytest.approx(1000 * 2 / (406.1 + 406.245))
    emr = samples["EMR"]
    assert (emr.case, emr.batch_size, emr.accuracy, emr.value("accuracy")) == (
        "inference-accuracy", 100, pytest.approx(91.06), pytest.approx(91.06))
    # The malformed run: every unreadable line reported with file and line, nothing guessed.
    icx = samples["ICX"]
    assert (icx.status, icx.included, icx.throughput) == ("failed", False, None)
    assert icx.reason == "import-wsf: no usable PRECISION line"
    where = "logs-icx-broken/benchmark-pod-0/benchmark_0.log"
    assert f"not used: {where}:7: precision='avx_int4' is not allowed" in out
    assert f"not used: {where}:28: cannot read 'Throughput: fast sentences/s'" in out
    assert f"not used: {where}:30: cannot read 'P99 Latency -- ms'" in out
    assert f"not used: {where}:31: cannot read 'eval_accuracy = 91.06' (expected a fraction 0..1)" in out
    assert out.count("not used:") == 4
    run_ids = sorted(p.name for p in results.iterdir())
    assert len(run_ids) == 3 and all(r.startswith("wsf-") for r in run_ids)
    result = json.loads(next(results.glob("*/hosts/wsf-spr/inference-throughput/result.json")).read_text())
    assert result["params"]["onednn_verbose"] == 0 and result["params"]["weight_sharing"] is False


def test_reimport_is_not_a_duplicate(wsf_logs, tmp_path, capsys):
    url, results = str(tmp_path / "h.sqlite"), str(tmp_path / "results")
    main(["import-wsf", str(wsf_logs / "logs-spr-throughput"), "--db", url, "--results-dir", results])
    assert main(["import-wsf", str(wsf_logs), "--db", url, "--results-dir", results]) == 1
    out = capsys.readouterr().out
    assert out.count(": added,") == 3 and ": unchanged," in out
    database = Database(url)
    assert database.rows("SELECT COUNT(*) FROM runs")[0][0] == 3
    database.close()


def test_a_log_without_its_headline_kpi_is_a_failed_case(tmp_path, capsys):
    root = tmp_path / "wsf"
    write(root / "pod" / "benchmark_0.log", params_dump(PLATFORM="GNR") + "Segmentation fault (core dumped)\n")
    url = str(tmp_path / "h.sqlite")
    assert main(["import-wsf", str(root), "--db", url, "--results-dir", str(tmp_path / "r"), "--host", "gnr-7"]) == 0
    database = Database(url)
    (sample,) = load_samples(database)
    database.close()
    assert (sample.host, sample.status, sample.reason) == (
        "gnr-7", "failed", "no usable Throughput line in the logs (mode throughput)")


def test_conflicting_values_across_pods_are_reported_and_not_used(tmp_path, capsys):
    root = tmp_path / "wsf"
    write(root / "run" / "pod-0" / "benchmark_0.log", params_dump() + kpi_lines(400.0, 2.0, 3.0))
    write(root / "run" / "pod-1" / "benchmark_1.log", params_dump(BATCH_SIZE="8") + kpi_lines(410.0, 2.0, 3.0))
    assert main(["import-wsf", str(root), "--db", str(tmp_path / "h.sqlite"), "--results-dir",
                 str(tmp_path / "r")]) == 1
    out = capsys.readouterr().out
    assert "run/pod-1/benchmark_1.log:8: batch_size 8 contradicts 1 found before; neither is used" in out
    assert "failed" in out


def test_no_logs_is_an_error(tmp_path, capsys):
    assert main(["import-wsf", str(tmp_path), "--db", str(tmp_path / "h.sqlite")]) == 2
    assert "no benchmark_*.log under" in capsys.readouterr().err


def test_instance_lines_that_do_not_match_instance_number_are_not_summed(tmp_path, capsys):
    """Two nights whose logs lie straight in their folders, imported from the folder above: kpi.sh's
    <run>/<pod>/ layout makes that one run of four instance lines, which INSTANCE_NUMBER (2) contradicts; a
    run with a log missing is not summed either."""
    root = tmp_path / "wsf"
    for night in ("night1", "night2"):
        for i in (0, 1):
            write(root / night / f"benchmark_{i}.log", params_dump(PLATFORM="ICX", PRECISION="avx_fp32")
                  + kpi_lines(101.0, 9.8, 10.4))
    write(tmp_path / "short" / "run" / "pod0" / "benchmark_0.log",
          params_dump(PLATFORM="EMR", PRECISION="avx_fp32") + kpi_lines(102.0, 9.7, 10.2))
    url, results = str(tmp_path / "h.sqlite"), tmp_path / "results"
    for folder in (root, tmp_path / "short"):
        assert main(["import-wsf", str(folder), "--db", url, "--results-dir", str(results)]) == 1
    out = capsys.readouterr().out
    assert "4 Throughput lines, but INSTANCE_NUMBER is 2" in out
    assert "1 Throughput lines, but INSTANCE_NUMBER is 2" in out
    database = Database(url)
    samples = load_samples(database)
    database.close()
    assert {(s.platform, s.status, s.included, s.throughput) for s in samples} == {
        ("ICX", "failed", False, None), ("EMR", "failed", False, None)}
    # Each night's own folder is a run of its two instances.
    assert main(["import-wsf", str(root / "night1"), "--db", url, "--results-dir", str(results)]) == 0
