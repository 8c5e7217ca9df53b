"""The payload end to end on this host: ``python -m fleetbench_payload run`` in the stack venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from payload_harness import HOST, ISA, PAYLOAD, SST2, PayloadRunner, sha256

pytestmark = pytest.mark.stack

PHYSICAL_CORES = HOST["host"]["physical_cores"]


def kpi_lines(log: str, name: str) -> list[float]:
    pattern = {"Throughput": r"^Throughput: ([0-9.]+) sentences/s$", "P50": r"^P50 Latency ([0-9.]+) ms$",
               "P99": r"^P99 Latency ([0-9.]+) ms$", "eval_accuracy": r"^eval_accuracy = ([0-9.]+)$"}[name]
    return [float(v) for v in re.findall(pattern, log, re.MULTILINE)]


def check_timing(kpi: dict[str, Any], samples: int, iterations: int) -> None:
    assert kpi["samples_timed"] == samples
    assert kpi["iterations_timed"] == iterations
    assert kpi["throughput"] > 0
    assert kpi["throughput"] == pytest.approx(kpi["samples_timed"] / kpi["time_measured_s"], rel=1e-9)
    lat = kpi["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert lat["mean"] * iterations / 1000 == pytest.approx(kpi["time_measured_s"], rel=1e-6)
    assert kpi["time_measured_s"] <= kpi["wall_s"]


def test_accuracy_of_the_tiny_model_on_the_real_dev_set(run_payload: PayloadRunner, tiny_model: Path) -> None:
    run = run_payload(model_dir=tiny_model, mode="accuracy", warmup_steps=1)  # batch_size defaults to 100
    doc = run.result
    assert doc["status"] == "passed", doc["reason"]
    kpi = doc["kpi"]
    assert kpi["accuracy"] >= 75
    assert kpi["accuracy_meaningful"] is True
    check_timing(kpi, samples=872, iterations=9)
    assert kpi_lines(run.log, "eval_accuracy") == [pytest.approx(kpi["accuracy"] / 100, abs=5e-5)]
    assert doc["provenance"]["dataset"] == {"split": "dev", "sentences": 872, "sha256": sha256(SST2 / "dev.tsv")}
    files = doc["provenance"]["model"]["files"]
    assert files["model.safetensors"] == sha256(tiny_model / "model.safetensors")
    assert set(files) >= {"config.json", "tokenizer.json", "vocab.txt"}
    stack = doc["provenance"]["stack"]
    assert stack["torch"].startswith("2.8.0") and stack["ipex"].startswith("2.8.0")
    assert stack["transformers"] == "4.51.3" and stack["lock_sha256"]
    assert doc["execution"]["instance_number"] == 1


@pytest.mark.parametrize(("mode", "batch_size"), [("throughput", 4), ("latency", 1)])
def test_throughput_and_latency_figures_are_consistent(run_payload: PayloadRunner, tiny_model: Path, mode: str,
                                                        batch_size: int) -> None:
    run = run_payload(model_dir=tiny_model, mode=mode, batch_size=batch_size, steps=20, warmup_steps=3,
                      max_seq_length=64)
    doc = run.result
    assert doc["status"] == "passed", doc["reason"]
    kpi = doc["kpi"]
    check_timing(kpi, samples=20 * batch_size, iterations=20)
    assert kpi["accuracy"] is None
    assert kpi_lines(run.log, "Throughput") == [pytest.approx(kpi["throughput"], abs=1e-3)]
    assert kpi_lines(run.log, "P50") == [pytest.approx(kpi["latency_ms"]["p50"], abs=1e-3)]
    assert kpi_lines(run.log, "P99") == [pytest.approx(kpi["latency_ms"]["p99"], abs=1e-3)]
    assert "[fleetbench] warmup 3/3" in run.log and "[fleetbench] step 20/20" in run.log
    execution = doc["execution"]
    assert "torch.jit.trace" in execution["path"] and execution["dtype"] == "float32"
    cores = len(HOST["host"]["numa_nodes"][0]["cores"])
    assert execution["threads"] == cores == len(execution["cpus"])
    assert doc["instances"][0]["affinity"] == execution["cpus"]
    env = doc["provenance"]["environment"]
    assert env["OMP_NUM_THREADS"] == str(cores)
    launch = execution["launch"]
    if launch["allocator"]:  # jemalloc or tcmalloc was found: it is preloaded and really mapped in the instance
        assert env["LD_PRELOAD"].startswith(launch["allocator_path"])
        assert any(launch["allocator"] in lib for lib in launch["loaded_libraries"])
    assert (launch["numactl"] is None) == (shutil.which("numactl") is None) or "numactl does not work" in str(
        launch["notes"])
    assert kpi["latency_ms"]["p99"] <= kpi["latency_ms"]["p999"]
    assert kpi["min_duration_met"] is True and doc["memory"]["peak_rss_mib"][0] > 0
    assert env["ONEDNN_MAX_CPU_ISA"] == execution["isa_caps"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_VNNI"
    if ISA["avx512f"]:
        assert execution["isa_caps"]["onednn_isa"] == "AVX512_VNNI"


@pytest.mark.skipif(ISA["amx_tile"], reason="this host has AMX")
def test_amx_precision_is_skipped_without_amx(run_payload: PayloadRunner) -> None:
    run = run_payload(precision="amx_int8", mode="throughput", steps=5)
    doc = run.result
    assert doc["status"] == "skipped"
    assert "amx_int8" in doc["reason"]
    for flag in ("amx_tile", "amx_int8", "amx_bf16"):
        assert flag in doc["reason"]
    assert "kpi" not in doc and "instances" not in doc
    assert "Throughput" not in run.log
    assert run.seconds < 10, "the ISA gate should answer before torch is imported"


def test_dry_run_touches_no_model(run_payload: PayloadRunner) -> None:
    run = run_payload(mode="throughput", extra_args=("--dry-run",))
    assert (run.result["status"], run.result["reason"]) == ("skipped", "dry run")
    assert run.result["platform"]["name"] == HOST["platform"]["name"]
    assert "kpi" not in run.result


def test_core_oversubscription_fails_before_loading(run_payload: PayloadRunner, tiny_model: Path) -> None:
    run = run_payload(model_dir=tiny_model, cores_per_instance=PHYSICAL_CORES + 1, instance_number=1)
    doc = run.result
    assert doc["status"] == "failed"
    need = PHYSICAL_CORES + 1
    assert f"cores_per_instance={need} x instance_number=1 needs {need} physical cores" in doc["reason"]
    assert f"has {PHYSICAL_CORES} usable" in doc["reason"]
    assert "preparing" not in run.log and "model" not in doc.get("provenance", {})
    assert run.seconds < 10, "over-subscription should be refused before torch is imported"


def test_pickle_only_model_is_refused_without_opt_in(run_payload: PayloadRunner, tmp_path: Path) -> None:
    folder = tmp_path / "pickle-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    doc = run_payload(model_dir=folder).result
    assert doc["status"] == "failed"
    assert "pytorch_model.bin" in doc["reason"]
    assert "-e allow_pickle_weights=true" in doc["reason"] and "model.safetensors" in doc["reason"]


def test_pickle_model_loads_with_opt_in_and_a_warning(run_payload: PayloadRunner, tiny_model: Path,
                                                      stack_python: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickle-model"
    subprocess.run([str(stack_python), "-c", "import sys; from transformers import "
                    "AutoModelForSequenceClassification as M, AutoTokenizer as T; "
                    "M.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], safe_serialization=False); "
                    "T.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])", str(tiny_model), str(folder)],
                   check=True, capture_output=True)
    assert not (folder / "model.safetensors").exists()
    doc = run_payload(model_dir=folder, allow_pickle_weights=True, steps=2, warmup_steps=1).result
    assert doc["status"] == "passed", doc["reason"]
    assert any("pickle" in w for w in doc["warnings"])
    assert "pytorch_model.bin" in doc["provenance"]["model"]["files"]


def test_model_hash_mismatch_is_refused(run_payload: PayloadRunner, tiny_model: Path) -> None:
    good = {name: sha256(tiny_model / name) for name in ("config.json", "model.safetensors")}
    doc = run_payload(model_dir=tiny_model, expected={**good, "model.safetensors": "0" * 64}).result
    assert doc["status"] == "failed"
    assert "model.safetensors" in doc["reason"] and "0" * 64 in doc["reason"]
    doc = run_payload(model_dir=tiny_model, expected={**good, "extra.bin": "0" * 64}).result
    assert doc["status"] == "failed" and "extra.bin is missing" in doc["reason"]


def test_synthetic_full_size_model_is_built_once_and_runs(run_payload: PayloadRunner, tmp_path: Path) -> None:
    cache = tmp_path / "host-cache"
    first = run_payload(model_source="synthetic", cache_dir=cache, mode="throughput", batch_size=1, steps=3,
                        warmup_steps=1)
    doc = first.result
    assert doc["status"] == "passed", doc["reason"]
    assert "building synthetic DistilBERT-base" in first.log
    assert "accuracy not meaningful (random weights)" in first.log
    assert doc["kpi"]["accuracy_meaningful"] is False
    assert doc["kpi"]["samples_timed"] == 3
    model = doc["provenance"]["model"]
    assert model["source"] == "synthetic" and re.fullmatch(r"[0-9a-f]{16}", model["revision"])
    [folder] = cache.glob("synthetic-*")
    assert (folder / "model.safetensors").stat().st_size > 250_000_000  # DistilBERT-base: 66M fp32 weights
    assert not list(cache.glob(".synthetic-*")), "the temporary build folder was left behind"
    built = (folder / "model.safetensors").stat().st_mtime_ns

    second = run_payload(model_source="synthetic", cache_dir=cache, mode="throughput", batch_size=1, steps=3,
                         warmup_steps=1)
    assert second.result["status"] == "passed", second.result["reason"]
    assert f"reusing synthetic model {folder}" in second.log
    assert "building" not in second.log
    assert (folder / "model.safetensors").stat().st_mtime_ns == built
    assert second.result["provenance"]["model"] == model


def test_synthetic_vocabulary_is_the_same_on_every_host(stack_python: Path, tmp_path: Path) -> None:
    """Two hosts building "the same" synthetic model must get the same files: build the tokenizer in two
    processes with different hash seeds (the Rust trainer's tie-breaking differed between processes)."""
    code = ("import sys; from pathlib import Path; from fleetbench_payload.dataset import read_sst2; "
            "from fleetbench_payload.synthetic import build_tokenizer; "
            "build_tokenizer(read_sst2(Path(sys.argv[1])).sentences, 30522, Path(sys.argv[2]))")
    built = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        out.mkdir()
        subprocess.run([str(stack_python), "-c", code, str(SST2 / "train.tsv"), str(out)], check=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(PAYLOAD), "PYTHONHASHSEED": seed})
        built.append({f.name: sha256(f) for f in sorted(out.iterdir())})
    assert built[0] == built[1]
    assert {"vocab.txt", "tokenizer.json"} <= set(built[0])


def test_jit_trace_failure_fails_the_case(run_payload: PayloadRunner, tiny_model: Path, tmp_path: Path) -> None:
    # sitecustomize runs at interpreter start: make torch.jit.trace raise, as a real tracing error would.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import torch\n\n"
        "def _trace(*args, **kwargs):\n"
        "    raise RuntimeError('Tracer cannot infer type of output (injected by the test)')\n\n"
        "torch.jit.trace = _trace\n")
    run = run_payload(model_dir=tiny_model, steps=2, pythonpath=(hook,))
    doc = run.result
    assert doc["status"] == "failed"
    assert doc["reason"] == "jit trace failed: RuntimeError: Tracer cannot infer type of output (injected by the test)"
    assert "kpi" not in doc and "Throughput" not in run.log


@pytest.mark.skipif(PHYSICAL_CORES < 2, reason="needs two physical cores")
def test_two_pinned_instances_start_their_timed_phase_together(run_payload: PayloadRunner, tiny_model: Path,
                                                               tmp_path: Path) -> None:
    # The instance on the second core starts 4 s late (before it even imports torch): only the barrier can make
    # the two timed phases (each at least min_duration_s = 2 s) overlap.
    hook = tmp_path / "hook"
    hook.mkdir()
    late = HOST["host"]["numa_nodes"][0]["cores"][1] if len(HOST["host"]["numa_nodes"][0]["cores"]) > 1 else None
    (hook / "sitecustomize.py").write_text(
        "import os, sys, time\n"
        f"if 'instance' in sys.argv and os.sched_getaffinity(0) == {{{late}}}:\n"
        "    time.sleep(4)\n")
    run = run_payload(model_dir=tiny_model, mode="throughput", batch_size=2, steps=5, warmup_steps=2,
                      max_seq_length=64, cores_per_instance=1, instance_number=2, min_duration_s=2,
                      pythonpath=(hook,))
    doc = run.result
    assert doc["status"] == "passed", doc["reason"]
    instances = doc["instances"]
    assert [i["index"] for i in instances] == [0, 1]
    assert len(instances[0]["cpus"]) == len(instances[1]["cpus"]) == 1
    assert set(instances[0]["cpus"]).isdisjoint(instances[1]["cpus"])
    assert [i["affinity"] for i in instances] == [i["cpus"] for i in instances], "affinity read inside each instance"
    assert [set(a) for a in doc["execution"]["launch"]["thread_affinity"]] == [{str(c)} for i in instances
                                                                                for c in i["cpus"]]
    kpi = doc["kpi"]
    assert kpi["throughput"] == pytest.approx(sum(i["throughput"] for i in instances))
    assert kpi["samples_timed"] == sum(i["samples_timed"] for i in instances)
    assert kpi["min_duration_s"] == 2 and kpi["min_duration_met"] is True
    assert all(i["wall_s"] >= 2 and i["iterations_timed"] > 5 for i in instances), "min_duration_s kept iterating"
    assert kpi["overlap"] > 0.8, "the late instance's timed phase did not start with the other's"
    assert "all 2 instances ready: starting the timed phase together" in run.log
    assert doc["execution"]["threads"] == 1 and doc["execution"]["instance_number"] == 2
    assert doc["execution"]["processes"] == 2 and doc["execution"]["weight_sharing"] is False
    assert kpi_lines(run.log, "Throughput") == [pytest.approx(i["throughput"], abs=1e-3) for i in instances]
    assert "instance 1: step 5/5" in run.log


def test_case_that_cannot_fit_in_memory_fails_before_loading(run_payload: PayloadRunner, tiny_model: Path) -> None:
    run = run_payload(model_dir=tiny_model, batch_size=4096, max_seq_length=512, instance_number=1)
    doc = run.result
    assert doc["status"] == "failed"
    assert re.search(r"needs an estimated \d+ MiB \(processes x \(runtime \d+ MiB \+ 3 x weights \+ streams x "
                     r"activations\): 1 x \d+ MiB\), but the host has \d+ MiB available", doc["reason"]), doc["reason"]
    assert doc["memory"]["estimate_mib"] > doc["memory"]["available_mib"]
    assert "preparing" not in run.log and run.seconds < 10


def test_unreadable_case_file_exits_nonzero_without_a_result(stack_python: Path, tmp_path: Path) -> None:
    (tmp_path / "case.json").write_text('{"run_id": "x", "params": {}}')
    proc = subprocess.run([str(stack_python), "-m", "fleetbench_payload", "run", "--case", str(tmp_path / "case.json"),
                           "--out", str(tmp_path / "out")], cwd=PAYLOAD, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PAYLOAD)}, timeout=120)
    assert proc.returncode != 0
    assert not (tmp_path / "out" / "result.json").exists()
    assert "lacks host, case, params.mode" in (tmp_path / "out" / "payload.log").read_text()
