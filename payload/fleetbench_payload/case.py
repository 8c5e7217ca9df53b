"""Run one case from CASE.json and write result.json.

Everything here runs before torch is imported: the ISA gate, core placement and the OpenMP/oneDNN
environment must be settled first, because those libraries read their settings when they load.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import threading
import traceback
from datetime import datetime, timezone
from importlib import metadata
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from fleetbench_payload import cpuinfo, placement
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.errors import CaseError, one_line, stage
from fleetbench_payload.fileio import write_json_atomic
from fleetbench_payload.log import Log
from fleetbench_payload.model_files import inspect
from fleetbench_payload.spec import InstanceSpec
from fleetbench_payload.stats import summarize

SCHEMA_VERSION = 1
REQUIRED_PARAMS = ("mode", "precision", "steps", "warmup_steps", "batch_size", "max_seq_length")
STACK = {"torch": "torch", "ipex": "intel_extension_for_pytorch", "transformers": "transformers",
         "tokenizers": "tokenizers", "numpy": "numpy", "safetensors": "safetensors"}


class CaseFileError(Exception):
    """CASE.json is unreadable or lacks what a result needs: no result.json can be written."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def load_case(path: Path) -> dict[str, Any]:
    try:
        case = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaseFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(case, dict) or not isinstance(case.get("params"), dict):
        raise CaseFileError(f"{path} is not a case object with params")
    missing = [k for k in ("run_id", "host", "case") if not case.get(k)]
    missing += [f"params.{k}" for k in REQUIRED_PARAMS if k not in case["params"]]
    if missing:
        raise CaseFileError(f"{path} lacks {', '.join(missing)}")
    return case


def run(case_path: Path, out_dir: Path, dry_run: bool = False) -> int:
    """Exit status: 0 whenever result.json was written, whatever the case's status."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log(out_dir / "payload.log")
    try:
        case = load_case(case_path)
    except CaseFileError as exc:
        log.info(f"no result: {exc}")
        return 2
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": case["run_id"], "host": case["host"], "case": case["case"],
        "status": "failed", "reason": "", "started_at": utc_now(), "params": case["params"], "warnings": [],
    }
    signal.signal(signal.SIGTERM, _terminated)
    log.info(f"case {case['case']} on {case['host']} (run {case['run_id']})")
    try:
        _execute(case, doc, log, dry_run or bool(case["params"].get("dry_run")))
    except CaseError as exc:
        doc["status"], doc["reason"] = exc.status, exc.reason
        if exc.__cause__ is not None:
            log.raw("".join(traceback.format_exception(exc.__cause__)))
    except Exception as exc:
        log.raw(traceback.format_exc())
        doc["status"], doc["reason"] = "failed", f"payload error: {one_line(exc)}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    doc["finished_at"] = utc_now()
    log.info(f"{doc['status']}: {doc['reason']}")
    try:
        write_json_atomic(out_dir / "result.json", doc)
    except OSError as exc:
        log.info(f"cannot write result.json: {exc}")
        return 3
    return 0


def _terminated(signum: int, _frame: object) -> None:
    raise CaseError(f"terminated by {signal.Signals(signum).name}")


def _stack_versions(lock_sha256: str | None) -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version(), "lock_sha256": lock_sha256}
    for name, dist in STACK.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _execute(case: dict[str, Any], doc: dict[str, Any], log: Log, dry_run: bool) -> None:
    params = case["params"]
    precision, mode = params["precision"], params["mode"]
    detected = cpuinfo.detect()
    doc["platform"] = detected["platform"]
    provenance: dict[str, Any] = {"stack": _stack_versions(case.get("lock_sha256"))}
    doc["provenance"] = provenance
    if dry_run:
        raise CaseError("dry run", status="skipped")
    missing = cpuinfo.missing_isa(precision, detected["platform"]["isa"])
    if missing:
        raise CaseError(f"precision {precision} needs {', '.join(missing)}, which this host "
                        f"({detected['platform']['name']}) lacks", status="skipped")
    if params.get("backend", "ipex") != "ipex":
        raise CaseError(f"backend {params['backend']} is not implemented")

    plan = placement.plan(params, detected["host"], os.sched_getaffinity(0))
    doc["warnings"] += plan.warnings
    if params.get("weight_sharing") and len(plan.instances) > 1:
        doc["warnings"].append("weight_sharing=true: each instance process holds its own copy of the weights "
                               "(shared-weight streams are not implemented yet)")
    placement.apply(placement.environment(precision, plan.cores_per_instance, params.get("onednn_verbose", 0)))
    provenance["environment"] = placement.recorded_environment()
    if len(plan.instances) == 1:
        os.sched_setaffinity(0, plan.instances[0])  # before torch starts any thread; threads inherit it

    dataset_dir = Path(case["dataset_dir"])
    dev = read_sst2(dataset_dir / "dev.tsv")
    provenance["dataset"] = {"split": "dev", "sha256": dev.sha256, "sentences": len(dev.sentences)}

    source = params.get("model_source", "hub")
    if source == "synthetic":
        from fleetbench_payload import synthetic  # imports torch: only now that the environment is set

        with stage("synthetic model build"):
            folder, key = synthetic.ensure(Path(case["cache_dir"]), dataset_dir / "train.tsv", log)
        model_id, revision = "synthetic/distilbert-base-uncased", key
    else:
        folder = Path(case["model_dir"])
        model_id = params.get("model_id", "") if source == "hub" else folder.name
        revision = params.get("model_revision", "") if source == "hub" else ""
    files = inspect(folder, bool(params.get("allow_pickle_weights")), case.get("expected_model_sha256"))
    doc["warnings"] += files.warnings
    provenance["model"] = {"source": source, "id": model_id, "revision": revision, "files": files.sha256}
    if source == "synthetic":
        log.info("accuracy not meaningful (random weights)")

    specs = [InstanceSpec(index=i, cpus=cpus, mode=mode, precision=precision, batch_size=params["batch_size"],
                          max_seq_length=params["max_seq_length"], steps=params["steps"],
                          warmup_steps=params["warmup_steps"], model_folder=str(folder),
                          use_safetensors=files.use_safetensors, dev_tsv=str(dev.path),
                          log_path=str(log.path), log_prefix=f"instance {i}: " if len(plan.instances) > 1 else "")
             for i, cpus in enumerate(plan.instances)]
    log.info(f"{len(specs)} instance(s) x {plan.cores_per_instance} cores: {plan.instances}")
    results = _launch(specs, log)

    kpi, instances = summarize(results)
    first = results[0]
    provenance["stack"].update(first["versions"])
    doc["execution"] = {**first["execution"], "cpus": sorted(c for i in instances for c in i["cpus"]),
                        "instance_number": len(instances), "cores_per_instance": plan.cores_per_instance}
    kpi["accuracy_meaningful"] = source != "synthetic"
    kpi["accuracy"] = 100 * first["correct"] / first["evaluated"] if mode == "accuracy" else None
    doc["kpi"], doc["instances"] = kpi, instances
    _log_kpis(log, kpi, instances, first if mode == "accuracy" else None)
    summary = f"{precision} {mode}: {kpi['throughput']:.2f} sentences/s, p50 {kpi['latency_ms']['p50']:.2f} ms"
    if kpi["accuracy"] is not None:
        summary += f", accuracy {kpi['accuracy']:.2f}%" + ("" if kpi["accuracy_meaningful"] else " (random weights)")
    doc["status"], doc["reason"] = "passed", summary


def _launch(specs: list[InstanceSpec], log: Log) -> list[dict[str, Any]]:
    """Run the instances: in this process when there is one, else one pinned process each."""
    if len(specs) == 1:
        from fleetbench_payload import instance  # imports torch: only now that the environment is set

        return [instance.run(specs[0], log)]
    ctx = get_context("spawn")  # fresh interpreters: no OpenMP state inherited through fork
    barrier = ctx.Barrier(len(specs))
    pipes = [ctx.Pipe(duplex=False) for _ in specs]
    procs = [ctx.Process(target=_worker, args=(spec, barrier, send), name=f"fleetbench-instance-{spec.index}")
             for spec, (_, send) in zip(specs, pipes, strict=True)]
    for proc in procs:
        proc.start()
    results: dict[int, dict[str, Any]] = {}
    try:
        while len(results) < len(specs) and not any("error" in r for r in results.values()):
            wait([recv for recv, _ in pipes] + [p.sentinel for p in procs])
            for i, ((recv, _), proc) in enumerate(zip(pipes, procs, strict=True)):
                if i not in results and recv.poll():
                    results[i] = recv.recv()
                elif i not in results and proc.exitcode is not None:
                    results[i] = {"index": i, "error": f"exited with code {proc.exitcode} before reporting"}
    finally:
        for proc in procs:  # after a failure the others have nothing left to measure
            if proc.is_alive() and len(results) < len(specs):
                proc.terminate()
            proc.join()
    errors = [r for r in results.values() if "error" in r]
    if errors:
        raise CaseError(f"instance {errors[0]['index']}: {errors[0]['error']}")
    return [results[i] for i in range(len(specs))]


def _worker(spec: InstanceSpec, barrier: threading.Barrier, conn: Connection) -> None:
    os.sched_setaffinity(0, spec.cpus)  # before torch starts any thread
    log = Log(Path(spec.log_path), spec.log_prefix)
    try:
        from fleetbench_payload import instance

        conn.send(instance.run(spec, log, barrier))
    except CaseError as exc:
        if exc.__cause__ is not None:
            log.raw("".join(traceback.format_exception(exc.__cause__)))
        conn.send({"index": spec.index, "error": exc.reason})
    except BaseException as exc:
        log.raw(traceback.format_exc())
        conn.send({"index": spec.index, "error": f"payload error: {one_line(exc)}"})


def _log_kpis(log: Log, kpi: dict[str, Any], instances: list[dict[str, Any]],
              accuracy_run: dict[str, Any] | None) -> None:
    """The WSF KPI lines, one block per instance (kpi.sh sums the Throughput lines), then fleetbench's total."""
    for inst in instances:
        lat = inst["latency_ms"]
        log.raw(f"Throughput: {inst['throughput']:.3f} sentences/s")
        log.raw(f"P50 Latency {lat['p50']:.3f} ms")
        log.raw(f"P90 Latency {lat['p90']:.3f} ms")
        log.raw(f"P99 Latency {lat['p99']:.3f} ms")
        log.raw(f"Mean Latency {lat['mean']:.3f} ms")
    log.info(f"total throughput {kpi['throughput']:.3f} sentences/s over {len(instances)} instance(s): "
             f"{kpi['samples_timed']} samples in {kpi['iterations_timed']} timed iterations; "
             f"timed phases overlap {100 * kpi['overlap']:.1f}% of {kpi['wall_s']:.3f} s")
    if accuracy_run is not None:
        log.raw(f"eval_accuracy = {accuracy_run['correct'] / accuracy_run['evaluated']:.4f}")
        meaning = "" if kpi["accuracy_meaningful"] else "; not meaningful (random weights)"
        log.info(f"accuracy {kpi['accuracy']:.2f}% ({accuracy_run['correct']}/{accuracy_run['evaluated']}){meaning}")
