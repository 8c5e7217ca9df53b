"""One row per host x case, and the run's verdict, from the checked records of a run folder.

Numbers come only from a result that passed every check (:mod:`fleetbench.results`); a row that did not
pass carries its status and reason and no numbers. Parameters of a row without a usable result come from
run.json (precision, and the batch size when run.json's mode is the case's mode) and the case name (mode).

A run is ``complete`` when it has at least one row and every row ``passed`` or was ``skipped`` with a
reason (the reader guarantees a skipped result states one); otherwise it is ``partial``.

Two marks travel with a row (in summary.json only when set; kpi.csv keeps its columns, and the payload's
reason already says both): ``isa_mismatch`` (the flags the host lacked when the case ran anyway with
``require_isa=false``: the report lists such rows apart, never in the platform tables) and
``accuracy_flag`` (the accuracy guard: a reduced precision more than 1 point below fp32 on the same model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fleetbench.results import STATUSES, Record, Run, case_mode, load_platform, load_records, load_run, one_line

UNKNOWN_PLATFORM = "unknown"


@dataclass(frozen=True)
class Row:
    """What the report shows for one host x case. KPI fields are None unless the case passed."""

    platform: str
    host: str
    case: str
    cpu_model: str
    precision: str | None
    mode: str | None
    batch_size: int | None
    throughput: float | None
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    accuracy: float | None
    accuracy_meaningful: bool | None
    status: str
    reason: str
    isa_mismatch: str | None = None  # the ISA flags the host lacked (require_isa=false)
    accuracy_flag: str | None = None  # why the accuracy guard flagged the row
    out_of_bounds: str | None = None  # the absurd value that made a passed result a failed row


MARKS = ("isa_mismatch", "accuracy_flag", "out_of_bounds")

# Values outside these bounds are absurd for DistilBERT-base on one server (a broken or hostile host): the
# row is failed and shows no KPI; the history keeps the record, excluded ("out_of_bounds"). Lower bounds are
# exclusive (a zero throughput or latency is no measurement).
THROUGHPUT_BOUNDS = (0.0, 1e6)  # samples/s
LATENCY_BOUNDS_MS = (0.0, 6e5)  # 10 minutes per iteration


def _outside(value: float | None, bounds: tuple[float, float]) -> bool:
    return value is not None and not bounds[0] < value <= bounds[1]  # NaN is outside too


def absurd_value(throughput: float | None, latency_ms: Mapping[str, Any]) -> str:
    """Which KPI is out of bounds, as one line; "" when none is."""
    if _outside(throughput, THROUGHPUT_BOUNDS):
        return f"throughput {throughput} samples/s is outside {THROUGHPUT_BOUNDS}"
    for name in ("p50", "p90", "p99"):
        if _outside(latency_ms.get(name), LATENCY_BOUNDS_MS):
            return f"latency {name} {latency_ms.get(name)} ms is outside {LATENCY_BOUNDS_MS}"
    return ""
COLUMNS = tuple(f.name for f in fields(Row) if f.name not in MARKS)


@dataclass(frozen=True)
class Summary:
    run_id: str
    started_at: str | None
    status: str  # "complete" or "partial"
    counts: Mapping[str, int]
    rows: tuple[Row, ...]

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def has_unmeaningful_accuracy(self) -> bool:
        return any(row.accuracy_meaningful is False for row in self.rows)

    @property
    def has_accuracy_flags(self) -> bool:
        return any(row.accuracy_flag for row in self.rows)

    def isa_mismatches(self) -> list[Row]:
        """Rows that ran without their precision's ISA: shown apart, never in the platform tables."""
        return [row for row in self.rows if row.isa_mismatch]

    def platforms(self) -> list[tuple[str, list[Row]]]:
        """Rows grouped by platform, platforms sorted by name with the unknown one last (isa_mismatch rows
        are not in them: see :meth:`isa_mismatches`)."""
        groups: dict[str, list[Row]] = {}
        for row in self.rows:
            if not row.isa_mismatch:
                groups.setdefault(row.platform, []).append(row)
        return sorted(groups.items(), key=lambda item: (item[0] == UNKNOWN_PLATFORM, item[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "summary_version": 1,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "status": self.status,
            "counts": dict(self.counts),
            "rows": [{k: v for k, v in asdict(row).items() if k not in MARKS or v is not None} for row in self.rows],
        }


def _text(value: Any) -> str | None:
    return one_line(value, 80) if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _planned(case: str, run_params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters of a case that has no usable result, from what the run asked for it."""
    return {
        "precision": _text(run_params.get("precision")),
        "mode": case_mode(case),
        "batch_size": _int(run_params.get("batch_size")),
    }


def _meaningful(result: Mapping[str, Any], kpi: Mapping[str, Any]) -> bool:
    """Accuracy means something unless the payload says it does not or the model was synthetic."""
    source = result.get("provenance", {}).get("model", {}).get("source")
    return kpi.get("accuracy_meaningful") is not False and source != "synthetic"


def _isa_mismatch(result: Mapping[str, Any]) -> str | None:
    mismatch = result.get("isa_mismatch")
    if not mismatch:
        return None
    missing = mismatch.get("missing") if isinstance(mismatch, Mapping) else None
    flags = [one_line(str(m), 40) for m in missing] if isinstance(missing, list) else []
    return ", ".join(flags) or "unstated"


def _accuracy_flag(result: Mapping[str, Any]) -> str | None:
    guard = result.get("accuracy_guard")
    if not isinstance(guard, Mapping) or guard.get("flagged") is not True:
        return None
    drop, fp32 = guard.get("drop_points"), guard.get("fp32_accuracy")
    if isinstance(drop, (int, float)) and isinstance(fp32, (int, float)):
        return f"{drop:.2f} points below fp32 ({fp32:.2f}%)"
    return "more than 1 point below fp32"


def make_row(record: Record, run_params: Mapping[str, Any], host_platform: Mapping[str, Any]) -> Row:
    result = record.result or {}
    platform = result.get("platform") or host_platform
    params = result.get("params") or _planned(record.case, run_params)
    kpi = (result.get("kpi") or {}) if record.status == "passed" else {}
    latency = kpi.get("latency_ms") or {}
    absurd = absurd_value(kpi.get("throughput"), latency)
    status, reason = ("failed", f"absurd value, not reported: {absurd}") if absurd else (record.status, record.reason)
    if absurd:
        kpi, latency = {}, {}
    accuracy = kpi.get("accuracy")
    return Row(
        platform=one_line(platform.get("name") or "", 40) or UNKNOWN_PLATFORM,
        host=record.host,
        case=record.case,
        cpu_model=one_line(platform.get("model_name") or "", 80),
        precision=params.get("precision"),
        mode=params.get("mode"),
        batch_size=params.get("batch_size"),
        throughput=kpi.get("throughput"),
        latency_p50_ms=latency.get("p50"),
        latency_p90_ms=latency.get("p90"),
        latency_p99_ms=latency.get("p99"),
        accuracy=accuracy,
        accuracy_meaningful=None if accuracy is None else _meaningful(result, kpi),
        status=status,
        reason=reason,
        isa_mismatch=_isa_mismatch(result),
        accuracy_flag=_accuracy_flag(result) if status == "passed" else None,
        out_of_bounds=absurd or None,
    )


def _run_status(rows: tuple[Row, ...]) -> str:
    ok = bool(rows) and all(row.status == "passed" or (row.status == "skipped" and row.reason) for row in rows)
    return "complete" if ok else "partial"


def build_summary(run: Run, records: list[Record], host_platforms: Mapping[str, Mapping[str, Any]]) -> Summary:
    rows = tuple(make_row(r, run.params.get(r.host, {}).get(r.case, {}), host_platforms.get(r.host, {}))
                 for r in records)
    return Summary(
        run_id=run.run_id,
        started_at=_text(run.started_at),
        status=_run_status(rows),
        counts={status: sum(row.status == status for row in rows) for status in STATUSES},
        rows=rows,
    )


def summarize(run_dir: Path) -> Summary:
    """Read and check a run folder (RunError when it is not one) and summarise it."""
    run = load_run(run_dir)
    records = load_records(run_dir, run)
    platforms = {host: load_platform(run.host_dir(run_dir, host)) for host in run.hosts}
    return build_summary(run, records, platforms)
