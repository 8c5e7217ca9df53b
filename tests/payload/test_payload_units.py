"""The payload's stdlib-only pieces, tested in the controller venv (no torch needed)."""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from payload_harness import PAYLOAD, SST2, sha256

from fleetbench_payload import calibration, isa_check, memory, placement, stats
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
    assert "KMP_BLOCKTIME" not in avx and avx["ONEDNN_VERBOSE"] is None and "LD_PRELOAD" not in avx
    amx = placement.environment("amx_bfloat16", 4, 1)
    assert amx["ONEDNN_MAX_CPU_ISA"] is None and amx["ONEDNN_VERBOSE"] == "1"
    monkeypatch.setenv("LD_PRELOAD", "/opt/lib/libjemalloc.so:/opt/lib/libiomp5.so")
    assert placement.environment("avx_fp32", 4, 0)["KMP_BLOCKTIME"] == "1"


def test_preloads_come_first_and_keep_what_was_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    runtime = placement.Runtime("jemalloc", "/x/libjemalloc.so.2", "/v/lib/libiomp5.so", None)
    env = placement.environment("avx_fp32", 2, 0, runtime)
    assert env["LD_PRELOAD"] == "/x/libjemalloc.so.2:/v/lib/libiomp5.so:/opt/other.so"
    assert env["MALLOC_CONF"] == placement.JEMALLOC_CONF
    assert env["KMP_AFFINITY"] == "granularity=fine,compact,1,0" and env["KMP_BLOCKTIME"] == "1"
    plain = placement.environment("avx_fp32", 2, 0, placement.Runtime())
    assert "LD_PRELOAD" not in plain and "MALLOC_CONF" not in plain


def test_intel_openmp_is_found_in_the_stack_first(tmp_path: Path) -> None:
    wheel = tmp_path / "lib" / "python3.11" / "site-packages" / "intel_openmp" / "lib"
    wheel.mkdir(parents=True)
    (wheel / "libiomp5.so").write_bytes(b"")
    assert placement.find_intel_openmp(str(tmp_path)) == str(wheel / "libiomp5.so")
    (tmp_path / "lib" / "libiomp5.so").write_bytes(b"")
    assert placement.find_intel_openmp(str(tmp_path)) == str(tmp_path / "lib" / "libiomp5.so")


def test_numactl_binding_and_nodes() -> None:
    assert placement.numactl_args([2, 3], [1]) == ["--physcpubind=2,3", "--membind=1"]
    assert placement.nodes_of([0, 2], HOST) == [0, 1]
    assert placement.nodes_of([5], {"numa_nodes": []}) == [0]


AMX_IP = ("onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx512_core_amx,forward_inference,"
          "src:bf16::blocked:ab::f0 wei:bf16,attr-scratchpad:user,,mb8ic768oc768,0.2")
VERBOSE = "\n".join([
    "onednn_verbose,v1,info,oneDNN v3.7.1 (commit 8d263e6)",
    AMX_IP,
    AMX_IP,
    "onednn_verbose,v1,primitive,exec,cpu,layer_normalization,jit:uni,forward_inference,src:f32,,,8x768,0.01",
    "onednn_verbose,v1,graph,exec,cpu,100001,dnnl_backend,matmul,,,,0.1",
    "onednn_verbose,exec,cpu,matmul,brg_matmul:avx512_core_vnni,undef,src:u8::blocked:ab::f0 "
    "wei:s8::blocked:ba::f0,attr-scales:src0:0:f32,,8x768:768x768,0.1",
    "onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx512_core,forward_training,src:f32::blocked:ab::f0,"
    "attr-scratchpad:user attr-fpmath:bf16,,mb8ic768oc768,0.3",
    "MKL_VERBOSE oneMKL 2024.0 Product build 20240605 for Intel(R) 64 architecture Intel(R) Advanced Vector "
    "Extensions 512 (Intel(R) AVX-512) with support of Intel(R) Deep Learning Boost (Intel(R) DL Boost), "
    "EVEX-encoded AES and Intel(R) Advanced Matrix Extensions (Intel(R) AMX) with INT8 and bfloat16 support, "
    "Lnx 2.00GHz lp64 gnu_thread",
    "MKL_VERBOSE SGEMM(T,N,768,1024,768,0x1,0x2,768,0x3,768,0x4,0x5,768) 1.2ms CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:2",
]) + "\n"


def test_verbose_output_is_read_per_kernel() -> None:
    summary = isa_check.parse(VERBOSE)
    assert summary["onednn_kernels"] == 5 and summary["graph_partitions"] == 1
    assert summary["compute_isa"] == {"avx512_core_amx": 2, "avx512_core_vnni": 1, "avx512_core": 1}
    assert summary["isa_counts"]["none"] == 1  # jit:uni layer norm
    assert summary["amx"] is True and summary["fpmath_bf16"] == 1 and summary["int8_kernels"] == 1
    assert (summary["mkl_calls"], summary["mkl_isa"]) == (1, "amx")
    assert isa_check.kernel_isa("x64:gemm:jit") == "none"
    assert isa_check.kernel_isa("brgemm:avx512_core_amx_fp16") == "avx512_core_amx_fp16"
    # oneDNN 3.7's names (torch/IPEX 2.8 on SPR): the whole token, never a shorter prefix of it.
    assert isa_check.kernel_isa("brgemm:avx10_1_512_amx") == "avx10_1_512_amx"
    assert isa_check.kernel_isa("brg_matmul:avx10_1_512") == "avx10_1_512"
    assert isa_check.kernel_isa("jit:avx2") == "avx2" and isa_check.kernel_isa("jit:uni") == "none"


def test_amx_comes_from_kernels_that_ran_never_from_mkls_header() -> None:
    """oneDNN 3.7 on an SPR (captured from IPEX bf16): AMX. An fp32 run capped below AMX whose MKL header names
    the AMX code path: not AMX."""
    bf16 = isa_check.parse("onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx10_1_512_amx,"
                           "forward_training,src:bf16::blocked:ab::f0 wei:bf16::blocked:AB16b64a2b::f0,"
                           "attr-scratchpad:user,,mb128ic768oc3072,0.2\n")
    assert bf16["compute_isa"] == {"avx10_1_512_amx": 1} and bf16["amx"] is True
    assert isa_check.judge("amx_bfloat16", bf16, host_lacks_isa=False) == (True, "oneDNN compute kernels: "
                                                                            "avx10_1_512_amx x1")
    fp32 = isa_check.parse("\n".join(line for line in VERBOSE.splitlines()
                                     if "MKL" in line or "brgemm:avx512_core," in line))
    assert fp32["mkl_isa"] == "amx" and fp32["amx"] is False
    ok, verdict = isa_check.judge("amx_bfloat16", fp32, host_lacks_isa=False)
    assert not ok and verdict.startswith("amx_bfloat16 needs AMX, but no AMX kernel ran")
    assert isa_check.judge("avx_fp32", fp32, host_lacks_isa=False)[0]
    ok, verdict = isa_check.judge("avx_int8", bf16, host_lacks_isa=False)  # the cap below AMX did not hold
    assert not ok and verdict.startswith("avx_int8 caps oneDNN below AMX, but an AMX kernel ran")


def test_isa_verdicts() -> None:
    avx512 = isa_check.parse("onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx512_core_bf16,x,"
                             "src:bf16,attr-scratchpad:user,,mb1,0.1\n")
    ok, verdict = isa_check.judge("amx_bfloat16", avx512, host_lacks_isa=False)
    assert not ok and verdict.startswith("amx_bfloat16 needs AMX, but no AMX kernel ran")
    assert "avx512_core_bf16 x1" in verdict
    ok, verdict = isa_check.judge("amx_bfloat16", avx512, host_lacks_isa=True)
    assert ok and "as expected on a host without AMX" in verdict
    ok, verdict = isa_check.judge("amx_bfloat32", avx512, host_lacks_isa=True)
    assert not ok and "no kernel ran with bf16 math" in verdict
    ok, verdict = isa_check.judge("avx_int8", avx512, host_lacks_isa=False)
    assert not ok and "no int8 oneDNN kernel ran" in verdict
    full = isa_check.parse(VERBOSE)
    assert isa_check.judge("amx_int8", full, host_lacks_isa=False)[0]
    assert isa_check.judge("amx_bfloat32", full, host_lacks_isa=False)[0]


def test_captured_stdout_catches_what_c_code_prints() -> None:
    import ctypes

    libc = ctypes.CDLL(None)
    with isa_check.captured_stdout() as text:
        libc.printf(b"onednn_verbose,from C\n")  # C stdio, buffered: flushed by the context manager
        os.write(1, b"straight to fd 1\n")
    assert "onednn_verbose,from C" in text[0] and "straight to fd 1" in text[0]


def test_calibration_uses_train_sentences_and_a_key_that_never_goes_stale(tmp_path: Path) -> None:
    train = read_sst2(SST2 / "train.tsv")
    dev = set(read_sst2(SST2 / "dev.tsv").sentences)

    def plan(**kw: Any) -> calibration.Calibration:
        args: dict[str, Any] = {"backend": "inductor", "precision": "avx_int8", "max_seq_length": 128,
                                "model_files": {"model.safetensors": "a" * 64}, "lock_sha256": "b" * 64,
                                "train_sentences": train.sentences, "train_sha256": train.sha256, **kw}
        return calibration.Calibration.plan(tmp_path, **args)

    base = plan()
    assert len(base.sentences) == calibration.SENTENCES and base.sentences == plan().sentences
    assert not set(base.sentences) & dev and base.spec["split"] == "train"
    changed = [plan(max_seq_length=64), plan(precision="amx_int8"), plan(backend="ipex"), plan(lock_sha256="c" * 64),
               plan(model_files={"model.safetensors": "d" * 64}), plan(train_sha256="e" * 64)]
    assert len({base.key, *(c.key for c in changed)}) == 7
    batches = list(base.batches(100))
    assert [len(b) for b in batches] == [100, 100, 100] and batches[2][56:] == base.sentences[:44]
    assert not base.complete()
    base.folder.mkdir(parents=True)
    base.mark_complete({"file": "x"})
    assert base.complete()


def test_accuracy_guard_flags_more_than_one_point() -> None:
    guard = calibration.accuracy_guard(89.9, {"accuracy": 91.06}, meaningful=True)
    assert guard["flagged"] and guard["drop_points"] == pytest.approx(1.16)
    assert not calibration.accuracy_guard(90.1, {"accuracy": 91.06}, meaningful=True)["flagged"]
    assert not calibration.accuracy_guard(40.0, {"accuracy": 91.06}, meaningful=False)["flagged"]


def test_memory_estimate_grows_with_processes_not_streams(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"dim": 768, "hidden_dim": 3072, "n_heads": 12}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * (64 * 1024 * 1024))
    one = memory.estimate(tmp_path, backend="ipex", batch_size=1, max_seq_length=128, processes=1,
                          streams_per_process=1)
    assert one["weights_mib"] == 64 and one["estimate_mib"] == one["per_process_mib"]
    assert one["per_process_mib"] == memory.RUNTIME_MIB + memory.WEIGHT_COPIES * 64 + round(
        one["activations_mib_per_stream"])
    two_processes = memory.estimate(tmp_path, backend="ipex", batch_size=1, max_seq_length=128, processes=2,
                                    streams_per_process=1)
    two_streams = memory.estimate(tmp_path, backend="ipex", batch_size=1, max_seq_length=128, processes=1,
                                  streams_per_process=2)
    assert two_processes["estimate_mib"] == pytest.approx(2 * one["estimate_mib"], abs=1)
    assert two_streams["estimate_mib"] - one["estimate_mib"] < 20  # one more stream: activations only


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
