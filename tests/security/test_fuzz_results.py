"""Untrusted result files: the controller survives hostile result.json, host.json and status.json files.

Every case below must come out of `fleetbench report` and `fleetbench ingest` as a record (``failed`` with a
reason naming the problem when the file is bad), never as a crash or a hang, and reading one file must take
bounded time and memory: the worst files are read in a child process whose peak RSS growth is measured.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from fleetbench.db import Database
from fleetbench.history import read_run, store
from fleetbench.render import render_text
from fleetbench.report import write_report
from fleetbench.results import MAX_BYTES, MAX_INT, STATUSES, result_schema
from tests.unit.conftest import SPR, RunFolder

CASE = "inference-throughput"
MIB = 1024 * 1024
RSS_BOUND_MIB = 80  # peak RSS growth allowed while reading one file of at most MAX_BYTES (4 MiB)
SECONDS_BOUND = 20  # per file, on a loaded CI machine (measured: at most 1 s)


@pytest.fixture
def folder(tmp_path: Path) -> RunFolder:
    run = RunFolder(tmp_path / "results", {"h1": [CASE]})
    run.write_host("h1", SPR)
    return run


def _good(folder: RunFolder) -> dict[str, Any]:
    return folder.doc("h1")


def _with(folder: RunFolder, path: tuple[str | int, ...], value: Any) -> bytes:
    doc = _good(folder)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc, allow_nan=True).encode()


def _filled(prefix: bytes, item: bytes, suffix: bytes, size: int = MAX_BYTES - 64) -> bytes:
    """prefix + item,item,... + suffix, just under `size` bytes: the most values a file may carry."""
    count = (size - len(prefix) - len(suffix)) // (len(item) + 1)
    return prefix + b",".join([item] * count) + suffix


# name -> (file content, what the reason must say). Content builders take the run folder.
HOSTILE: dict[str, tuple[Any, str]] = {
    "junk 200 MB": (None, "too large (over 4 MiB)"),  # written in chunks by _write_hostile
    "binary junk": (lambda f: os.urandom(MIB), "result.json"),
    "invalid UTF-8": (lambda f: json.dumps(_good(f)).encode().replace(b'"reason": ""', b'"reason": "\xc3\x28"'),
                      "is not valid UTF-8"),
    "100k [": (lambda f: b"[" * 100_000, "nested too deeply (over 32 levels)"),  # refused before parsing
    "30k [": (lambda f: b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
    "30k {": (lambda f: b'{"a":' * 30_000, "nested too deeply"),
    "valid JSON 40 deep": (lambda f: _with(f, ("execution", "deep"), json.loads("[" * 40 + "]" * 40)),
                           "nested too deeply (over 32 levels)"),
    "2M integers": (lambda f: _filled(b'{"execution":{"cpus":[', b"0", b"]}}"), "too many values"),
    "1.3M objects": (lambda f: _filled(b"[", b"{}", b"]"), "too many values"),
    "1.3M lists": (lambda f: _filled(b"[", b"[]", b"]"), "too many values"),
    "1M strings": (lambda f: _filled(b'{"warnings":[', b'""', b"]}"), "too many values"),
    "90k schema errors": (lambda f: _with(f, ("execution", "cpus"), ["a"] * 90_000), "invalid at execution.cpus["),
    "4 MB reason": (lambda f: _with(f, ("reason",), "x" * (MAX_BYTES - 8192)), "invalid at reason"),
    "escape codes in reason": (lambda f: _with(f, ("reason",), "\x1b[2J\u202e\r" * 20_000), "invalid at reason"),
    "NaN": (lambda f: _with(f, ("kpi", "throughput"), float("nan")), "NaN is not allowed"),
    "Infinity": (lambda f: _with(f, ("kpi", "throughput"), float("inf")), "Infinity is not allowed"),
    "-Infinity": (lambda f: _with(f, ("kpi", "latency_ms", "p50"), float("-inf")), "-Infinity is not allowed"),
    "1e999": (lambda f: _with(f, ("kpi", "throughput"), 1.5).replace(b"1.5", b"1e999"), "out of range"),
    "integer 10**400": (lambda f: _with(f, ("kpi", "throughput"), 10**400), "out of range"),
    "integer of 5000 digits": (lambda f: _with(f, ("params", "batch_size"), 7).replace(b'"batch_size": 7',
                                                                                       b'"batch_size": ' + b"9" * 5000),
                               "out of range"),
    "batch size 2**53 + 1": (lambda f: _with(f, ("params", "batch_size"), MAX_INT + 1), "out of range"),
    "duplicate key": (lambda f: json.dumps(_good(f)).encode().replace(b'"status": "passed"',
                                                                      b'"status": "failed", "status": "passed"'),
                      "duplicate key 'status'"),
    "lone surrogate": (lambda f: json.dumps(_good(f)).encode().replace(b'"reason": ""', b'"reason": "\\udc80"'),
                       "lone surrogate"),
    "wrong type kpi": (lambda f: _with(f, ("kpi",), "fast"), "kpi"),
    "wrong type platform": (lambda f: _with(f, ("platform",), [1, 2]), "platform"),
    "truncated": (lambda f: json.dumps(_good(f)).encode()[:700], "truncated"),
}
# Valid files at the edges: the slowest that still passes, and brackets in strings (ANSI colours) that a
# pre-parse count must not take for nesting.
VALID = {
    "99k CPUs (valid)": lambda f: _with(f, ("execution", "cpus"), list(range(99_000))),
    "ANSI colour codes in warnings (valid)": lambda f: _with(f, ("warnings",), ["\x1b[33mslow [cpu 3\x1b[0m"] * 500),
}


def _write_hostile(folder: RunFolder, name: str) -> Path:
    if name == "junk 200 MB":
        path = folder.write_raw("h1", CASE, b"")
        block = os.urandom(MIB)
        with path.open("wb") as fh:
            for _ in range(200):
                fh.write(block)
        return path
    return folder.write_raw("h1", CASE, (VALID.get(name) or HOSTILE[name][0])(folder))


# In a child: peak() is the peak RSS in MiB since the last reset() (VmHWM; getrusage's ru_maxrss cannot be
# reset, and a child's starts at its parent's peak).
PEAK_MIB = """
import json, sys, time
from pathlib import Path
def reset():
    Path("/proc/self/clear_refs").write_text("5")
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
"""
_MEASURE = PEAK_MIB + """
from fleetbench.results import Expected, load_result
for run_id, path in zip(sys.argv[1::2], sys.argv[2::2]):
    expected = Expected(run_id, "h1", "inference-throughput")
    reset()
    base, start = peak(), time.monotonic()
    record = load_result(Path(path), expected)
    print(json.dumps({"status": record.status, "reason": record.reason, "seconds": time.monotonic() - start,
                      "rss_growth_mib": peak() - base}), flush=True)
"""


def test_each_hostile_file_fails_with_its_reason_in_bounded_time_and_memory(tmp_path: Path):
    """One child reads them all (a good one first, to load the schema), each file's peak RSS growth apart."""
    names = ["good", *HOSTILE, *VALID]
    args = []
    for i, name in enumerate(names):
        folder = RunFolder(tmp_path / f"r{i}", {"h1": [CASE]})
        path = folder.write_result("h1") if name == "good" else _write_hostile(folder, name)
        args += [folder.run_id, str(path)]
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the reader crashed:\n{proc.stderr[-3000:]}"
    for name, line in zip(names, proc.stdout.splitlines(), strict=True):
        got = json.loads(line)
        print(f"{name}: {got['status']} in {got['seconds']:.2f} s, +{got['rss_growth_mib']} MiB: {got['reason'][:90]}")
        if name in VALID or name == "good":
            assert got["status"] == "passed", (name, got)
        else:
            assert got["status"] == "failed", (name, got)
            assert got["reason"].startswith("result.json") and HOSTILE[name][1] in got["reason"], (name, got)
            assert len(got["reason"]) <= 300 and got["reason"].isprintable(), (name, got)
        assert got["seconds"] < SECONDS_BOUND, (name, got)
        assert got["rss_growth_mib"] < RSS_BOUND_MIB, (name, got)


# -- fuzzing: any value anywhere, through report and ingest ---------------------------------------------------

NASTY_NUMBERS = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, -1, MAX_INT + 1, 10**400])
NASTY_TEXT = st.sampled_from(["", " ", "\x00", "\x1b[31m", "\u202e", "../../etc/passwd", "NaN", "1e999",
                              "x" * 5000, "passed", "amx_int8", "\ud800"])
LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | NASTY_NUMBERS
          | NASTY_TEXT)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=12)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a value can be replaced (in a list, its first two items only)."""
    children = value.items() if isinstance(value, dict) else enumerate(value[:2]) if isinstance(value, list) else ()
    out = [prefix] if prefix else []
    for key, child in children:
        out += _paths(child, (*prefix, key))
    return out


def _holds(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and key < len(container)


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    """The container holding `path`'s value, or None when an earlier change removed it."""
    for key in path[:-1]:
        if not _holds(doc, key):
            return None
        doc = doc[key]
    return doc if _holds(doc, path[-1]) else None


def _mutated(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """Values replaced (a number by a nasty one) or removed, then maybe damaged as bytes."""
    paths = _paths(doc)
    numbers = [p for p in paths if type(_parent(doc, p)[p[-1]]) in (int, float)]
    if numbers and draw(st.booleans()):  # half: one nasty number (often a KPI) in an otherwise good file
        kpis = [p for p in numbers if p[0] == "kpi"]
        path = draw(st.sampled_from(kpis if kpis and draw(st.booleans()) else numbers))
        _parent(doc, path)[path[-1]] = draw(NASTY_NUMBERS)
        return json.dumps(doc, allow_nan=True).encode()
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(numbers if numbers and draw(st.booleans()) else paths))
        parent = _parent(doc, path)
        if parent is None:
            continue
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(NASTY_NUMBERS if path in numbers else VALUES)
    data = json.dumps(doc, allow_nan=True, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "duplicate", "bytes", "cut"]))
    if damage == "duplicate":
        data = data.replace(b'"status"', b'"status": "passed", "status"', 1)
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _check_record_is_safe(run_dir: Path, database: Database) -> None:
    summary = write_report(run_dir)
    render_text(summary)
    json.loads((run_dir / "summary.json").read_text())
    (row,) = summary.rows
    assert row.status in STATUSES and (row.status == "passed" or row.reason)
    ingest = read_run(run_dir)
    store(database, ingest)
    (stored,) = ingest.records
    if stored.status == "passed":
        result = json.loads(stored.doc)
        Draft202012Validator(result_schema()).validate(result)
        for value in (stored.throughput, stored.latency_p50, stored.latency_p99):
            assert value is None or (isinstance(value, (int, float)) and abs(value) <= 1e308)
    if stored.excluded == "invalid":
        assert stored.reason.startswith("result.json") and stored.doc is None


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    return _mutated(draw, copy.deepcopy(base))


@settings(max_examples=500, deadline=timedelta(seconds=10), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_value_anywhere_is_reported_never_raised(folder: RunFolder, tmp_path: Path, data: st.DataObject):
    """A result.json, host.json (from the host's facts) or status.json (from its error output) with values
    replaced or removed anywhere, duplicate keys, stray bytes or cut short."""
    host_doc = {"host": "h1", "groups": ["all", "spr"], "detected": {"platform": SPR}}
    status_doc = {"status": "failed", "step": "stage", "reason": "no space left"}
    result = folder.write_result("h1")
    (folder.path / "hosts" / "h1" / "status.json").unlink(missing_ok=True)
    which = data.draw(st.sampled_from(["result.json", "result.json", "result.json", "host.json", "status.json"]))
    if which == "result.json":
        result.write_bytes(data.draw(mutated(_good(folder))))
    else:
        if which == "status.json":
            result.unlink()
        bad = data.draw(mutated(host_doc if which == "host.json" else status_doc))
        (folder.path / "hosts" / "h1" / which).write_bytes(bad)
    database = Database(str(tmp_path / "fuzz.sqlite"))
    try:
        _check_record_is_safe(folder.path, database)
    finally:
        database.close()
