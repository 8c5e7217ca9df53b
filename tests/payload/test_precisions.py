"""Every precision x backend on this host, the ISA gate and require_isa=false, the ISA check, calibration and
its cache, the accuracy guard, weight sharing, the IPEX API the payload uses, and the selfcheck command.

Expectations come from this host's detected flags (cpuinfo), never from a list of which precisions skip here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from payload_harness import CACHE, HOST, ISA, PAYLOAD, SST2, STACK_LOCK, PayloadRunner, Run, cpuinfo, sha256

pytestmark = pytest.mark.stack

CORES = [c for node in HOST["host"]["numa_nodes"] for c in node["cores"]]
PRECISIONS = ("avx_fp32", "avx_int8", "amx_bfloat16", "amx_bfloat32", "amx_int8")
BACKENDS = ("ipex", "inductor")
COMBOS = [(p, b) for b in BACKENDS for p in PRECISIONS]
# The compile cache outlives a session (like the tiny model): a later session reuses compiled kernels.
INDUCTOR_CACHE = CACHE / "test-inductor" / sha256(STACK_LOCK)[:16]
_TORCH = re.search(r"^torch==(\d+)\.(\d+)", STACK_LOCK.read_text(), re.MULTILINE)
assert _TORCH, "the stack lock pins no torch"
TORCH_VERSION = (int(_TORCH[1]), int(_TORCH[2]))


def missing(precision: str) -> list[str]:
    return cpuinfo.missing_isa(precision, ISA)


def ipex_may_fail(precision: str) -> bool:
    """IPEX's bf16 and int8 kernels need AVX-512 (bf16 emulation, VNNI); without it they may fail, and then
    must fail with the real error."""
    return precision != "avx_fp32" and not (ISA["avx512f"] and ISA["avx512_vnni"])


def test_the_gate_skips_each_precision_the_host_lacks_before_loading_anything(run_payload: PayloadRunner) -> None:
    lacking = [(p, b) for p, b in COMBOS if missing(p)]
    for precision, backend in lacking:
        run = run_payload(precision=precision, backend=backend, mode="throughput", steps=2)
        doc = run.result
        assert doc["status"] == "skipped", (precision, backend, doc["reason"])
        assert doc["reason"].startswith(f"precision {precision} needs {', '.join(missing(precision))}, which this host")
        assert "kpi" not in doc and "isa_mismatch" not in doc
        assert run.seconds < 10, "the gate answers before torch is imported"
    # What the gate lets through runs exactly as in the matrix below (require_isa only matters when a flag is
    # missing); avx_int8 needs only AVX-512 VNNI, so on a VNNI host it must run, on both backends.
    if ISA["avx512_vnni"]:
        assert ("avx_int8", "ipex") not in lacking and ("avx_int8", "inductor") not in lacking


@pytest.fixture(scope="module")
def matrix(stack_python: Path, tiny_model: Path,
           tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Run]:
    """All ten precision x backend cases with require_isa=false, in accuracy mode on the tiny model (so every
    reduced precision also gets its accuracy guard), two at a time, each on its own core."""
    runner = PayloadRunner(stack_python, tmp_path_factory.mktemp("matrix"))
    cache = tmp_path_factory.mktemp("matrix-cache")
    slots: list[set[int]] = [{c} for c in CORES[:2]] if len(CORES) >= 2 else [set(CORES)]
    free = list(slots)
    lock = threading.Lock()

    def one(combo: tuple[str, str]) -> tuple[tuple[str, str], Run]:
        with lock:
            cpus = free.pop()
        try:
            precision, backend = combo
            return combo, runner(name=f"{backend}-{precision}", model_dir=tiny_model, cache_dir=cache, cpus=cpus,
                                 precision=precision, backend=backend, mode="accuracy", warmup_steps=1,
                                 max_seq_length=32, require_isa=False, verify_isa="true",
                                 env={"TORCHINDUCTOR_CACHE_DIR": str(INDUCTOR_CACHE)})
        finally:
            with lock:
                free.append(cpus)

    with ThreadPoolExecutor(len(slots)) as pool:
        return dict(pool.map(one, COMBOS))


@pytest.mark.parametrize(("precision", "backend"), COMBOS)
def test_every_precision_and_backend_runs_or_fails_with_the_real_error(matrix: dict[tuple[str, str], Run],
                                                                      precision: str, backend: str) -> None:
    run = matrix[(precision, backend)]
    doc = run.result
    lacks = missing(precision)
    assert doc.get("isa_mismatch") == ({"missing": lacks} if lacks else None)
    if backend == "inductor" and precision == "amx_bfloat32" and TORCH_VERSION < (2, 9):
        # PyTorch 2.8's only knob (set_float32_matmul_precision) reaches no kernel Inductor uses for linear
        # layers: the case is refused before loading instead of passing fp32 math off as bf32.
        assert doc["status"] == "skipped", doc["reason"]
        assert doc["reason"].startswith("amx_bfloat32 on backend=inductor needs PyTorch >= 2.9"), doc["reason"]
        assert "kpi" not in doc and "execution" not in doc
        return
    if doc["status"] == "failed" and backend == "ipex" and ipex_may_fail(precision):
        assert re.match(r"^[\w .()-]+ failed: \w+: .+", doc["reason"]), f"not the real error: {doc['reason']}"
        return
    assert doc["status"] == "passed", doc["reason"]
    execution = doc["execution"]
    assert execution["backend"] == backend
    assert execution["ipex_imported"] is (backend == "ipex"), "the inductor backend must never import IPEX"
    assert execution["path"] and execution["dtype"]
    if precision.startswith("avx_"):  # ONEDNN_MAX_CPU_ISA held: no AMX kernel, on an AMX host too
        assert doc["execution"]["isa_caps"]["ONEDNN_MAX_CPU_ISA"] != "unset"
        assert doc["isa_verification"]["amx"] is False, doc["isa_verification"]
    if precision.startswith("amx_") or precision == "avx_int8":
        check = doc["isa_verification"]
        assert check["passed"] and check["iterations"] == 2
        if precision.startswith("amx_") and not lacks:
            assert check["amx"], check["verdict"]
        if lacks and precision.startswith("amx_"):
            assert "as expected on a host without AMX" in check["verdict"]
    if precision.endswith("_int8"):
        assert execution["quantize_ops"] > 0 and doc["isa_verification"]["int8_kernels"] > 0
        assert execution["calibration"]["split"] == "train" and execution["calibration"]["sentences"] == 256
    if precision == "amx_bfloat32":
        assert doc["isa_verification"]["fpmath_bf16"] > 0
    kpi = doc["kpi"]
    assert kpi["samples_timed"] == 872 and kpi["accuracy_meaningful"] is True
    if precision == "avx_fp32":
        assert "accuracy_guard" not in doc
    else:
        guard = doc["accuracy_guard"]
        assert guard["accuracy"] == pytest.approx(kpi["accuracy"])
        assert guard["drop_points"] == pytest.approx(guard["fp32_accuracy"] - kpi["accuracy"])
        assert guard["flagged"] is (guard["drop_points"] > 1.0)
        assert ("accuracy guard:" in doc["reason"]) is guard["flagged"]
    if lacks:
        assert f"(isa_mismatch: host lacks {', '.join(lacks)})" in doc["reason"]


def test_a_failed_compile_fails_the_case_with_the_compilers_error(run_payload: PayloadRunner, tiny_model: Path,
                                                                  tmp_path: Path) -> None:
    run = run_payload(model_dir=tiny_model, precision="avx_fp32", backend="inductor", steps=1, warmup_steps=1,
                      max_seq_length=16, env={"CXX": "/nonexistent/g++",  # a fresh cache: nothing to reuse
                                              "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")})
    doc = run.result
    assert doc["status"] == "failed"
    assert doc["reason"].startswith("torch.compile (first call: Inductor code generation and C++ build) failed: "
                                    "BackendCompilerFailed:"), doc["reason"]
    assert "/nonexistent/g++" in doc["reason"] and "kpi" not in doc


def test_fp32_reference_is_the_same_whatever_the_backend(matrix: dict[tuple[str, str], Run]) -> None:
    fp32 = matrix[("avx_fp32", "ipex")].result
    assert fp32["status"] == "passed", fp32["reason"]
    references = {doc["accuracy_guard"]["fp32_accuracy"] for doc in (r.result for r in matrix.values())
                  if doc.get("accuracy_guard")}
    assert len(references) == 1
    assert references.pop() == pytest.approx(fp32["kpi"]["accuracy"], abs=0.2)  # eager vs IPEX-jit fp32


def test_calibration_is_cached_and_a_stale_entry_is_never_used(run_payload: PayloadRunner, tiny_model: Path,
                                                               tmp_path: Path) -> None:
    cache = tmp_path / "host-cache"
    common: dict[str, Any] = {"model_dir": tiny_model, "cache_dir": cache, "precision": "avx_int8",
                              "mode": "accuracy", "warmup_steps": 1, "require_isa": False}
    first = run_payload(max_seq_length=64, **common)
    doc = first.result
    assert doc["status"] == "passed", doc["reason"]
    calibration = doc["execution"]["calibration"]
    assert calibration["cached"] is False and "calibrating on 256 train sentences" in first.log
    recipe = json.loads((Path(calibration["folder"]) / "recipe.json").read_text())
    assert recipe["max_seq_length"] == 64 and recipe["train_sha256"] == sha256(SST2 / "train.tsv")
    assert recipe["model_files"]["model.safetensors"] == sha256(tiny_model / "model.safetensors")
    guard = doc["accuracy_guard"]
    assert guard["cached"] is False and "measuring the fp32 reference accuracy" in first.log

    # The same case again: no calibration, no fp32 pass. A planted fp32 reference of 99% (the cache is keyed by
    # model, dev set and max_seq_length, so this is the entry it reads) makes the guard flag the int8 accuracy.
    Path(guard["cache_file"]).write_text(json.dumps({"accuracy": 99.0, "correct": 863, "evaluated": 872}))
    second = run_payload(max_seq_length=64, **common)
    doc = second.result
    assert doc["status"] == "passed", doc["reason"]
    assert doc["execution"]["calibration"]["cached"] is True and doc["execution"]["calibration"]["key"] == \
        calibration["key"]
    assert "calibrating" not in second.log and f"using cached calibration {calibration['folder']}" in second.log
    guard = doc["accuracy_guard"]
    assert guard["cached"] is True and guard["fp32_accuracy"] == 99.0 and guard["flagged"] is True
    assert "accuracy guard:" in doc["reason"] and any("accuracy guard:" in w for w in doc["warnings"])
    assert doc["kpi"]["accuracy"] == pytest.approx(first.result["kpi"]["accuracy"])

    third = run_payload(max_seq_length=48, **common)  # another max_seq_length: another key, calibrated again
    doc = third.result
    assert doc["status"] == "passed", doc["reason"]
    assert doc["execution"]["calibration"]["cached"] is False
    assert doc["execution"]["calibration"]["key"] != calibration["key"]
    assert "calibrating on 256 train sentences" in third.log
    assert doc["accuracy_guard"]["cached"] is False and doc["accuracy_guard"]["flagged"] is False


@pytest.fixture(scope="session")
def synthetic_model(run_payload_session: PayloadRunner) -> Path:
    """The full-size synthetic DistilBERT, built once into a cache that outlives the session."""
    cache = CACHE / "test-host-cache"
    found = sorted(cache.glob("synthetic-*/model.safetensors"))
    if not found:
        run = run_payload_session(model_source="synthetic", cache_dir=cache, precision="avx_fp32", steps=1,
                                  warmup_steps=0, max_seq_length=16)
        assert run.result["status"] == "passed", run.result["reason"]
        found = sorted(cache.glob("synthetic-*/model.safetensors"))
    return found[-1].parent


@pytest.fixture(scope="session")
def run_payload_session(stack_python: Path, tmp_path_factory: pytest.TempPathFactory) -> PayloadRunner:
    return PayloadRunner(stack_python, tmp_path_factory.mktemp("session-runs"))


@pytest.mark.skipif(len(CORES) < 2, reason="needs two physical cores")
def test_weight_sharing_holds_one_copy_of_the_weights(run_payload: PayloadRunner, synthetic_model: Path) -> None:
    common: dict[str, Any] = {"model_dir": synthetic_model, "mode": "latency", "precision": "avx_fp32",
                              "cores_per_instance": 1, "steps": 3, "warmup_steps": 1, "max_seq_length": 32}
    one = run_payload(instance_number=1, **common).result
    two = run_payload(instance_number=2, **common).result
    for doc in (one, two):
        assert doc["status"] == "passed", doc["reason"]
        assert doc["params"]["weight_sharing"] is True  # the default in latency mode
    execution = two["execution"]
    assert (execution["processes"], execution["streams"], execution["weight_sharing"]) == (1, 2, True)
    assert [i["affinity"] for i in two["instances"]] == [i["cpus"] for i in two["instances"]]
    assert set(two["instances"][0]["cpus"]).isdisjoint(two["instances"][1]["cpus"])
    affinity = execution["launch"]["thread_affinity"][0]
    assert all(affinity.get(str(i["cpus"][0]), 0) >= 1 for i in two["instances"]), affinity
    weights_mib = (synthetic_model / "model.safetensors").stat().st_size / 2**20
    [rss_one], [rss_two] = one["memory"]["peak_rss_mib"], two["memory"]["peak_rss_mib"]
    assert rss_two - rss_one < 0.5 * weights_mib, f"2 streams {rss_two} MiB vs 1 stream {rss_one} MiB"
    assert two["memory"]["estimate_mib"] < 1.1 * one["memory"]["estimate_mib"]
    assert two["kpi"]["overlap"] > 0.5


def ipex_calls() -> list[tuple[str, int, list[str]]]:
    """(dotted name under ``ipex``, positional count, keyword names) of every ipex.* call in ipex_backend.py."""
    tree = ast.parse((PAYLOAD / "fleetbench_payload" / "ipex_backend.py").read_text(encoding="utf-8"))
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.insert(0, func.attr)
                func = func.value
            if isinstance(func, ast.Name) and func.id == "ipex" and parts:
                calls.append((".".join(parts), len(node.args), [k.arg for k in node.keywords if k.arg]))
    return calls


CHECK_API = r"""
import inspect, json, sys
import intel_extension_for_pytorch as ipex
import torch
sys.path.insert(0, sys.argv[2])
from fleetbench_payload import ipex_backend
problems = []
for name, positional, keywords in json.loads(sys.argv[1]):
    obj = ipex
    for part in name.split("."):
        if not hasattr(obj, part):
            problems.append(f"ipex.{name}: no {part!r} in the installed IPEX {ipex.__version__}")
            break
        obj = getattr(obj, part)
    else:
        try:
            signature = inspect.signature(obj)
        except ValueError:  # a C++ builtin: it exists; keyword arguments could not be checked
            if keywords:
                problems.append(f"ipex.{name} is a builtin without a signature; called with keywords {keywords}")
            continue
        try:
            signature.bind(*[None] * positional, **{k: None for k in keywords})
        except TypeError as exc:
            problems.append(f"ipex.{name}({positional} positional, {keywords}): {exc}")
model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
prepared = ipex.quantization.prepare(model, ipex_backend.static_qconfig(), example_inputs=(torch.rand(2, 4),))
for method, keywords in ipex_backend.PREPARED_MODEL_METHODS.items():
    try:
        inspect.signature(getattr(prepared, method)).bind(**{k: None for k in keywords})
    except (AttributeError, TypeError) as exc:
        problems.append(f"prepared.{method}({keywords}): {exc}")
print(json.dumps({"version": ipex.__version__, "problems": problems}))
"""


def test_ipex_backend_uses_the_installed_ipex_api(stack_python: Path) -> None:
    calls = ipex_calls()
    names = {name for name, _, _ in calls}
    assert {"optimize", "set_fp32_math_mode", "quantization.prepare", "quantization.convert", "verbose",
            "cpu.runtime.pin", "cpu.runtime.CPUPool"} <= names
    proc = subprocess.run([str(stack_python), "-c", CHECK_API, json.dumps(calls), str(PAYLOAD)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["version"].startswith("2.8")
    assert report["problems"] == []


def test_ipex_calls_live_only_in_ipex_backend() -> None:
    for path in sorted((PAYLOAD / "fleetbench_payload").glob("*.py")):
        if path.name != "ipex_backend.py":
            text = path.read_text(encoding="utf-8")
            assert "import intel_extension_for_pytorch" not in text, path.name


def test_selfcheck_prints_what_ran(stack_python: Path, tiny_model: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(stack_python), "-m", "fleetbench_payload", "selfcheck", "--dataset-dir", str(SST2),
                           "--model-dir", str(tiny_model), "--cache-dir", str(tmp_path / "cache"),
                           "--backends", "ipex", "--precisions", "avx_fp32,amx_int8", "--steps", "1",
                           "--max-seq-length", "16", "--out", str(tmp_path / "out"), "--json"],
                          cwd=PAYLOAD, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(PAYLOAD)})
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert out.startswith(f"selfcheck on {HOST['platform']['name']}")
    rows = {r["precision"]: r for r in json.loads(out[out.index("\n[") + 1:])}
    assert rows["avx_fp32"]["status"] == "passed"
    assert rows["avx_fp32"]["path"].startswith("ipex.optimize(dtype=float32")
    amx = rows["amx_int8"]
    if missing("amx_int8"):
        assert amx["status"] == "skipped" and "amx_tile" in amx["reason"]
    else:
        assert amx["status"] == "passed" and "AMX" in amx["isa verified"]
    header = next(line for line in out.splitlines() if line.startswith("precision"))
    assert header.split() == ["precision", "backend", "status", "seconds", "isa", "verified", "path", "reason"]
    assert (tmp_path / "out" / "ipex-avx_fp32" / "result.json").is_file()


def test_selfcheck_stopped_by_sigterm_leaves_no_temporary_folder_or_process(stack_python: Path, tiny_model: Path,
                                                                              tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([str(stack_python), "-m", "fleetbench_payload", "selfcheck", "--dataset-dir", str(SST2),
                             "--model-dir", str(tiny_model), "--cache-dir", str(tmp_path / "cache"),
                             "--backends", "ipex", "--precisions", "avx_fp32", "--steps", "1000000",
                             "--max-seq-length", "16"], cwd=PAYLOAD, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(PAYLOAD), "TMPDIR": str(tmp)})
    deadline = time.monotonic() + 300
    while not list(tmp.glob("fleetbench-selfcheck-*/*/case.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "selfcheck never started its case"
        time.sleep(0.5)
    time.sleep(2)  # the case's process is running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp.iterdir()) == [], "selfcheck left its temporary folder"
    left = subprocess.run(["pgrep", "-f", str(tmp)], capture_output=True, text=True)
    assert left.stdout == "", f"a case process survived: {left.stdout}"


def test_report_shows_isa_mismatch_apart_and_flags_the_accuracy_guard() -> None:
    """The controller side (no torch): rows marked by the payload are shown apart / flagged."""
    from fleetbench.render import render_markdown, render_text
    from fleetbench.results import Record
    from fleetbench.summary import Summary, make_row

    def record(host: str, **extra: Any) -> Record:
        kpi = {"throughput": 10.0, "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0}, "accuracy": 80.0,
               "accuracy_meaningful": True}
        result = {"status": "passed", "reason": "r", "platform": {"name": "Genoa", "model_name": "AMD EPYC"},
                  "params": {"precision": "amx_int8", "mode": "accuracy", "batch_size": 100}, "kpi": kpi, **extra}
        return Record(host=host, case="inference-accuracy", status="passed", reason="r", result=result)

    rows = (make_row(record("plain"), {}, {}),
            make_row(record("dev", isa_mismatch={"missing": ["amx_tile", "amx_int8"]}), {}, {}),
            make_row(record("flagged", accuracy_guard={"flagged": True, "drop_points": 2.5, "fp32_accuracy": 82.5}),
                     {}, {}))
    summary = Summary("r1", None, "complete", {"passed": 3}, rows)
    text = render_text(summary)
    tables = text.split("#Key KPI", 1)[0]
    genoa = tables[tables.index("== Genoa =="):tables.index("== isa_mismatch")]
    assert "plain" in genoa and "flagged" in genoa and "dev" not in genoa
    assert "amx_tile, amx_int8" in tables[tables.index("== isa_mismatch"):]
    assert "80.00 (!)" in genoa and "(!): accuracy guard" in text
    assert "##HOST: dev" not in text, "an isa_mismatch row gets no Key KPI block"
    doc = summary.to_json()
    assert "isa_mismatch" not in doc["rows"][0] and doc["rows"][1]["isa_mismatch"] == "amx_tile, amx_int8"
    assert doc["rows"][2]["accuracy_flag"] == "2.50 points below fp32 (82.50%)"
    md = render_markdown(summary)
    assert "## isa_mismatch: ran with require_isa=false" in md and "| dev | inference-accuracy |" in md
    assert md.index("| dev |") > md.index("## isa_mismatch")



def test_selfcheck_playbook_runs_on_each_host(stack_python: Path, tiny_model: Path) -> None:
    """What a user runs on new hardware: playbooks/selfcheck.yml provisions, stages and prints the table."""
    from tests.conftest import ansible_playbook

    proc = ansible_playbook("playbooks/selfcheck.yml", "-e", f"model_dir={tiny_model}", "-e", f"dataset_dir={SST2}",
                            "-e", "selfcheck_precisions=avx_fp32,amx_bfloat16", "-e", "selfcheck_backends=inductor")
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert f"selfcheck on {HOST['platform']['name']}" in out
    assert re.search(r"inductor\s+avx_fp32\s+passed", out), out[-3000:]
    bf16 = "skipped" if missing("amx_bfloat16") else "passed"
    assert re.search(rf"inductor\s+amx_bfloat16\s+{bf16}", out), out[-3000:]
