"""Per-platform comparison tables: ``fleetbench table``.

One row per platform x precision x case x batch size x setting (:mod:`fleetbench.setting`: records that
differ in sequence length, backend, instance layout, model, ... are never one cell), from the included
records of the history (see :mod:`fleetbench.history`): each KPI cell is the median over those records
with its min-max range, and ``n`` says how many records (host x run) and runs are behind it. Speed-ups are
ratios of median throughputs: over the same platform's avx_fp32 row, and over the reference platform's row
of the same precision, both of the same setting. The parts of the setting that differ between rows are a
column; the parts all rows share are said once, under the table. Accuracy is aggregated only where it is
meaningful. The table says how many records were excluded and why.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from fleetbench import atomic, db
from fleetbench.db import DatabaseError
from fleetbench.helptext import plain
from fleetbench.history import EXCLUDED_LABELS, Filters, Sample, describe_excluded, excluded_counts, load_samples
from fleetbench.params import PRECISIONS
from fleetbench.render import environment, fmt_number
from fleetbench.setting import PARTS, Setting, varying
from fleetbench.stats import median
from fleetbench.summary import UNKNOWN_PLATFORM

BASELINE_PRECISION = "avx_fp32"
FORMATS = ("md", "csv", "html")


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class TableRow:
    platform: str
    precision: str
    case: str
    batch_size: int | None
    setting: Setting
    setting_label: str  # the parts of the setting that differ between the table's rows
    records: int
    runs: int
    throughput: Spread | None
    latency_p50: Spread | None
    latency_p99: Spread | None
    accuracy: Spread | None
    accuracy_not_meaningful: bool  # accuracy was measured, but only by a random-weights model
    speedup_fp32: float | None
    speedup_reference: float | None


@dataclass(frozen=True)
class Table:
    rows: tuple[TableRow, ...]
    reference: str | None
    filters: str
    total: int
    excluded: dict[str, int]
    accuracy_not_meaningful: int  # included records whose accuracy stays out of the accuracy column
    varying: tuple[str, ...] = ()  # setting parts that differ between rows (fleetbench.setting.PARTS)

    @property
    def setting_note(self) -> str:
        """What every row measured, as far as the rows agree."""
        shared = [p for p in PARTS if p not in self.varying]
        if not self.rows or not shared:
            return ""
        return f"Setting of every row: {self.rows[0].setting.label(shared)}."

    @property
    def excluded_note(self) -> str:
        if not self.excluded:
            return f"All {self.total} records matching the filters are included."
        n = sum(self.excluded.values())
        return f"Excluded {n} of {self.total} records: {describe_excluded(self.excluded)}."

    @property
    def accuracy_note(self) -> str:
        if not self.accuracy_not_meaningful:
            return ""
        return (f"Accuracy of {self.accuracy_not_meaningful} records is not meaningful (random-weights model): "
                "not in the accuracy column (n/m).")


def _ratio(row: Spread | None, base: Spread | None) -> float | None:
    return row.median / base.median if row and base and base.median > 0 else None


def precision_order(precision: str) -> int:
    """Precisions in the order fleetbench lists them (fp32 first), unknown ones last."""
    return PRECISIONS.index(precision) if precision in PRECISIONS else len(PRECISIONS)


RowKey = tuple[str, str, str, int | None, Setting]  # platform, then Sample.measurement


def _sort_key(key: RowKey) -> tuple[object, ...]:
    platform, case, precision, batch, setting = key
    return (platform == UNKNOWN_PLATFORM, platform, case, batch or 0, setting.sort_key(),
            precision_order(precision), precision)


def build_table(samples: Iterable[Sample], reference: str | None = None, filters: str = "none") -> Table:
    samples = list(samples)
    groups: dict[RowKey, list[Sample]] = {}
    for s in samples:
        if s.included:
            groups.setdefault((s.platform, *s.measurement), []).append(s)
    varying_parts = varying(key[-1] for key in groups)

    def spread(members: list[Sample], kpi: str) -> Spread | None:
        return Spread.of([v for s in members if (v := s.value(kpi)) is not None])

    cells = {key: {k: spread(m, k) for k in ("throughput", "latency_p50", "latency_p99", "accuracy")}
             for key, m in groups.items()}
    rows = []
    for key in sorted(groups, key=_sort_key):
        platform, case, precision, batch, setting = key
        members, own = groups[key], cells[key]
        fp32 = cells.get((platform, case, BASELINE_PRECISION, batch, setting), {}).get("throughput")
        ref = cells.get((reference, case, precision, batch, setting), {}).get("throughput") if reference else None
        rows.append(TableRow(
            platform=platform, precision=precision, case=case, batch_size=batch, setting=setting,
            setting_label=setting.label(varying_parts) if varying_parts else "", records=len(members),
            runs=len({s.run_id for s in members}), throughput=own["throughput"], latency_p50=own["latency_p50"],
            latency_p99=own["latency_p99"], accuracy=own["accuracy"],
            accuracy_not_meaningful=own["accuracy"] is None and any(s.accuracy is not None for s in members),
            speedup_fp32=_ratio(own["throughput"], fp32), speedup_reference=_ratio(own["throughput"], ref)))
    not_meaningful = sum(s.included and s.accuracy is not None and not s.accuracy_meaningful for s in samples)
    return Table(tuple(rows), reference, filters, len(samples), excluded_counts(samples), not_meaningful,
                 varying_parts)


# -- rendering -------------------------------------------------------------------------------------------


def fmt_spread(spread: Spread | None) -> str:
    if spread is None:
        return "-"
    if spread.n == 1:
        return fmt_number(spread.median)
    return f"{fmt_number(spread.median)} ({fmt_number(spread.low)}–{fmt_number(spread.high)})"


def fmt_speedup(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_accuracy(row: TableRow) -> str:
    return "n/m" if row.accuracy_not_meaningful else fmt_spread(row.accuracy)


def render(table: Table, fmt: str) -> str:
    if fmt == "csv":
        return render_csv(table)
    env = environment()
    env.filters.update(spread=fmt_spread, speedup=fmt_speedup, table_accuracy=fmt_accuracy)
    return env.get_template(f"table.{fmt}.j2").render(table=table, labels=EXCLUDED_LABELS)


SETTING_FIELDS = tuple(f.name for f in fields(Setting))


def _csv_value(value: object) -> object:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else value


def _csv_spread(spread: Spread | None) -> list[str]:
    return ["", "", ""] if spread is None else [repr(spread.median), repr(spread.low), repr(spread.high)]


def render_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    kpis = ("throughput", "latency_p50_ms", "latency_p99_ms", "accuracy")
    ref = table.reference or "reference"
    writer.writerow(["platform", "precision", "case", "batch_size", *SETTING_FIELDS, "records", "runs",
                     *(f"{k}_{part}" for k in kpis for part in ("median", "min", "max")), "accuracy_meaningful",
                     f"speedup_vs_{BASELINE_PRECISION}", f"speedup_vs_{ref}"])
    for r in table.rows:
        writer.writerow([r.platform, r.precision, r.case, "" if r.batch_size is None else r.batch_size,
                         *(_csv_value(getattr(r.setting, name)) for name in SETTING_FIELDS), r.records,
                         r.runs, *_csv_spread(r.throughput), *_csv_spread(r.latency_p50), *_csv_spread(r.latency_p99),
                         *_csv_spread(r.accuracy), "false" if r.accuracy_not_meaningful else "",
                         "" if r.speedup_fp32 is None else repr(r.speedup_fp32),
                         "" if r.speedup_reference is None else repr(r.speedup_reference)])
    return out.getvalue()


# -- command ---------------------------------------------------------------------------------------------


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="DATE", help="runs started on or after (2025-01-31 or an ISO time)")
    parser.add_argument("--until", metavar="DATE", help="runs started on or before (a date covers its whole day)")
    parser.add_argument("--group", help="hosts in this inventory group (or of this platform when a host had none)")
    parser.add_argument("--stack", help="stack label containing this text, e.g. 'ipex 2.8'")
    parser.add_argument("--case", help="one case, e.g. inference-throughput")
    parser.add_argument("--reference-platform", metavar="PLATFORM", help="speed-up column against this platform")
    db.add_argument(parser)


def filters_from(args: argparse.Namespace) -> Filters:
    return Filters(since=args.since, until=args.until, group=args.group, stack=args.stack, case=args.case)


def load_table(args: argparse.Namespace) -> Table:
    """The table the filter arguments select (DatabaseError, ValueError for a bad date)."""
    filters = filters_from(args)
    with db.opened(args.db, existing=True) as database:
        samples = load_samples(database, filters)
    return build_table(samples, args.reference_platform, filters.describe())


def run(args: argparse.Namespace) -> int:
    try:
        table = load_table(args)
        for path in args.output:
            fmt = path.suffix.lstrip(".").lower()
            if fmt not in FORMATS:
                raise ValueError(f"{path}: name the file .md, .csv or .html")
            atomic.write_text(path, render(table, fmt))
    except (DatabaseError, ValueError, OSError) as err:
        print(f"fleetbench table: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render(table, args.format))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("table", help="per-platform comparison table from the history",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_filter_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="md", help="what to print (default: md)")
    parser.add_argument("-o", "--output", type=Path, action="append", default=[], metavar="FILE",
                        help="also write FILE (.md, .csv or .html); may be repeated")
    parser.set_defaults(func=run)
