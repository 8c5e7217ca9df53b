"""The payload's stdlib-only pieces, tested in the controller venv (no torch needed)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payload_harness import PAYLOAD, SST2, sha256

from fleetbench_payload import placement, stats
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.errors import CaseError, stage
from fleetbench_payload.fileio import write_json_atomic
from fleetbench_payload.model_files import inspect

STACK_MODULES = {"torch", "intel_extension_for_pytorch", "transformers", "tokenizers", "numpy", "safetensors", "psutil"}


def test_payload_imports_only_the_stdlib_and_the_stack() -> None:
    for path in sorted((PAYLOAD / "fleetbench_payload").glob("*.py")):
        allowed = set(sys.stdlib_module_names) | {"__future__"}
        if path.name != "cpuinfo.py":  # cpuinfo.py runs on hosts before the stack exists
            allowed |= STACK_MODULES | {"fleetbench_payload"}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_dev_split_is_read_exactly() -> None:
    dev = read_sst2(SST2 / "dev.tsv")
    assert len(dev.sentences) == len(dev.labels) == 872
    assert dev.sha256 == sha256(SST2 / "dev.tsv")
    assert dev.sentences[0] == "it 's a charming and often affecting journey . "  # trailing space kept
    assert set(dev.labels) == {0, 1}


def test_quotes_and_last_tab_split(tmp_path: Path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_bytes(b'sentence\tlabel\r\n"quoted , kept" \t1\r\nno newline at end\t0')
    split = read_sst2(path)
    assert split.sentences == ['"quoted , kept" ', "no newline at end"]
    assert split.labels == [1, 0]


@pytest.mark.parametrize(("text", "message"), [
    ("text\tlabel\nfoo\t1\n", "header"),
    ("sentence\tlabel\nfoo\t2\n", "line 2"),
    ("sentence\tlabel\nno tab\n", "line 2"),
    ("sentence\tlabel\n", "no sentences"),
])
def test_bad_dataset_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text(text)
    with pytest.raises(CaseError, match=message):
        read_sst2(path)


@given(st.lists(st.floats(min_value=1e-6, max_value=10), min_size=1, max_size=50))
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    lat = stats.latency_ms(values)
    assert min(values) * 1000 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= max(values) * 1000 * (1 + 1e-12)


def test_percentile_matches_linear_interpolation() -> None:
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([5], 99) == 5
    assert stats.percentile(list(range(101)), 99) == 99


def test_summary_of_two_overlapping_instances() -> None:
    results: list[dict[str, Any]] = [
        {"index": 1, "cpus": [1], "iteration_s": [0.5, 0.5], "samples_timed": 4, "window": [10.5, 11.5]},
        {"index": 0, "cpus": [0], "iteration_s": [0.25, 0.25, 0.5], "samples_timed": 6, "window": [10.0, 11.0]},
    ]
    kpi, instances = stats.summarize(results)
    assert [i["index"] for i in instances] == [0, 1]
    assert [i["throughput"] for i in instances] == [6.0, 4.0]
    assert kpi["throughput"] == 10.0
    assert (kpi["samples_timed"], kpi["iterations_timed"], kpi["time_measured_s"]) == (10, 5, 1.0)
    assert kpi["wall_s"] == 1.5 and kpi["overlap"] == pytest.approx(0.5 / 1.5)


HOST = {"numa_nodes": [{"id": 0, "cpus": [0, 1, 4, 5], "cores": [0, 1]},
                       {"id": 1, "cpus": [2, 3, 6, 7], "cores": [2, 3]}]}


def params(**kw: Any) -> dict[str, Any]:
    return {"mode": "throughput", "cores_per_instance": "auto", "instance_number": "auto", **kw}


def test_auto_placement_is_one_instance_per_numa_node() -> None:
    plan = placement.plan(params(), HOST, set(range(8)))
    assert (plan.cores_per_instance, plan.instances, plan.warnings) == (2, [[0, 1], [2, 3]], [])


def test_placement_respects_affinity_and_counts() -> None:
    assert placement.plan(params(cores_per_instance=1, instance_number=3), HOST, set(range(8))).instances == \
        [[0], [1], [2]]
    assert placement.plan(params(), HOST, {2, 3}).instances == [[2, 3]]


def test_accuracy_mode_runs_one_instance() -> None:
    plan = placement.plan(params(mode="accuracy", instance_number=2), HOST, set(range(8)))
    assert plan.instances == [[0, 1]]
    assert "instance_number=2 was not used" in plan.warnings[0]


def test_oversubscription_is_refused() -> None:
    with pytest.raises(CaseError, match=r"cores_per_instance=3 x instance_number=2 needs 6 physical cores, but "
                                         r"this host has 4 usable \(per NUMA node: 2, 2\)"):
        placement.plan(params(cores_per_instance=3, instance_number=2), HOST, set(range(8)))


def test_isa_cap_only_for_avx_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    avx = placement.environment("avx_fp32", 4, 0)
    assert avx["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_VNNI" and avx["OMP_NUM_THREADS"] == "4"
    assert "KMP_BLOCKTIME" not in avx and avx["ONEDNN_VERBOSE"] is None
    amx = placement.environment("amx_bfloat16", 4, 1)
    assert amx["ONEDNN_MAX_CPU_ISA"] is None and amx["ONEDNN_VERBOSE"] == "1"
    monkeypatch.setenv("LD_PRELOAD", "/opt/lib/libjemalloc.so:/opt/lib/libiomp5.so")
    assert placement.environment("avx_fp32", 4, 0)["KMP_BLOCKTIME"] == "1"


def test_recorded_environment_keeps_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("KMP_API_KEY", "secret")
    env = placement.recorded_environment()
    assert env["OMP_NUM_THREADS"] == "7"
    assert "hf_secret" not in json.dumps(env) and "KMP_API_KEY" not in env


def make_model(folder: Path, *names: str) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for name in names:
        (folder / name).write_bytes(name.encode())
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("ignored")
    return folder


def test_model_files_prefer_safetensors_and_hash_everything(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m", "model.safetensors", "pytorch_model.bin", "vocab.txt")
    files = inspect(folder, allow_pickle=False, expected=None)
    assert files.use_safetensors and not files.warnings
    assert set(files.sha256) == {"config.json", "model.safetensors", "pytorch_model.bin", "vocab.txt"}
    assert files.sha256["vocab.txt"] == sha256(folder / "vocab.txt")


def test_pickle_weights_need_the_opt_in(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m", "pytorch_model.bin")
    with pytest.raises(CaseError, match="-e allow_pickle_weights=true"):
        inspect(folder, allow_pickle=False, expected=None)
    files = inspect(folder, allow_pickle=True, expected=None)
    assert not files.use_safetensors and "pickle" in files.warnings[0]


def test_expected_hashes(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "m", "model.safetensors")
    good = sha256(folder / "model.safetensors")
    assert inspect(folder, False, {"model.safetensors": good}).sha256["model.safetensors"] == good
    with pytest.raises(CaseError, match=f"model.safetensors has sha256 {good}, expected {'1' * 64}"):
        inspect(folder, False, {"model.safetensors": "1" * 64})
    with pytest.raises(CaseError, match=r"no config\.json"):
        inspect(tmp_path, False, None)
    with pytest.raises(CaseError, match="no weights"):
        inspect(make_model(tmp_path / "empty"), False, None)


def test_stage_keeps_the_real_exception_text() -> None:
    with pytest.raises(CaseError) as info, stage("model load"):
        raise OSError("Unable to load weights\n  from file x")
    assert info.value.reason == "model load failed: OSError: Unable to load weights | from file x"
    assert info.value.status == "failed"


def test_atomic_json_write(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        write_json_atomic(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
