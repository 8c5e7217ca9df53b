"""Run one case from CASE.json and write result.json: the launcher.

The launcher settles everything before an instance imports torch: the ISA gate, core placement, the memory
estimate, the allocator/OpenMP preloads and the OpenMP/oneDNN environment (those libraries read their
settings when they load). Then it starts the instance processes (:mod:`fleetbench_payload.launch`), holds
them at a barrier so their timed phases start together, and turns what they report into result.json.
It imports torch only to build the synthetic model when asked for one.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import tempfile
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fleetbench_payload import cpuinfo, launch, memory, placement
from fleetbench_payload.calibration import accuracy_guard
from fleetbench_payload.dataset import read_sst2
from fleetbench_payload.errors import CaseError, one_line, stage
from fleetbench_payload.fileio import write_json_atomic
from fleetbench_payload.log import Log
from fleetbench_payload.model_files import inspect
from fleetbench_payload.spec import InstanceSpec
from fleetbench_payload.stats import summarize

SCHEMA_VERSION = 1
REQUIRED_PARAMS = ("mode", "precision", "steps", "warmup_steps", "batch_size", "max_seq_length")
BACKENDS = ("ipex", "inductor")
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


def _torch_before(major: int, minor: int) -> bool:
    try:
        found = metadata.version("torch").split("+")[0].split(".")[:2]
    except metadata.PackageNotFoundError:
        return False  # the backend's import fails the case with the real error
    return tuple(int(part) for part in found) < (major, minor)


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
    backend = params.get("backend", "ipex")
    detected = cpuinfo.detect()
    doc["platform"] = detected["platform"]
    # host_state: governor, THP, SMT, turbo, NUMA, kernel, microcode, load, read by the tune role before the case.
    provenance: dict[str, Any] = {"stack": _stack_versions(case.get("lock_sha256")),
                                  "host_state": case.get("host_state") or {}}
    doc["provenance"] = provenance
    if dry_run:
        raise CaseError("dry run", status="skipped")
    missing = cpuinfo.missing_isa(precision, detected["platform"]["isa"])
    if missing and params.get("require_isa", True):
        raise CaseError(f"precision {precision} needs {', '.join(missing)}, which this host "
                        f"({detected['platform']['name']}) lacks", status="skipped")
    if missing:
        doc["isa_mismatch"] = {"missing": missing}
        doc["warnings"].append(f"require_isa=false: {precision} ran on a host without {', '.join(missing)}; the "
                               "result is marked isa_mismatch and never enters comparisons or baselines")
        log.info(f"require_isa=false: running {precision} without {', '.join(missing)} (isa_mismatch)")
    if backend not in BACKENDS:
        raise CaseError(f"backend {backend} is not implemented (implemented: {', '.join(BACKENDS)})")
    if backend == "inductor" and precision == "amx_bfloat32" and _torch_before(2, 9):
        # PyTorch 2.8 has no oneDNN fp32-precision knob that reaches Inductor's linears (docs/payload.md): running
        # it would measure fp32 math, so it is refused before anything loads, like a missing ISA.
        raise CaseError(f"amx_bfloat32 on backend=inductor needs PyTorch >= 2.9 (torch.backends.mkldnn.matmul."
                        f"fp32_precision); this stack has torch {metadata.version('torch')}: use backend=ipex "
                        "(ipex.set_fp32_math_mode BF32)", status="skipped")

    plan = placement.plan(params, detected["host"], os.sched_getaffinity(0))
    doc["warnings"] += plan.warnings
    # Weight sharing: one process holds the model, one stream per core group; else one process per instance.
    sharing = bool(params.get("weight_sharing")) and len(plan.instances) > 1
    layout = [plan.instances] if sharing else [[cpus] for cpus in plan.instances]
    min_duration = int(params.get("min_duration_s", 0))
    if mode == "accuracy" and min_duration:
        doc["warnings"].append("min_duration_s does not apply in accuracy mode (one pass over the dev set)")
        min_duration = 0

    dataset_dir = Path(case["dataset_dir"])
    dev = read_sst2(dataset_dir / "dev.tsv")
    provenance["dataset"] = {"split": "dev", "sha256": dev.sha256, "sentences": len(dev.sentences)}
    cache_dir = Path(case["cache_dir"])
    source = params.get("model_source", "hub")
    if source == "synthetic":
        from fleetbench_payload import synthetic  # imports torch (the instances run in their own processes)

        with stage("synthetic model build"):
            folder, key = synthetic.ensure(cache_dir, dataset_dir / "train.tsv", log)
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

    need = memory.estimate(folder, backend=backend, batch_size=params["batch_size"],
                           max_seq_length=params["max_seq_length"], processes=len(layout),
                           streams_per_process=len(layout[0]))
    available = detected["host"].get("mem_available_kb")
    need["available_mib"] = round(available / 1024) if available else None
    doc["memory"] = need
    if available and need["estimate_mib"] * 1024 > available:
        raise CaseError(f"this case needs an estimated {need['estimate_mib']} MiB ({need['formula']}: "
                        f"{need['processes']} x {need['per_process_mib']} MiB), but the host has "
                        f"{need['available_mib']} MiB available; lower instance_number, batch_size or "
                        "max_seq_length, or use weight_sharing")

    all_cpus = sorted(c for streams in layout for cpus in streams for c in cpus)
    nodes = [placement.nodes_of([c for cpus in streams for c in cpus], detected["host"]) for streams in layout]
    runtime = placement.find_runtime(all_cpus, placement.nodes_of(all_cpus, detected["host"]))
    doc["warnings"] += [note for note in runtime.notes if "numactl does not work" in note]
    env = placement.environment(precision, plan.cores_per_instance, params.get("onednn_verbose", 0), runtime)
    # torch.compile's cache (FX graphs, compiled kernels) under the host cache, unless the host sets its own.
    env["TORCHINDUCTOR_CACHE_DIR"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(
        cache_dir / "inductor" / (case.get("lock_sha256") or "unlocked")[:16])
    instance_env = {k: v for k, v in os.environ.items() if env.get(k, "") is not None}
    instance_env.update({k: v for k, v in env.items() if v is not None})
    provenance["environment"] = placement.recorded_environment(instance_env)

    verify = params.get("verify_isa")
    if verify is None or verify == "auto":
        verify = precision.startswith("amx_") or precision == "avx_int8"
    train_tsv = dataset_dir / "train.tsv"
    with tempfile.TemporaryDirectory(prefix=".instances-", dir=case_out_dir(log)) as work:
        specs = []
        first_stream = 0
        for i, streams in enumerate(layout):
            prefix = f"instance {i}: " if len(layout) > 1 else ""
            specs.append(InstanceSpec(
                index=i, streams=streams, first_stream=first_stream, mode=mode, precision=precision,
                backend=backend, batch_size=params["batch_size"], max_seq_length=params["max_seq_length"],
                steps=params["steps"], warmup_steps=params["warmup_steps"], min_duration_s=min_duration,
                model_folder=str(folder), use_safetensors=files.use_safetensors, model_files=files.sha256,
                dev_tsv=str(dev.path), train_tsv=str(train_tsv), cache_dir=str(cache_dir),
                lock_sha256=case.get("lock_sha256"), verify_isa=bool(verify), host_lacks_isa=bool(missing),
                accuracy_reference=mode == "accuracy" and precision != "avx_fp32", log_path=str(log.path),
                log_prefix=prefix, result_path=str(Path(work) / f"instance-{i}.json"), barrier=len(layout) > 1))
            first_stream += len(streams)
        shape = f"1 process, {len(layout[0])} streams sharing the weights" if sharing else f"{len(layout)} instance(s)"
        log.info(f"{shape} x {plan.cores_per_instance} cores: {plan.instances}")
        try:
            # The instances' temporary files (torch makes some at import) go in the case's own working
            # folder, so a terminated or killed instance leaves none behind in the host's /tmp.
            results = launch.run(specs, runtime, nodes, {**instance_env, "TMPDIR": work}, log)
        except CaseError as exc:
            if exc.details.get("isa_verification"):
                doc["isa_verification"] = exc.details["isa_verification"]
            if exc.details.get("execution"):
                doc["execution"] = exc.details["execution"]  # what ran up to the failure
            raise
    _assemble(doc, params, results, plan, runtime, nodes, source, log)


def case_out_dir(log: Log) -> Path:
    return log.path.parent


def _assemble(doc: dict[str, Any], params: dict[str, Any], results: list[dict[str, Any]], plan: placement.Plan,
              runtime: placement.Runtime, nodes: list[list[int]], source: str, log: Log) -> None:
    precision, mode = params["precision"], params["mode"]
    streams = [s for r in results for s in r["streams"]]
    kpi, instances = summarize(streams)
    for inst, stream in zip(instances, sorted(streams, key=lambda s: s["index"]), strict=True):
        inst["affinity"] = stream["observed_cpus"]
    first = results[0]
    doc["provenance"]["stack"].update({k: v for k, v in first["versions"].items() if v is not None})
    execution = {**first["execution"], "cpus": sorted(c for i in instances for c in i["cpus"]),
                 "instance_number": len(instances), "cores_per_instance": plan.cores_per_instance,
                 "processes": len(results)}
    execution["launch"] = {**runtime.describe(), "preloaded": runtime.preload(),
                           "loaded_libraries": first["loaded_libraries"],
                           "membind": nodes if runtime.numactl else None,
                           "thread_affinity": [r["thread_affinity"] for r in results]}
    doc["execution"] = execution
    doc["memory"]["peak_rss_mib"] = [r["peak_rss_mib"] for r in results]
    if first.get("isa_verification"):
        doc["isa_verification"] = first["isa_verification"]
    minimum = int(params.get("min_duration_s", 0))
    kpi["min_duration_s"] = minimum if mode != "accuracy" else 0
    kpi["min_duration_met"] = all(i["wall_s"] >= minimum for i in instances) if mode != "accuracy" else None
    kpi["accuracy_meaningful"] = source != "synthetic"
    accuracy = None
    if mode == "accuracy":
        stream = streams[0]
        accuracy = 100 * stream["correct"] / stream["evaluated"]
    kpi["accuracy"] = accuracy
    doc["kpi"], doc["instances"] = kpi, instances
    _log_kpis(log, kpi, instances, streams[0] if mode == "accuracy" else None)
    summary = f"{precision} {mode}: {kpi['throughput']:.2f} sentences/s, p50 {kpi['latency_ms']['p50']:.2f} ms"
    if accuracy is not None:
        summary += f", accuracy {accuracy:.2f}%" + ("" if kpi["accuracy_meaningful"] else " (random weights)")
        reference = first.get("accuracy_reference")
        if reference:
            guard = accuracy_guard(accuracy, reference, kpi["accuracy_meaningful"])
            doc["accuracy_guard"] = guard
            if guard["flagged"]:
                message = (f"accuracy guard: {accuracy:.2f}% is {guard['drop_points']:.2f} points below fp32 "
                           f"({guard['fp32_accuracy']:.2f}%) on the same model, more than {guard['threshold_points']}")
                doc["warnings"].append(message)
                summary += f"; {message}"
                log.info(message)
    if not kpi["min_duration_met"] and mode != "accuracy":
        summary += f"; min_duration_s={minimum} not met"
    if doc.get("isa_mismatch"):
        summary += f" (isa_mismatch: host lacks {', '.join(doc['isa_mismatch']['missing'])})"
    doc["status"], doc["reason"] = "passed", summary


def _log_kpis(log: Log, kpi: dict[str, Any], instances: list[dict[str, Any]],
              accuracy_run: dict[str, Any] | None) -> None:
    """The WSF KPI lines, one block per instance (kpi.sh sums the Throughput lines), then fleetbench's total."""
    for inst in instances:
        lat = inst["latency_ms"]
        log.raw(f"Throughput: {inst['throughput']:.3f} sentences/s")
        log.raw(f"P50 Latency {lat['p50']:.3f} ms")
        log.raw(f"P90 Latency {lat['p90']:.3f} ms")
        log.raw(f"P99 Latency {lat['p99']:.3f} ms")
        log.raw(f"P99.9 Latency {lat['p999']:.3f} ms")
        log.raw(f"Mean Latency {lat['mean']:.3f} ms")
    log.info(f"total throughput {kpi['throughput']:.3f} sentences/s over {len(instances)} instance(s): "
             f"{kpi['samples_timed']} samples in {kpi['iterations_timed']} timed iterations; "
             f"timed phases overlap {100 * kpi['overlap']:.1f}% of {kpi['wall_s']:.3f} s")
    if accuracy_run is not None:
        log.raw(f"eval_accuracy = {accuracy_run['correct'] / accuracy_run['evaluated']:.4f}")
        meaning = "" if kpi["accuracy_meaningful"] else "; not meaningful (random weights)"
        log.info(f"accuracy {kpi['accuracy']:.2f}% ({accuracy_run['correct']}/{accuracy_run['evaluated']}){meaning}")
