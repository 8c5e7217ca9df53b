"""``python -m fleetbench_payload selfcheck``: every precision x backend for a few iterations, and what ran.

For a user on a real Xeon to see, before a fleet run, that each path works there and which kernels it
really used. Each case runs as ``python -m fleetbench_payload run`` in its own process (the oneDNN ISA cap
differs per precision and is read when torch loads), with the ISA check on, on the full-size synthetic
model (random weights, real architecture and speed; built once into the cache) or a given model folder.
Prints one row per case: status, execution path, the ISA the kernels used, and the reason.
Exit status: 0 when nothing failed (skips for a missing ISA are fine), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COLUMNS = ("precision", "backend", "status", "seconds", "isa verified", "path", "reason")


def case_doc(precision: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """A CASE.json as the benchmark role writes it (params already validated: the controller's defaults)."""
    params = {
        "topology": "distilbert_base", "function": "inference", "data_type": "real", "mode": "throughput",
        "precision": precision, "steps": args.steps, "warmup_steps": 1, "case_type": "",
        "batch_size": args.batch_size, "cores_per_instance": "auto", "instance_number": 1,
        "weight_sharing": False, "max_seq_length": args.max_seq_length, "onednn_verbose": 0, "backend": backend,
        "verify_isa": True, "require_isa": args.require_isa == "true", "min_duration_s": 0,
        "model_source": "dir" if args.model_dir else "synthetic", "allow_pickle_weights": False,
    }
    return {"run_id": "selfcheck", "host": os.uname().nodename, "case": "inference-throughput", "params": params,
            "model_dir": str(args.model_dir or ""), "dataset_dir": str(args.dataset_dir),
            "cache_dir": str(args.cache_dir), "lock_sha256": None}


def isa_cell(result: dict[str, Any]) -> str:
    check = result.get("isa_verification")
    if not check:
        return "-"
    kernels = "+".join(check.get("compute_isa", {})) or "no oneDNN compute kernel"
    marks = [m for m, on in (("AMX", check.get("amx")), ("bf16 math", check.get("fpmath_bf16")),
                             ("int8", check.get("int8_kernels"))) if on]
    return kernels + (f" ({', '.join(marks)})" if marks else "") + ("" if check.get("passed") else " FAILED")


def run_one(precision: str, backend: str, args: argparse.Namespace, out: Path) -> dict[str, str]:
    folder = out / f"{backend}-{precision}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case.json").write_text(json.dumps(case_doc(precision, backend, args)), encoding="utf-8")
    started = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "fleetbench_payload", "run", "--case", str(folder / "case.json"),
                           "--out", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}) as proc:
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            proc.terminate()  # the case stops its own instances on SIGTERM
            proc.wait(timeout=60)
            raise
    seconds = f"{time.monotonic() - started:.0f}"
    try:
        result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        return {"precision": precision, "backend": backend, "status": "error", "seconds": seconds,
                "isa verified": "-", "path": "-", "reason": f"no result.json (exit {proc.returncode}): {tail[0]}"}
    status = result["status"] + (" (isa_mismatch)" if result.get("isa_mismatch") else "")
    return {"precision": precision, "backend": backend, "status": status, "seconds": seconds,
            "isa verified": isa_cell(result), "path": result.get("execution", {}).get("path", "-"),
            "reason": result["reason"]}


def table(rows: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS[:-1]}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS[:-1]) + "  reason"]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS[:-1]) + "  " + r["reason"] for r in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from fleetbench_payload import cpuinfo

    host = cpuinfo.detect()
    platform = host["platform"]
    have = ", ".join(flag for flag, on in platform["isa"].items() if on) or "none"
    print(f"selfcheck on {platform['name']} ({platform['model_name']}): ISA {have}", flush=True)
    rows = []
    # SIGTERM (a playbook timeout, kill) unwinds like Ctrl-C: the running case is stopped and the temporary
    # folder removed.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="fleetbench-selfcheck-") as tmp:
        out = args.out or Path(tmp)
        for backend in args.backends.split(","):
            for precision in args.precisions.split(","):
                row = run_one(precision.strip(), backend.strip(), args, out)
                print(f"  {row['backend']:<8} {row['precision']:<13} {row['status']}", flush=True)
                rows.append(row)
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 1 if any(r["status"].startswith(("failed", "error")) for r in rows) else 0
