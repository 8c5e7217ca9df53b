"""Run folders with known values, laid out as the playbook writes them (also used by scripts/bench_history.py).

Every result.json has the shape the payload writes (fleetbench_payload/case.py): the extra fields it adds
beyond the schema's (warnings, kpi.overlap, per-instance latency, ...) included.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PLATFORMS: dict[str, dict[str, Any]] = {
    "SPR": {"name": "SPR", "vendor": "GenuineIntel", "family": 6, "model": 143, "stepping": 8,
            "model_name": "Intel(R) Xeon(R) Platinum 8480+",
            "isa": {"avx2": True, "avx512f": True, "avx512_vnni": True, "amx_tile": True, "amx_bf16": True,
                    "amx_int8": True}},
    "EMR": {"name": "EMR", "vendor": "GenuineIntel", "family": 6, "model": 207, "stepping": 2,
            "model_name": "INTEL(R) XEON(R) PLATINUM 8592+",
            "isa": {"avx2": True, "avx512f": True, "avx512_vnni": True, "amx_tile": True, "amx_bf16": True,
                    "amx_int8": True}},
    "ICX": {"name": "ICX", "vendor": "GenuineIntel", "family": 6, "model": 106, "stepping": 6,
            "model_name": "Intel(R) Xeon(R) Gold 6326 CPU @ 2.90GHz",
            "isa": {"avx2": True, "avx512f": True, "avx512_vnni": True, "amx_tile": False, "amx_bf16": False,
                    "amx_int8": False}},
}
STACK = {"python": "3.11.7", "lock_sha256": "0123456789ab" * 5 + "abcd", "torch": "2.8.0+cpu", "ipex": "2.8.0",
         "transformers": "4.51.3", "tokenizers": "0.21.1", "numpy": "2.2.6", "safetensors": "0.5.3"}


@dataclass
class Rec:
    """One host x case with known values; `doc` overrides top-level fields of the written result.json."""

    host: str
    platform: str
    case: str = "inference-throughput"
    precision: str = "amx_bfloat16"
    batch_size: int = 1
    throughput: float = 1000.0
    p50: float = 2.0
    p99: float = 3.0
    accuracy: float | None = None
    meaningful: bool = True
    status: str = "passed"
    reason: str = ""
    stack: dict[str, Any] = field(default_factory=lambda: dict(STACK))
    doc: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # parameters over the defaults; None drops one

    @property
    def mode(self) -> str:
        return self.case.split("-")[1]


def params(rec: Rec) -> dict[str, Any]:
    parts = rec.case.split("-")
    base = {"topology": "distilbert_base", "function": "inference", "data_type": "real", "mode": rec.mode,
            "precision": rec.precision, "steps": 100, "warmup_steps": 10,
            "case_type": parts[2] if len(parts) > 2 else "", "batch_size": rec.batch_size,
            "cores_per_instance": "auto", "instance_number": "auto", "weight_sharing": rec.mode == "latency",
            "max_seq_length": 128, "onednn_verbose": 0, "backend": "ipex", "model_source": "hub",
            "case": rec.case}
    return {k: v for k, v in {**base, **rec.params}.items() if v is not None}


def result_doc(run_id: str, rec: Rec) -> dict[str, Any]:
    """The result.json the payload writes for `rec` (passed: with KPIs; otherwise status and reason only)."""
    doc: dict[str, Any] = {
        "schema_version": 1, "run_id": run_id, "host": rec.host, "case": rec.case, "status": rec.status,
        "reason": rec.reason, "started_at": "2025-01-01T12:01:00Z", "finished_at": "2025-01-01T12:03:30Z",
        "params": params(rec), "warnings": [], "platform": copy.deepcopy(PLATFORMS[rec.platform]),
        "provenance": {"stack": dict(rec.stack)},
    }
    if rec.status == "passed":
        half = rec.throughput / 2
        lat = {"mean": rec.p50 * 1.05, "p50": rec.p50, "p90": (rec.p50 + rec.p99) / 2, "p99": rec.p99}
        doc["kpi"] = {"throughput": rec.throughput, "latency_ms": lat, "samples_timed": 200,
                      "time_measured_s": 200 / rec.throughput, "iterations_timed": 200, "wall_s": 0.21,
                      "overlap": 0.98, "accuracy": rec.accuracy, "accuracy_meaningful": rec.meaningful}
        doc["instances"] = [{"index": i, "cpus": list(range(i * 4, i * 4 + 4)), "throughput": half,
                             "samples_timed": 100, "time_measured_s": 100 / half, "iterations_timed": 100,
                             "wall_s": 0.2, "latency_ms": lat} for i in range(2)]
        doc["execution"] = {"backend": "ipex", "path": "jit-trace-freeze", "dtype": "bfloat16",
                            "isa_caps": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "threads": 4,
                            "cpus": list(range(8)), "instance_number": 2, "cores_per_instance": 4}
        doc["provenance"].update({
            "environment": {"OMP_NUM_THREADS": "4", "KMP_BLOCKTIME": "1", "LD_PRELOAD": "libjemalloc.so.2"},
            "model": {"source": "hub" if rec.meaningful else "synthetic",
                      "id": "distilbert-base-uncased-finetuned-sst-2-english",
                      "revision": "bfdd146ea2b6807255b73527f1327ca12b6ed5c4",
                      "files": {"model.safetensors": "ab" * 32}},
            "dataset": {"split": "dev", "sha256": "cd" * 32, "sentences": 872},
        })
    doc.update(rec.doc)
    return doc


def write_run(root: Path, run_id: str, started_at: str, recs: list[Rec],
              groups: dict[str, list[str]] | None = None) -> Path:
    """results/<run_id>/ with run.json, hosts/<host>/host.json and each case's result.json."""
    run_dir = root / run_id
    hosts = list(dict.fromkeys(r.host for r in recs))
    cases = {h: [r.case for r in recs if r.host == h] for h in hosts}
    run = {"run_id": run_id, "started_at": started_at, "hosts": hosts, "host_dirs": {h: h for h in hosts},
           "cases": cases, "params": {h: {r.case: params(r) for r in recs if r.host == h} for h in hosts}}
    (run_dir / "hosts").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(run))
    for host in hosts:
        platform = next(r.platform for r in recs if r.host == host)
        host_doc = {"host": host, "groups": ["all", *(groups or {}).get(host, [])],
                    "detected": {"platform": PLATFORMS[platform]}, "platform_mismatch": ""}
        (run_dir / "hosts" / host).mkdir()
        (run_dir / "hosts" / host / "host.json").write_text(json.dumps(host_doc))
    for rec in recs:
        folder = run_dir / "hosts" / rec.host / rec.case
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(result_doc(run_id, rec), indent=1))
    return run_dir


def night(i: int) -> datetime:
    """Nightly: run i starts on day i after 2025-01-01, at 02:00 UTC."""
    return datetime(2025, 1, 1, 2, tzinfo=timezone.utc) + timedelta(days=i)


def run_id(i: int) -> str:
    return f"{night(i):%Y%m%dT%H%M%SZ}-{i:06x}"
