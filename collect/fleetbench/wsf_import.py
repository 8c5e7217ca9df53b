"""Import the reference's logs: ``fleetbench import-wsf DIR``.

The Workload Services Framework's DistilBERT workload leaves ``benchmark_*.log`` files, one per pod, that
its ``kpi.sh`` reads as ``*/benchmark_*.log`` from a run's log folder. Here a *run* is every folder under
DIR (DIR included) whose ``benchmark_*.log`` files lie in it or one level down; all its logs are one case
on one host (``--host``, default ``wsf-<platform>``). From them, with kpi.sh's semantics:

- ``Throughput: N sentences/s``: one line per instance, **summed**; a count of lines other than
  ``INSTANCE_NUMBER`` (without weight sharing) fails the case instead: logs of several runs, or missing ones;
- ``P50 Latency N ms`` / ``P90 ...`` / ``P99 ...``: averaged over the instance lines;
- the reference's own latency KPI, 1000 x instances / summed throughput (ms), as ``kpi.latency_ms.mean``;
- ``eval_accuracy = N``: a fraction, reported as N x 100 percent;
- ``KEY: value`` parameter dump lines (``PRECISION: amx_bfloat16``, ``MODE: throughput``, ...) give the
  parameters, checked like fleetbench's own; ``PLATFORM`` the platform, ``Torch_Version`` the stack.

A line that looks like one of these but cannot be read, or contradicts another, is reported with its file
and line number and its value is not used; a case left without the KPI its mode needs is stored as failed.
Logs are untrusted text: one over MAX_LOG_BYTES is reported and not read, lines are read one at a time (a
line over MAX_LINE characters is never parsed), bytes that are not UTF-8 are replaced, and only the first
MAX_PROBLEMS problems of a run are listed (the rest are counted).
Each run becomes a run folder ``results/wsf-<hash>/`` (the hash of its logs' names and contents, so a
re-import is the same run and never a duplicate) and is ingested like any other run.

Exit status: 0 all imported cleanly; 1 imported, but some lines were reported; 2 no log found or the
database cannot be used.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetbench import atomic, db
from fleetbench.db import DatabaseError
from fleetbench.helptext import plain
from fleetbench.history import ingest_one
from fleetbench.params import BY_NAME, ParamError, case_name, coerce
from fleetbench.results import RunError, one_line
from fleetbench.runs import default_results_dir, host_dirs

LOG_GLOB = "benchmark_*.log"
MAX_LOG_BYTES = 64 * 1024 * 1024  # a log with oneDNN verbose output is a few MB
MAX_LINE = 1000  # characters: parameter and KPI lines are far shorter
MAX_PROBLEMS = 50
CHUNK = 1024 * 1024
NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"
KPI_LINES = {  # what starts the line -> its pattern
    "Throughput": re.compile(rf"^Throughput:\s*{NUMBER}\s*sentences/s\s*$"),
    "P50": re.compile(rf"^P50 Latency\s+{NUMBER}\s*ms\s*$"),
    "P90": re.compile(rf"^P90 Latency\s+{NUMBER}\s*ms\s*$"),
    "P99": re.compile(rf"^P99 Latency\s+{NUMBER}\s*ms\s*$"),
}
ACCURACY = re.compile(rf"eval_accuracy\s*=\s*{NUMBER}\s*$")
TORCH = re.compile(r"^Torch_Version:\s*(\S+)\s*$")
PARAM = re.compile(r"^([A-Z][A-Z0-9_]*):(.*)$")
# The reference's parameter dump (run_test.sh's ALL_KEYS) that fleetbench has parameters for.
WSF_PARAMS = ("MODE", "TOPOLOGY", "FUNCTION", "PRECISION", "BATCH_SIZE", "STEPS", "DATA_TYPE", "CORES_PER_INSTANCE",
              "INSTANCE_NUMBER", "WEIGHT_SHARING", "CASE_TYPE", "MAX_SEQ_LENGTH", "ONEDNN_VERBOSE", "WARMUP_STEPS")
REQUIRED = ("mode", "precision", "steps", "warmup_steps", "batch_size", "max_seq_length")
_HEADLINE = {"throughput": "Throughput", "latency": "P50", "accuracy": "eval_accuracy"}


@dataclass
class Parsed:
    """What the logs of one run say: parameters (fleetbench names), platform, torch, accuracy, KPI lines."""

    values: dict[str, Any] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)
    kpi_lines: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KPI_LINES})
    problems: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems found beyond MAX_PROBLEMS

    @property
    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k in BY_NAME}

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.unlisted += 1

    def unreadable(self, where: str, line: str, hint: str = "") -> None:
        """A line that looks like one this reads but cannot be read (quoted only while problems are listed:
        a hostile log may have millions)."""
        listed = len(self.problems) < MAX_PROBLEMS
        self.problem(f"{where}: cannot read {one_line(line, 120)!r}{hint}" if listed else "")

    def report(self) -> list[str]:
        """The problems to print, the count of those not listed last."""
        more = [f"... and {self.unlisted} more (only the first {MAX_PROBLEMS} are listed)"] if self.unlisted else []
        return self.problems + more

    def set_once(self, slot: str, value: Any, where: str) -> None:
        """Keep a value; one that contradicts an earlier one is reported, and neither is used."""
        if slot in self.conflicts:
            return
        current = self.values.get(slot)
        if current is not None and current != value:
            self.problem(f"{where}: {slot} {value!r} contradicts {current!r} found before; neither is used")
            self.conflicts.add(slot)
            del self.values[slot]
        else:
            self.values[slot] = value


def _wsf_value(key: str, value: str) -> Any:
    """A parameter as fleetbench types it; ONEDNN_VERBOSE is True/False in the reference (DNNL_VERBOSE 1/0)."""
    if key == "ONEDNN_VERBOSE" and value in ("True", "False"):
        return int(value == "True")
    return coerce(BY_NAME[key.lower()], value)


def _parse_line(parsed: Parsed, line: str, where: str) -> None:
    for start, pattern in KPI_LINES.items():
        if line.startswith(start):
            match = pattern.match(line)
            value = float(match.group(1)) if match else math.nan
            if not math.isfinite(value):
                parsed.unreadable(where, line)
            else:
                parsed.kpi_lines[start].append(value)
            return
    if "eval_accuracy" in line:
        match = ACCURACY.search(line)
        if match is None or not 0 <= float(match.group(1)) <= 1:
            parsed.unreadable(where, line, " (expected a fraction 0..1)")
        else:
            parsed.set_once("accuracy", 100 * float(match.group(1)), where)
        return
    if line.startswith("Torch_Version"):
        match = TORCH.match(line)
        if match is None:
            parsed.unreadable(where, line)
        else:
            parsed.set_once("torch", match.group(1), where)
        return
    match = PARAM.match(line)
    if match is None:
        return
    key, value = match.group(1), match.group(2).strip()
    if key == "PLATFORM" and value:
        parsed.set_once("platform", one_line(value, 40), where)
    elif key in WSF_PARAMS and value:
        try:
            parsed.set_once(key.lower(), _wsf_value(key, value), where)
        except ParamError as err:
            parsed.problem(f"{where}: {one_line(str(err))}")


def _looks_known(line: str) -> bool:
    """A line _parse_line would read (a KPI, accuracy, torch or parameter line)."""
    param = PARAM.match(line)
    return (line.startswith((*KPI_LINES, "Torch_Version")) or "eval_accuracy" in line
            or (param is not None and param.group(1) in (*WSF_PARAMS, "PLATFORM")))


def _lines(path: Path) -> Iterator[tuple[str, bool]]:
    """(line, whole) one at a time, at most MAX_LINE bytes each: the rest of a longer line is skipped."""
    with path.open("rb") as fh:
        while raw := fh.readline(MAX_LINE + 1):
            whole = len(raw) <= MAX_LINE or raw.endswith(b"\n")
            if not whole:
                while (rest := fh.readline(CHUNK)) and not rest.endswith(b"\n"):
                    pass
            yield raw.decode("utf-8", errors="replace").strip(), whole


def parse_logs(logs: Iterable[Path], root: Path) -> Parsed:
    parsed = Parsed()
    for path in logs:
        name, size = path.relative_to(root), path.stat().st_size
        if size > MAX_LOG_BYTES:
            parsed.problem(f"{name}: {size / 2**20:.0f} MiB, over the {MAX_LOG_BYTES // 2**20} MiB a log may have; "
                           "not read")
            continue
        for number, (line, whole) in enumerate(_lines(path), 1):
            if whole:
                _parse_line(parsed, line, f"{name}:{number}")
            elif _looks_known(line):
                parsed.problem(f"{name}:{number}: line over {MAX_LINE} characters, not read")
    return parsed


def platform(parsed: Parsed) -> str:
    return str(parsed.values.get("platform", "unknown"))


def _result(parsed: Parsed, run_id: str, host: str, case: str, started: str) -> tuple[dict[str, Any], str]:
    """The result.json for the case, and why it failed ("" if it passed)."""
    lines = parsed.kpi_lines
    latency = {name.lower(): sum(v) / len(v) for name, v in lines.items() if name != "Throughput" and v}
    if lines["Throughput"] and sum(lines["Throughput"]) > 0:  # the reference's latency KPI
        latency["mean"] = 1000 * len(lines["Throughput"]) / sum(lines["Throughput"])
    kpi: dict[str, Any] = {
        "throughput": sum(lines["Throughput"]) if lines["Throughput"] else None, "latency_ms": latency or None,
        "accuracy": parsed.values.get("accuracy"), "accuracy_meaningful": True,
    }
    mode = parsed.values["mode"]
    headline = {"Throughput": kpi["throughput"], "P50": latency.get("p50"), "eval_accuracy": kpi["accuracy"]}
    missing = headline[_HEADLINE[mode]] is None
    reason = f"no usable {_HEADLINE[mode]} line in the logs (mode {mode})" if missing else ""
    count, instances = len(lines["Throughput"]), parsed.values.get("instance_number")
    if not missing and count and isinstance(instances, int) and not parsed.values.get("weight_sharing") \
            and count != instances:
        # Summing these would report a throughput no run had: logs of several runs, or missing instances.
        missing, reason = True, (
            f"{count} Throughput lines, but INSTANCE_NUMBER is {instances}: logs of several runs in one folder, or "
            "instance logs missing; not summed (import each run's folder, laid out <run>/<pod>/benchmark_*.log)")
        parsed.problem(reason)
    doc = {
        "schema_version": 1, "run_id": run_id, "host": host, "case": case, "status": "failed" if missing else "passed",
        "reason": reason or f"imported from WSF logs ({len(lines['Throughput'])} instance lines)",
        "started_at": started, "params": parsed.params, "kpi": None if missing else kpi,
        "platform": {"name": platform(parsed)},
        "provenance": {"stack": {"torch": parsed.values["torch"]} if "torch" in parsed.values else {}},
    }
    return doc, reason


def write_run_folder(run_dir: Path, parsed: Parsed, run_id: str, host: str, started: str) -> None:
    """The WSF run as a fleetbench run folder: run.json, host.json and the case's result.json (or status.json)."""
    name = host_dirs([host])[host]
    missing = [f"no usable {key.upper()} line" for key in REQUIRED if key not in parsed.values]
    case = None if missing else case_name({"function": "inference", **parsed.params})
    (run_dir / "hosts" / name).mkdir(parents=True, exist_ok=True)
    atomic.write_json(run_dir / "hosts" / name / "host.json",
                      {"host": host, "groups": [], "detected": {"platform": {"name": platform(parsed)}}})
    if case is None:
        atomic.write_json(run_dir / "hosts" / name / "status.json",
                          {"status": "failed", "step": "import-wsf", "reason": "; ".join(missing)})
    else:
        doc, _ = _result(parsed, run_id, host, case, started)
        (run_dir / "hosts" / name / case).mkdir(exist_ok=True)
        atomic.write_json(run_dir / "hosts" / name / case / "result.json", doc)
    atomic.write_json(run_dir / "run.json", {
        "run_id": run_id, "started_at": started, "hosts": [host], "host_dirs": {host: name},
        "cases": {host: [case] if case else []}, "params": {host: {case: parsed.params} if case else {}},
    })


def find_runs(root: Path) -> dict[Path, list[Path]]:
    """Run folder -> its logs: a log's folder when that is DIR, else the folder above it (kpi.sh's */)."""
    runs: dict[Path, list[Path]] = {}
    for log in sorted(root.rglob(LOG_GLOB)):
        if log.is_file():
            folder = log.parent if log.parent == root else log.parent.parent
            runs.setdefault(folder, []).append(log)
    return runs


def run_id_for(logs: list[Path], folder: Path) -> str:
    """wsf-<hash of the logs' paths within their run folder and contents>: the same run gives the same id."""
    digest = hashlib.sha256()
    for log in logs:
        digest.update(str(log.relative_to(folder)).encode() + b"\0")
        with log.open("rb") as fh:  # in chunks, and at most MAX_LOG_BYTES of a log (which is then not read)
            for chunk in iter(lambda fh=fh: fh.read(CHUNK), b""):
                digest.update(chunk)
                if fh.tell() >= MAX_LOG_BYTES:
                    break
        digest.update(b"\0")
    return f"wsf-{digest.hexdigest()[:16]}"


def import_run(database: db.Database, folder: Path, logs: list[Path], results_dir: Path, host: str | None,
               root: Path) -> tuple[str, list[str]]:
    parsed = parse_logs(logs, root)
    run_id = run_id_for(logs, folder)
    started = datetime.fromtimestamp(min(log.stat().st_mtime for log in logs), timezone.utc)
    run_dir = results_dir / run_id
    if not (run_dir / "run.json").exists():
        name = host or f"wsf-{platform(parsed).lower()}"
        write_run_folder(run_dir, parsed, run_id, name, started.isoformat(timespec="seconds"))
    return f"{folder}: {ingest_one(database, run_dir, source='wsf')}", parsed.report()


def run(args: argparse.Namespace) -> int:
    root = args.dir.resolve()
    found = find_runs(root) if root.is_dir() else {}
    if not found:
        print(f"fleetbench import-wsf: no {LOG_GLOB} under {args.dir}", file=sys.stderr)
        return 2
    reported = False
    try:
        with db.opened(args.db) as database:
            for folder, logs in found.items():
                line, problems = import_run(database, folder, logs, args.results_dir, args.host, root)
                print(line)
                for problem in problems:
                    print(f"  not used: {problem}")
                reported |= bool(problems)
    except (DatabaseError, RunError, OSError) as err:
        print(f"fleetbench import-wsf: {err}", file=sys.stderr)
        return 2
    return 1 if reported else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("import-wsf", help="import the WSF DistilBERT workload's benchmark logs",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", metavar="DIR", type=Path, help="a WSF log folder, or a folder of them")
    parser.add_argument("--host", help="host name to record (default: wsf-<platform>)")
    parser.add_argument("--results-dir", type=Path, default=default_results_dir(),
                        help="where the run folders go (default: results/)")
    db.add_argument(parser)
    parser.set_defaults(func=run)
