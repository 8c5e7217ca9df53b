"""HTML report: ``fleetbench html``, one self-contained file (inline CSS and SVG, no script, opens offline).

Two parts, from templates/report.html.j2:

- the run (the newest, or --run): its records, and per case the median throughput and latency (p50 bar,
  p99 whisker) per platform and precision over the run's hosts;
- the history (the same filters as ``fleetbench table``): the comparison table, and per measurement (case x
  precision x batch size x setting) a trend line per platform of the case's headline KPI (median over hosts
  per run), with the change points found by :func:`fleetbench.stats.change_points` marked.

Records of different settings (:mod:`fleetbench.setting`) never share a bar, a line or a cell; a chart title
names the parts of its setting that differ between the charts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetbench import atomic, db, stats
from fleetbench.db import Database, DatabaseError
from fleetbench.helptext import plain
from fleetbench.history import KPIS, MODE_KPIS, Filters, Sample, load_samples, newest_run, now_utc, per_run
from fleetbench.plots import Chart, bar_chart, trend_chart
from fleetbench.render import environment, fmt_number
from fleetbench.runs import default_results_dir
from fleetbench.setting import Setting, varying
from fleetbench.tables import Table, build_table, filters_from, fmt_accuracy, fmt_speedup, fmt_spread, precision_order
from fleetbench.tables import add_filter_arguments as add_table_filters

DEFAULT_NAME = "report.html"


@dataclass(frozen=True)
class RunPart:
    run_id: str
    started_at: str
    records: tuple[Sample, ...]
    charts: tuple[Chart, ...]
    varying: tuple[str, ...]  # setting parts that differ between the run's records


@dataclass(frozen=True)
class HistoryPart:
    table: Table
    runs: int
    charts: tuple[Chart, ...]


def _titled(title: str, setting: Setting, parts: tuple[str, ...]) -> str:
    return f"{title} ({setting.label(parts)})" if parts else title


def _median_of(members: Sequence[Sample], kpi: str, platform: str, precision: str) -> float | None:
    values = [v for s in members if (s.platform, s.precision or "-") == (platform, precision)
              and (v := s.value(kpi)) is not None]
    return stats.median(values) if values else None


def _run_charts(records: Sequence[Sample], parts: tuple[str, ...]) -> list[Chart]:
    charts = []
    for case, setting in dict.fromkeys((s.case, s.setting) for s in records if s.included):
        members = [s for s in records if (s.case, s.setting) == (case, setting) and s.included]
        precisions = sorted({s.precision or "-" for s in members}, key=precision_order)
        platforms = sorted({s.platform for s in members})
        for kpi, whisker, label in (("throughput", None, "throughput"), ("latency_p50", "latency_p99", "latency")):
            values: dict[str, dict[str, tuple[float, float | None]]] = {}
            for platform in platforms:
                for precision in precisions:
                    value = _median_of(members, kpi, platform, precision)
                    if value is not None:
                        extra = _median_of(members, whisker, platform, precision) if whisker else None
                        values.setdefault(platform, {})[precision] = (value, extra)
            if values:
                title = _titled(f"{case}: {label}", setting, parts) + (" (bar p50, whisker p99)" if whisker else "")
                charts.append(bar_chart(title, KPIS[kpi].unit, values, precisions))
    return charts


def _headline(mode: str | None) -> str:
    return (MODE_KPIS.get(mode or "") or ("accuracy",))[0]


def _chart_order(item: tuple[tuple[str, str, int | None, Setting], str | None]) -> tuple[object, ...]:
    (case, precision, batch, setting), mode = item
    return case, batch or 0, setting.sort_key(), precision_order(precision), precision, mode or ""


def _trend_charts(samples: Sequence[Sample]) -> list[Chart]:
    runs = list({s.run_id: s.started_at for s in samples}.items())
    index = {run_id: i for i, (run_id, _) in enumerate(runs)}
    charts = []
    measured = {(s.measurement, s.mode) for s in samples if s.included}
    parts = varying(m[-1] for m, _ in measured)
    for measurement, mode in sorted(measured, key=_chart_order):
        case, precision, batch, setting = measurement
        kpi = _headline(mode)
        chosen = [s for s in samples if (s.measurement, s.mode) == (measurement, mode)]
        series = per_run(chosen, lambda s: s.platform, kpi)
        if not series:
            continue
        lines = {p: [(index[r], v) for r, v in points] for p, points in sorted(series.items())}
        changes = {p: [points[i][0] for i in stats.change_points([v for _, v in points])]
                   for p, points in lines.items()}
        title = _titled(f"{case} {precision} batch {batch or '-'}", setting, parts) + f": {KPIS[kpi].label} per run"
        charts.append(trend_chart(title, KPIS[kpi].unit, runs, lines, changes))
    return charts


def build(database: Database, filters: Filters, reference: str | None, run_id: str | None) -> dict[str, Any]:
    """Everything the template shows (LookupError for an unknown run)."""
    history = load_samples(database, filters)
    run_id = run_id or newest_run(database)
    run_part = None
    if run_id is not None:
        records = load_samples(database, Filters(run_ids=(run_id,)))
        if not records:
            raise LookupError(f"no run {run_id!r} in the database")
        parts = varying(s.setting for s in records)
        run_part = RunPart(run_id, records[0].started_at, tuple(records), tuple(_run_charts(records, parts)), parts)
    table = build_table(history, reference, filters.describe())
    history_part = HistoryPart(table, len({s.run_id for s in history}), tuple(_trend_charts(history)))
    return {"run": run_part, "history": history_part, "generated": now_utc(), "database": db.describe(database.url)}


def render(context: dict[str, Any]) -> str:
    env = environment()
    env.filters.update(spread=fmt_spread, speedup=fmt_speedup, table_accuracy=fmt_accuracy, num=fmt_number)
    return env.get_template("report.html.j2").render(**context)


def run(args: argparse.Namespace) -> int:
    output = args.output or default_results_dir() / DEFAULT_NAME
    try:
        with db.opened(args.db, existing=True) as database:
            context = build(database, filters_from(args), args.reference_platform, args.run)
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(output, render(context))
    except (DatabaseError, LookupError, ValueError, OSError) as err:
        print(f"fleetbench html: {err}", file=sys.stderr)
        return 2
    print(f"fleetbench html: wrote {output}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("html", help="self-contained HTML report: a run and the history, with plots",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", metavar="RUN_ID", help="the run to show (default: the newest in the database)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help=f"where to write it (default: results/{DEFAULT_NAME})")
    add_table_filters(parser)
    parser.set_defaults(func=run)
