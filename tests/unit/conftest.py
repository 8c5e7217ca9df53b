"""Shared fixtures: run folders built in tmp_path, laid out as the playbooks write them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RUN_ID = "20250101T120000Z-a1b2c3"
SPR = {
    "name": "SPR", "vendor": "GenuineIntel", "family": 6, "model": 143, "stepping": 8,
    "model_name": "Intel(R) Xeon(R) Platinum 8480+",
    "isa": {"avx512f": True, "avx512_vnni": True, "amx_tile": True, "amx_bf16": True, "amx_int8": True},
}
ICX = {
    "name": "ICX", "vendor": "GenuineIntel", "family": 6, "model": 106, "stepping": 6,
    "model_name": "Intel(R) Xeon(R) Gold 6326 CPU @ 2.90GHz",
    "isa": {"avx512f": True, "avx512_vnni": True, "amx_tile": False, "amx_bf16": False, "amx_int8": False},
}
PARAMS = {
    "topology": "distilbert_base", "function": "inference", "data_type": "real", "mode": "throughput",
    "precision": "amx_bfloat16", "steps": 100, "warmup_steps": 10, "case_type": "", "batch_size": 1,
    "cores_per_instance": 56, "instance_number": 2, "weight_sharing": False, "max_seq_length": 128,
    "onednn_verbose": 0, "backend": "ipex",
}


def result_doc(host: str, case: str = "inference-throughput", run_id: str = RUN_ID, *,
               platform: dict[str, Any] | None = None, mode: str = "throughput", **top: Any) -> dict[str, Any]:
    """A realistic passed result.json; keyword arguments replace top-level fields."""
    doc: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id,
        "host": host,
        "case": case,
        "status": "passed",
        "reason": "",
        "started_at": "2025-01-01T12:01:00+00:00",
        "finished_at": "2025-01-01T12:03:30+00:00",
        "params": {**PARAMS, "mode": mode, "case_type": case.split("-")[2] if case.count("-") > 1 else ""},
        "kpi": {
            "throughput": 812.345, "latency_ms": {"mean": 2.5, "p50": 2.41, "p90": 2.9, "p99": 3.87},
            "accuracy": None, "accuracy_meaningful": True,
            "samples_timed": 200, "time_measured_s": 0.2462, "iterations_timed": 200,
        },
        "instances": [
            {"index": 0, "cpus": list(range(56)), "throughput": 406.1, "samples_timed": 100, "time_measured_s": 0.2462},
            {"index": 1, "cpus": list(range(56, 112)), "throughput": 406.245, "samples_timed": 100,
             "time_measured_s": 0.2461},
        ],
        "platform": copy.deepcopy(platform or SPR),
        "execution": {"backend": "ipex", "path": "jit-trace-freeze", "dtype": "bfloat16",
                      "isa_caps": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "threads": 56},
        "provenance": {
            "stack": {"torch": "2.8.0+cpu", "intel_extension_for_pytorch": "2.8.0", "transformers": "4.51.3"},
            "model": {"source": "hub", "id": "distilbert-base-uncased-finetuned-sst-2-english",
                      "revision": "bfdd146ea2b6807255b73527f1327ca12b6ed5c4",
                      "files": {"model.safetensors": "ab" * 32}},
            "dataset": {"split": "dev", "sha256": "cd" * 32, "sentences": 872},
            "environment": {"OMP_NUM_THREADS": "56", "KMP_BLOCKTIME": "1", "LD_PRELOAD": "libjemalloc.so"},
        },
    }
    doc.update(top)
    return doc


class RunFolder:
    """results/<run_id>/ with run.json; methods add what hosts send back."""

    def __init__(self, root: Path, cases: dict[str, list[str]], run_id: str = RUN_ID,
                 host_dirs: dict[str, str] | None = None) -> None:
        self.path = root / run_id
        self.run_id = run_id
        self.host_dirs = host_dirs or {h: h for h in cases}
        (self.path / "hosts").mkdir(parents=True)
        run = {"run_id": run_id, "started_at": "2025-01-01T12:00:00+00:00", "hosts": list(cases),
               "host_dirs": self.host_dirs, "cases": cases,
               "params": {h: {c: {**PARAMS, "mode": c.split("-")[1], "case": c} for c in cs}
                          for h, cs in cases.items()}}
        (self.path / "run.json").write_text(json.dumps(run))
        (root / "latest").symlink_to(run_id)

    def host_dir(self, host: str) -> Path:
        path = self.path / "hosts" / self.host_dirs[host]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_raw(self, host: str, case: str, data: bytes) -> Path:
        folder = self.host_dir(host) / case
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "payload.log").write_text("log\n")
        path = folder / "result.json"
        path.write_bytes(data)
        return path

    def doc(self, host: str, case: str = "inference-throughput", **kwargs: Any) -> dict[str, Any]:
        """A realistic passed result.json for this run (see result_doc)."""
        return result_doc(host, case, self.run_id, **kwargs)

    def write_result(self, host: str, case: str = "inference-throughput", doc: dict[str, Any] | None = None,
                     **kwargs: Any) -> Path:
        doc = doc if doc is not None else self.doc(host, case, **kwargs)
        return self.write_raw(host, case, json.dumps(doc, indent=1).encode())

    def write_status(self, host: str, status: str, reason: str, step: str | None = None) -> None:
        doc = {"status": status, "reason": reason, **({"step": step} if step else {})}
        (self.host_dir(host) / "status.json").write_text(json.dumps(doc))

    def write_host(self, host: str, platform: dict[str, Any]) -> None:
        doc = {"host": host, "detected": {"platform": platform, "host": {"kernel": "6.8.0"}}}
        (self.host_dir(host) / "host.json").write_text(json.dumps(doc))

    def read(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., RunFolder]:
    """make_run({"h1": ["inference-throughput"]}) -> RunFolder under tmp_path/results."""

    def make(cases: dict[str, list[str]], **kwargs: Any) -> RunFolder:
        return RunFolder(tmp_path / "results", cases, **kwargs)

    return make


@pytest.fixture
def platforms() -> dict[str, dict[str, Any]]:
    """Platform objects as the payload reports them, by name."""
    return {"SPR": copy.deepcopy(SPR), "ICX": copy.deepcopy(ICX)}
