"""Read a run folder: the one place that turns untrusted result files into checked records.

Everything a host sends back is untrusted. :func:`load_result` reads one ``result.json`` with a size cap,
strict UTF-8 and strict JSON (no NaN/Infinity, no out-of-range numbers, no duplicate keys, no lone
surrogates), validates it against the shared schema (:data:`fleetbench.paths.SCHEMA`) and checks that it
belongs where it was found. It never raises for bad input: a problem gives a ``failed`` :class:`Record`
whose one-line reason names it, and a rejected file contributes no numbers.

:func:`load_run` reads ``run.json`` (written by the playbook) and :func:`load_records` resolves every host x
case it names to one :class:`Record`, using ``hosts/<host>/status.json`` for a host that produced no result.
The report, and later the history database and regression checks, build on these records.
"""

from __future__ import annotations

import json
import math
import os
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any, NoReturn

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from fleetbench import paths
from fleetbench.params import MODES
from fleetbench.runs import safe_name

# Bounds on one untrusted JSON file, checked before the schema (whose cost grows with the values): a real
# result.json is a few KB with a few hundred values, nested about 5 deep. Integers beyond 2**53 are not
# exact in JSON (and overflow floats and SQLite); only the first schema errors are ranked for the reason.
MAX_BYTES = 4 * 1024 * 1024
MAX_VALUES = 100_000
MAX_DEPTH = 32
MAX_INT = 2**53
MAX_ERRORS = 50
STATUSES = ("passed", "failed", "skipped", "timeout", "unreachable")
REASON_CHARS = 300
NO_CASE = "-"  # the case column of a host for which run.json names no case

# A folder name in run.json's host_dirs: no separators, no control characters, not "." or "..".
_DIR_NAME = {"type": "string", "pattern": r"^(?!\.\.?$)[^/\\\x00-\x1f\x7f]{1,255}$"}
_HOST_NAME = {"type": "string", "minLength": 1, "maxLength": 255}
_HOST_STATUS_SCHEMA = {
    "type": "object",
    "required": ["status", "reason"],
    "properties": {
        "status": {"enum": ["failed", "unreachable", "timeout"]},
        "step": {"type": "string"},
        "reason": {"type": "string"},
    },
}


class Invalid(Exception):
    """A file that cannot be used; the message is the one-line reason."""


class RunError(Exception):
    """A folder that is not a usable run folder (missing, or run.json missing or invalid)."""


@dataclass(frozen=True)
class Expected:
    """Where a result was found, and what the run asked of that host."""

    run_id: str
    host: str
    case: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One host x case. ``result`` is the checked result.json, or None when absent or rejected.

    ``rejected``: a result.json was there but failed the checks (strict JSON, schema, identity, KPIs).
    """

    host: str
    case: str
    status: str
    reason: str
    result: Mapping[str, Any] | None = None
    rejected: bool = False


@dataclass(frozen=True)
class Run:
    """What run.json says: the run, the selected hosts, their folders, cases and validated parameters."""

    run_id: str
    started_at: str | None
    hosts: tuple[str, ...]
    host_dirs: Mapping[str, str]
    cases: Mapping[str, tuple[str, ...]]
    params: Mapping[str, Mapping[str, Mapping[str, Any]]]  # host -> case -> validated parameters

    def host_dir(self, run_dir: Path, host: str) -> Path:
        return run_dir / "hosts" / self.host_dirs[host]


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """Untrusted text made safe to print: control and format characters become spaces, one line, capped."""
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    flat = " ".join(cleaned.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- strict reading -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise Invalid(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"number {one_line(text, 40)} is out of range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text) if len(text) <= 20 else MAX_INT + 1  # long digit strings: never converted
    if abs(value) > MAX_INT:
        raise Invalid(f"integer {one_line(text, 40)} is out of range (over 2**53)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Invalid(f"duplicate key {one_line(key, 60)!r}")
        out[key] = value
    return out


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise Invalid(f"{label} missing") from None
    except OSError as err:
        raise Invalid(f"{label} unreadable: {err.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Invalid(f"{label} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise Invalid(f"{label} unreadable: {err.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise Invalid(f"{label} too large (over {MAX_BYTES // 1024 // 1024} MiB)")
    return data


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Invalid(f"{label} is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def _describe_json_error(err: json.JSONDecodeError, label: str) -> str:
    text = err.doc.rstrip()
    if err.pos >= len(text) or err.msg.startswith("Unterminated string"):
        lines = text.split("\n")
        return f"{label} is truncated (ends at line {len(lines)} column {len(lines[-1])})"
    return f"{label} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"


def _parse(text: str, label: str) -> Any:
    if not text.strip():
        raise Invalid(f"{label} is empty")
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         parse_int=_bounded_int, object_pairs_hook=_unique_keys)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as err:
        raise Invalid(_describe_json_error(err, label)) from None
    except Invalid as err:
        raise Invalid(f"{label} is not valid JSON: {err}") from None
    except UnicodeEncodeError:
        raise Invalid(f"{label} is not valid JSON: a \\u escape is a lone surrogate") from None
    except RecursionError:
        raise Invalid(f"{label} is nested too deeply") from None
    except ValueError as err:
        raise Invalid(f"{label} is not valid JSON: {one_line(str(err), 120)}") from None
    _check_depth(doc, label)
    return doc


def _prescan(data: bytes, label: str) -> None:
    """Refuse more than MAX_VALUES values before parsing: a value costs Python ~50 times its bytes.

    Every value but the first of an array or object follows a comma, so commas + 2 x brackets + 1 bounds
    the count from above (commas and brackets inside strings only make it more cautious; no real result
    comes near). Over it, many brackets left open say the file is mostly nesting.
    """
    opened = data.count(b"[") + data.count(b"{")
    if data.count(b",") + 2 * opened + 1 > MAX_VALUES:
        if opened - data.count(b"]") - data.count(b"}") > MAX_DEPTH:
            raise Invalid(f"{label} is nested too deeply (over {MAX_DEPTH} levels)")
        raise Invalid(f"{label} has too many values (over {MAX_VALUES:,} counting separators)")


def _check_depth(doc: Any, label: str) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Invalid(f"{label} is nested too deeply (over {MAX_DEPTH} levels)")
        if isinstance(value, (dict, list)):
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))


def read_json(path: Path, label: str) -> Any:
    """Strictly parsed JSON from an untrusted file, or :class:`Invalid` naming what is wrong with it."""
    data = _read_bytes(path, label)
    _prescan(data, label)
    return _parse(_decode(data, label), label)


# -- schema ---------------------------------------------------------------------------------------------


@cache
def result_schema() -> dict[str, Any]:
    """The result contract shared with the payload."""
    schema: dict[str, Any] = json.loads(paths.SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = result_schema()
    schemas: dict[str, Any] = {
        "result": schema,
        "run": _run_schema(schema["properties"]["case"]["pattern"]),
        "status": _HOST_STATUS_SCHEMA,
        "host": _host_schema(schema["properties"]["platform"]),
        "groups": {"type": "object", "properties": {"groups": {"type": "array", "items": _HOST_NAME}}},
    }
    return Draft202012Validator(schemas[kind])


def _host_schema(platform: dict[str, Any]) -> dict[str, Any]:
    """host.json as the detect role writes it: {host, groups, detected: {platform, host}, platform_mismatch}."""
    detected = {"type": "object", "properties": {"platform": platform}}
    return {"type": "object", "properties": {"detected": detected, "platform_mismatch": {"type": "string"}}}


def _run_schema(case_pattern: str) -> dict[str, Any]:
    case = {"type": "string", "pattern": case_pattern}
    return {
        "type": "object",
        "required": ["run_id", "hosts", "cases"],
        "properties": {
            "run_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "started_at": {"type": "string"},
            "hosts": {"type": "array", "items": _HOST_NAME, "uniqueItems": True},
            "host_dirs": {"type": "object", "additionalProperties": _DIR_NAME},
            "cases": {
                "type": "object",
                "propertyNames": _HOST_NAME,
                "additionalProperties": {"type": "array", "items": case, "uniqueItems": True},
            },
            "params": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": {"type": "object"}}},
        },
    }


def _validate(doc: Any, kind: str, label: str) -> None:
    try:
        error = best_match(islice(_validator(kind).iter_errors(doc), MAX_ERRORS))
    except RecursionError:
        raise Invalid(f"{label} is nested too deeply") from None
    if error is None:
        return
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    raise Invalid(f"{label} invalid{' at ' + where if where else ''}: {error.message}")


# -- checks beyond the schema -----------------------------------------------------------------------------


def case_mode(case: str) -> str | None:
    """The mode a case name carries (``inference-latency-gated`` -> ``latency``), if it names one."""
    parts = case.split("-")
    return parts[1] if len(parts) > 1 and parts[1] in MODES else None


def _check_identity(doc: Mapping[str, Any], expected: Expected) -> None:
    for key, want in (("run_id", expected.run_id), ("host", expected.host), ("case", expected.case)):
        if doc[key] != want:
            raise Invalid(f"result.json is for {key} {one_line(doc[key], 80)!r}, not {want!r}")


def _check_params(params: Mapping[str, Any], expected: Expected) -> None:
    mode = case_mode(expected.case)
    if mode is not None and params["mode"] != mode:
        raise Invalid(f"result.json ran mode {params['mode']!r}, but the case is {expected.case!r}")
    asked = expected.params.get("precision")
    if asked is not None and params["precision"] != asked:
        raise Invalid(f"result.json ran precision {params['precision']!r}, but the run asked for {asked!r}")


_MODE_KPI = {"throughput": "kpi.throughput", "latency": "kpi.latency_ms.p50", "accuracy": "kpi.accuracy"}


def _check_kpi(doc: Mapping[str, Any]) -> None:
    kpi = doc.get("kpi")
    if not kpi:
        raise Invalid("result.json passed without kpi")
    mode = doc["params"]["mode"]
    latency = kpi.get("latency_ms") or {}
    headline = {"throughput": kpi.get("throughput"), "latency": latency.get("p50"), "accuracy": kpi.get("accuracy")}
    if headline[mode] is None:
        raise Invalid(f"result.json passed without {_MODE_KPI[mode]} (mode {mode})")
    marks = [latency[p] for p in ("p50", "p90", "p99") if p in latency]
    if marks != sorted(marks):
        raise Invalid("result.json kpi.latency_ms percentiles are out of order (p50 <= p90 <= p99)")


def _check_status(doc: Mapping[str, Any]) -> None:
    if doc["status"] == "passed":
        _check_kpi(doc)
    elif not doc["reason"].strip():
        raise Invalid(f"result.json says {doc['status']} without a reason")


def load_result(path: Path, expected: Expected) -> Record:
    """Read and check one result.json; any problem gives a ``failed`` record naming it. Never raises."""
    try:
        doc = read_json(path, "result.json")
        _validate(doc, "result", "result.json")
        _check_identity(doc, expected)
        _check_params(doc["params"], expected)
        _check_status(doc)
    except Invalid as err:
        return Record(expected.host, expected.case, "failed", one_line(str(err)), rejected=os.path.lexists(path))
    reason = one_line(doc["reason"]) if doc["status"] != "passed" else ""
    return Record(expected.host, expected.case, doc["status"], reason, doc)


# -- run folder ------------------------------------------------------------------------------------------


def load_run(run_dir: Path) -> Run:
    """run.json of a run folder, or :class:`RunError` saying why the folder cannot be reported."""
    if not run_dir.is_dir():
        raise RunError(f"no run folder at {run_dir}")
    try:
        doc = read_json(run_dir / "run.json", "run.json")
        _validate(doc, "run", "run.json")
    except Invalid as err:
        raise RunError(f"{run_dir} is not a usable run folder: {err}") from None
    cases: dict[str, list[str]] = doc["cases"]
    hosts = tuple(dict.fromkeys([*doc["hosts"], *cases]))
    host_dirs: dict[str, str] = doc.get("host_dirs", {})
    return Run(
        run_id=doc["run_id"],
        started_at=doc.get("started_at"),
        hosts=hosts,
        host_dirs={host: host_dirs.get(host) or safe_name(host) for host in hosts},
        cases={host: tuple(cases.get(host, ())) for host in hosts},
        params=doc.get("params", {}),
    )


def load_host_status(host_dir: Path) -> tuple[str, str] | None:
    """(status, reason) from hosts/<host>/status.json, None when there is none."""
    path = host_dir / "status.json"
    if not os.path.lexists(path):
        return None
    try:
        doc = read_json(path, "status.json")
        _validate(doc, "status", "status.json")
    except Invalid as err:
        return "failed", one_line(str(err))
    reason = one_line(doc["reason"]) or "no reason given"
    step = one_line(doc.get("step", ""), 40)
    return doc["status"], f"{step}: {reason}" if step else reason


def load_platform(host_dir: Path) -> Mapping[str, Any]:
    """Detected platform facts from hosts/<host>/host.json; empty when absent or invalid (they are optional)."""
    try:
        doc = read_json(host_dir / "host.json", "host.json")
        _validate(doc, "host", "host.json")
    except Invalid:
        return {}
    platform: Mapping[str, Any] = doc.get("detected", {}).get("platform", {})
    return platform


def load_groups(host_dir: Path) -> tuple[str, ...]:
    """The host's inventory groups from hosts/<host>/host.json (as the detect role writes them); () if none."""
    try:
        doc = read_json(host_dir / "host.json", "host.json")
        _validate(doc, "groups", "host.json")
    except Invalid:
        return ()
    groups: list[str] = doc.get("groups", [])
    return tuple(one_line(g, 80) for g in groups if g not in ("all", "ungrouped"))


def _host_records(run_dir: Path, run: Run, host: str) -> list[Record]:
    host_dir = run.host_dir(run_dir, host)
    host_status = load_host_status(host_dir)
    if not run.cases[host]:
        status, reason = host_status or ("failed", "run.json names no case for this host")
        return [Record(host, NO_CASE, status, reason)]
    records = []
    for case in run.cases[host]:
        path = host_dir / case / "result.json"
        if host_status is not None and not os.path.lexists(path):
            records.append(Record(host, case, *host_status))
            continue
        expected = Expected(run.run_id, host, case, run.params.get(host, {}).get(case, {}))
        records.append(load_result(path, expected))
    return records


def load_records(run_dir: Path, run: Run) -> list[Record]:
    """One record per host x case named in run.json, in run.json's order."""
    return [record for host in run.hosts for record in _host_records(run_dir, run, host)]
