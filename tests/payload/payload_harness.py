"""Paths and helpers shared by the payload tests (imported by conftest.py and the test modules).

These tests run in the controller venv; the payload itself runs in the stack venv through a subprocess,
exactly as a host runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from fleetbench.params import validate

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = REPO / "payload"
SST2 = REPO.parent / "shared" / "data" / "sst2"
SCHEMA = json.loads((PAYLOAD / "fleetbench_payload" / "result.schema.json").read_text(encoding="utf-8"))
STACK_LOCK = REPO / "requirements" / "stack.txt"
CACHE = Path.home() / ".cache" / "fleetbench"
TRAIN_TINY = Path(__file__).with_name("train_tiny.py")

sys.path.insert(0, str(PAYLOAD))  # the stdlib-only payload modules are unit-tested in this venv too

from fleetbench_payload import cpuinfo  # noqa: E402  (stdlib only; found through the path above)

HOST = cpuinfo.detect()  # this machine: tests derive what must run or skip from its flags, never from a list
ISA = HOST["platform"]["isa"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temp folder next to ``dest`` and rename it into place; a concurrent builder may win."""
    if not (dest / "config.json").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            build(tmp)
            try:
                os.rename(tmp, dest)
            except OSError:
                if not (dest / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


@dataclass
class Run:
    result: dict[str, Any]
    log: str
    seconds: float  # wall time of the payload process


class PayloadRunner:
    """Writes CASE.json the way the benchmark role does and runs ``python -m fleetbench_payload run``."""

    def __init__(self, python: Path, tmp_path: Path) -> None:
        self.python = python
        self.tmp_path = tmp_path
        self.count = 0

    def __call__(self, *, model_dir: Path | None = None, expected: dict[str, str] | None = None,
                 cache_dir: Path | None = None, pythonpath: tuple[Path, ...] = (), extra_args: tuple[str, ...] = (),
                 name: str | None = None, cpus: set[int] | None = None, env: dict[str, str] | None = None,
                 **given: Any) -> Run:
        """``cpus``: run the payload with this CPU affinity (it places instances on the cores it may use)."""
        self.count += 1
        work = self.tmp_path / (name or f"run{self.count}")
        work.mkdir()
        given.setdefault("precision", "avx_fp32")
        if model_dir is not None and "model_source" not in given:
            given["model_dir"] = str(model_dir)
        params = validate(given)
        case = {"run_id": "test-run", "host": "localhost", "case": params["case"], "params": params,
                "model_dir": str(model_dir or work / "no-model"), "dataset_dir": str(SST2),
                "cache_dir": str(cache_dir or work / "cache"), "lock_sha256": sha256(STACK_LOCK),
                "expected_model_sha256": expected}
        (work / "case.json").write_text(json.dumps(case), encoding="utf-8")
        full_env = {**os.environ, **(env or {}),
                    "PYTHONPATH": os.pathsep.join(str(p) for p in (PAYLOAD, *pythonpath))}
        started = time.monotonic()
        proc = subprocess.run([str(self.python), "-m", "fleetbench_payload", "run", "--case", str(work / "case.json"),
                               "--out", str(work / "out"), *extra_args],
                              cwd=PAYLOAD, env=full_env, capture_output=True, text=True, timeout=900,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        seconds = time.monotonic() - started
        log = (work / "out" / "payload.log").read_text(encoding="utf-8")
        assert proc.returncode == 0, f"payload exited {proc.returncode}:\n{log}\n{proc.stderr[-3000:]}"
        result = json.loads((work / "out" / "result.json").read_text(encoding="utf-8"))
        errors = [f"{list(e.path)}: {e.message}" for e in Draft202012Validator(
            SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER).iter_errors(result)]
        assert not errors, f"result.json does not match the schema: {errors}"
        return Run(result, log, seconds)
