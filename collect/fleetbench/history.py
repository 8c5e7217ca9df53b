"""The history: ``fleetbench ingest RUN_DIR...`` stores runs; the analyses read them back as samples.

A run folder is read through :mod:`fleetbench.results` (the one reader of untrusted result files) and
summarised through :mod:`fleetbench.summary`; every host x case becomes one stored record with its status
and reason, whatever happened to it. A record enters KPI aggregates, baselines and regression checks only
when it is *included*; otherwise ``excluded`` names why (see :func:`exclusion` and docs/results.md).

Each run is written in one transaction: re-ingesting a run replaces it (nothing is duplicated; an
unchanged run is left alone), and a crash or kill mid-way leaves the database as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fleetbench import db
from fleetbench.db import Cursor, Database, DatabaseError
from fleetbench.results import Record, RunError, load_groups, load_platform, load_records, load_run, one_line
from fleetbench.setting import Setting, setting_of
from fleetbench.stats import median
from fleetbench.summary import Row, build_summary

EXCLUDED_LABELS = {
    "failed": "failed", "skipped": "skipped", "timeout": "timed out", "unreachable": "unreachable",
    "invalid": "invalid result file (schema, NaN, negative or malformed)",
    "isa_mismatch": "ran without the ISA its precision needs (isa_mismatch)",
    "out_of_bounds": "absurd value (out of bounds)",
}


@dataclass(frozen=True)
class Kpi:
    name: str
    label: str
    unit: str
    higher_is_better: bool


KPIS = {
    "throughput": Kpi("throughput", "throughput", "samples/s", True),
    "latency_p50": Kpi("latency_p50", "latency p50", "ms", False),
    "latency_p99": Kpi("latency_p99", "latency p99", "ms", False),
    "accuracy": Kpi("accuracy", "accuracy", "%", True),
}
# Performance KPIs judged per mode; accuracy is judged wherever a meaningful accuracy was measured.
MODE_KPIS = {"throughput": ("throughput",), "latency": ("latency_p50", "latency_p99"), "accuracy": ()}


@dataclass(frozen=True)
class StoredRecord:
    """One row of the `records` table (fields in db.RECORD_COLUMNS order)."""

    run_id: str
    host: str
    case: str
    status: str
    reason: str
    platform: str
    cpu_model: str
    groups: str  # ",g1,g2," (inventory groups, else the platform), for matching
    precision: str | None
    mode: str | None
    batch_size: int | None
    stack: str
    setting: str  # Setting.to_text(): what else must be equal for two records to be one measurement
    throughput: float | None
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    accuracy: float | None
    accuracy_meaningful: bool | None
    included: bool
    excluded: str  # "" when included, else a key of EXCLUDED_LABELS
    doc: str | None  # the checked result.json


@dataclass(frozen=True)
class IngestRun:
    run_id: str
    started_at: str
    source: str
    status: str
    location: str
    records: tuple[StoredRecord, ...]

    def samples(self) -> list[Sample]:
        """The records as the analyses read them back from the database."""
        names = {f.name for f in fields(Sample)} - {"setting"}
        return [Sample(started_at=self.started_at, setting=Setting.from_text(r.setting),
                       **{k: v for k, v in vars(r).items() if k in names}) for r in self.records]

    @property
    def digest(self) -> str:
        body = [self.run_id, self.started_at, self.source, self.status, [astuple(r) for r in self.records]]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Sample:
    """A stored record as the analyses read it back, with its run's start time."""

    run_id: str
    started_at: str
    host: str
    case: str
    status: str
    reason: str
    platform: str
    groups: str
    precision: str | None
    mode: str | None
    batch_size: int | None
    stack: str
    setting: Setting
    throughput: float | None
    latency_p50: float | None
    latency_p99: float | None
    accuracy: float | None
    accuracy_meaningful: bool | None
    excluded: str

    @property
    def included(self) -> bool:
        return not self.excluded

    @property
    def measurement(self) -> tuple[str, str, int | None, Setting]:
        """What was measured: case, precision, batch size and setting. Tables, compare, check and the
        trends only ever put records with equal measurements (and host or platform) in one cell or series."""
        return self.case, self.precision or "-", self.batch_size, self.setting

    def value(self, kpi: str) -> float | None:
        """The KPI if this sample may enter aggregates (accuracy only when meaningful)."""
        if not self.included or (kpi == "accuracy" and not self.accuracy_meaningful):
            return None
        value: float | None = getattr(self, kpi)
        return value

    def kpis(self) -> tuple[str, ...]:
        """KPIs to judge for this sample: its mode's performance KPIs, plus a meaningful accuracy."""
        extra = ("accuracy",) if self.value("accuracy") is not None else ()
        return tuple(k for k in MODE_KPIS.get(self.mode or "", ()) if self.value(k) is not None) + extra


_SAMPLE_COLUMNS = ("r.run_id", "u.started_at", *(f"r.{c}" for c in (
    "host", "case_name", "status", "reason", "platform", "host_groups", "precision", "mode", "batch_size", "stack",
    "setting", "throughput", "latency_p50", "latency_p99", "accuracy", "accuracy_meaningful", "excluded")))


# -- reading a run folder --------------------------------------------------------------------------------


def utc_timestamp(value: str | None) -> str | None:
    """An ISO 8601 time as sortable UTC text (``2025-01-01T12:00:00Z``), None if it is not one."""
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stack_label(result: Mapping[str, Any]) -> str:
    """torch and IPEX versions, e.g. ``torch 2.8.0+cpu, ipex 2.8.0``; ``unknown`` when not recorded."""
    stack = result.get("provenance", {}).get("stack", {})
    torch, ipex = stack.get("torch"), stack.get("ipex") or stack.get("intel_extension_for_pytorch")
    parts = [f"{name} {one_line(str(v), 40)}" for name, v in (("torch", torch), ("ipex", ipex)) if v]
    return ", ".join(parts) or "unknown"


def _missing_isa(mismatch: Any) -> str:
    missing = mismatch.get("missing") if isinstance(mismatch, Mapping) else None
    return ", ".join(one_line(str(m), 40) for m in missing) if isinstance(missing, list) and missing else "unstated"


def exclusion(record: Record, row: Row) -> tuple[str, str]:
    """(why the record stays out of aggregates, one-line detail); ("", "") when it counts."""
    if record.rejected:
        return "invalid", record.reason
    if record.status != "passed" or record.result is None:
        return record.status, record.reason
    mismatch = record.result.get("isa_mismatch")
    if mismatch:
        return "isa_mismatch", f"ran without the ISA {row.precision} needs (missing: {_missing_isa(mismatch)})"
    if row.out_of_bounds:  # the summary already reports it as failed, with no KPI (summary.absurd_value)
        return "out_of_bounds", row.out_of_bounds
    return "", ""


def _stored(run_id: str, record: Record, row: Row, groups: Sequence[str], planned: Mapping[str, Any]) -> StoredRecord:
    excluded, detail = exclusion(record, row)
    result = record.result or {}
    return StoredRecord(
        run_id=run_id, host=record.host, case=record.case, status=record.status,
        reason=detail if excluded and record.status == "passed" else record.reason,
        platform=row.platform, cpu_model=row.cpu_model,
        groups="," + ",".join(groups or [row.platform]) + ",",
        precision=row.precision, mode=row.mode, batch_size=row.batch_size, stack=stack_label(result),
        setting=setting_of(record.result, planned).to_text(),
        throughput=row.throughput, latency_p50=row.latency_p50_ms, latency_p90=row.latency_p90_ms,
        latency_p99=row.latency_p99_ms, accuracy=row.accuracy, accuracy_meaningful=row.accuracy_meaningful,
        included=not excluded, excluded=excluded,
        doc=json.dumps(result, sort_keys=True) if record.result is not None else None,
    )


def read_run(run_dir: Path, source: str = "fleetbench") -> IngestRun:
    """A run folder as records to store (RunError if it is not a run folder). Reads, never writes."""
    run = load_run(run_dir)
    records = load_records(run_dir, run)
    host_dirs = {host: run.host_dir(run_dir, host) for host in run.hosts}
    summary = build_summary(run, records, {host: load_platform(d) for host, d in host_dirs.items()})
    groups = {host: load_groups(d) for host, d in host_dirs.items()}
    stored = tuple(_stored(run.run_id, rec, row, groups[rec.host], run.params.get(rec.host, {}).get(rec.case, {}))
                   for rec, row in zip(records, summary.rows, strict=True))
    started = utc_timestamp(run.started_at)
    if run.started_at and started is None:  # the run's place in every series: never guessed
        raise RunError(f"{run_dir / 'run.json'}: started_at {str(run.started_at)[:60]!r} is not an ISO 8601 time")
    started = started or now_utc()
    return IngestRun(run.run_id, started, source, summary.status, str(run_dir.resolve()), stored)


# -- storing ---------------------------------------------------------------------------------------------


def _db_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _insert_records(cur: Cursor, records: Iterable[StoredRecord]) -> None:
    marks = ", ".join("?" for _ in db.RECORD_COLUMNS)
    cur.executemany(f"INSERT INTO records ({', '.join(db.RECORD_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                    [tuple(_db_value(v) for v in astuple(r)) for r in records])


def store(database: Database, run: IngestRun) -> str:
    """Write one run in one transaction: "added", "replaced" (it changed) or "unchanged"."""
    digest = run.digest
    with database.transaction() as cur:
        cur.execute("SELECT digest FROM runs WHERE run_id = ?", (run.run_id,))
        old = cur.fetchall()
        if old and old[0][0] == digest:
            return "unchanged"
        if old:
            cur.execute("DELETE FROM records WHERE run_id = ?", (run.run_id,))
            cur.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
        cur.execute(f"INSERT INTO runs ({', '.join(db.RUN_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                    (run.run_id, run.started_at, run.source, run.status, digest, now_utc(), run.location))
        _insert_records(cur, run.records)
    return "replaced" if old else "added"


def excluded_counts(records: Iterable[StoredRecord | Sample]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        if record.excluded:
            counts[record.excluded] = counts.get(record.excluded, 0) + 1
    return counts


def describe_excluded(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {EXCLUDED_LABELS.get(k, k)}" for k, n in sorted(counts.items(), key=lambda i: -i[1]))


def ingest_one(database: Database, run_dir: Path, source: str = "fleetbench") -> str:
    """Store one run folder and say what happened, in one line."""
    run = read_run(run_dir, source)
    outcome = store(database, run)
    counts = excluded_counts(run.records)
    excluded = f"; {sum(counts.values())} excluded from aggregates ({describe_excluded(counts)})" if counts else ""
    return f"run {run.run_id}: {outcome}, {len(run.records)} records, {run.status}{excluded}"


# -- reading back ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    since: str | None = None  # ISO date or time, inclusive
    until: str | None = None  # ISO date (the whole day) or time, inclusive
    group: str | None = None  # inventory group (or platform when a host had none), any case
    stack: str | None = None  # part of the stack label, any case: "ipex 2.8"
    case: str | None = None
    run_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        named = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "run_ids"
                 and getattr(self, f.name)]
        return ", ".join(named) or "none"


def _bound(value: str, end: bool) -> str:
    """--since/--until as a started_at to compare with; a bare date covers its whole day."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        moment = utc_timestamp(value)
        if moment is None:
            raise ValueError(f"{value!r} is not a date (2025-01-31) or an ISO time") from None
        return moment
    return f"{day + timedelta(days=1) if end else day}T00:00:00Z"


def load_samples(database: Database, filters: Filters = Filters()) -> list[Sample]:
    """Stored records matching the filters, oldest run first (ValueError for a malformed date)."""
    where, params = ["1 = 1"], []
    if filters.since:
        where.append("u.started_at >= ?")
        params.append(_bound(filters.since, end=False))
    if filters.until:
        where.append("u.started_at < ?")
        params.append(_bound(filters.until, end=True))
    if filters.case:
        where.append("r.case_name = ?")
        params.append(filters.case)
    if filters.run_ids:
        where.append(f"r.run_id IN ({', '.join('?' for _ in filters.run_ids)})")
        params.extend(filters.run_ids)
    sql = (f"SELECT {', '.join(_SAMPLE_COLUMNS)} FROM records r JOIN runs u ON u.run_id = r.run_id "  # noqa: S608
           f"WHERE {' AND '.join(where)} ORDER BY u.started_at, r.run_id, r.host, r.case_name")
    samples = [_sample(row) for row in database.rows(sql, params)]
    group = f",{filters.group.lower()}," if filters.group else ""
    stack = (filters.stack or "").lower()
    return [s for s in samples if group in s.groups.lower() and stack in s.stack.lower()]


def _sample(row: tuple[Any, ...]) -> Sample:
    values = dict(zip((f.name for f in fields(Sample)), row, strict=True))
    meaningful = values["accuracy_meaningful"]
    return Sample(**{**values, "setting": Setting.from_text(values["setting"]),
                     "accuracy_meaningful": None if meaningful is None else bool(meaningful)})


def newest_run(database: Database) -> str | None:
    rows = database.rows("SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT 1")
    return rows[0][0] if rows else None


def per_run(samples: Iterable[Sample], key: Callable[[Sample], Any], kpi: str) -> dict[Any, list[tuple[str, float]]]:
    """Series per key: one value per run (the median over its hosts), oldest run first."""
    grouped: dict[Any, dict[str, list[float]]] = {}
    for s in samples:
        value = s.value(kpi)
        if value is not None:
            grouped.setdefault(key(s), {}).setdefault(s.run_id, []).append(value)
    return {k: [(run, median(vals)) for run, vals in runs.items()] for k, runs in grouped.items()}


# -- command ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    status = 0
    try:
        with db.opened(args.db) as database:
            for run_dir in args.run_dirs:
                try:
                    print(ingest_one(database, run_dir))
                except RunError as err:
                    print(f"fleetbench ingest: {err}", file=sys.stderr)
                    status = 2
    except DatabaseError as err:
        print(f"fleetbench ingest: {err}", file=sys.stderr)
        return 2
    return status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ingest", help="store run folders in the history database",
        description="Store each RUN_DIR in the history database, one transaction per run. Re-ingesting a run "
                    "replaces it (never duplicates it). Exit 0: all stored; 2: a folder is not a run folder or "
                    "the database cannot be used (the other folders are still stored).")
    parser.add_argument("run_dirs", metavar="RUN_DIR", type=Path, nargs="+", help="e.g. results/latest")
    db.add_argument(parser)
    parser.set_defaults(func=run)
