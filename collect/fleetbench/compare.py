"""Run vs run: ``fleetbench compare RUN_A RUN_B``.

Each RUN is a run id in the history database or a run folder (read, not stored). For every host x case
included in both runs it shows each KPI in A and B, the change, and the noise band: a change inside the
band is noise; one beyond it is marked ``better`` or ``WORSE``. The band is the change two single runs
must exceed given the noise of that host and measurement (case, precision, batch size, setting: see
:mod:`fleetbench.setting`) in the history (see
:func:`fleetbench.stats.band`; an assumed noise of ``stats.DEFAULT_NOISE`` when the history is shorter than
``stats.MIN_HISTORY`` runs, marked ``*``). For a meaningful accuracy the band is ``stats.ACCURACY_DROP``
points. A host x case whose A and B are not the same measurement (another sequence length, backend, ...)
is listed, not compared. Exit status: 0, or 2 when a run cannot be found or the database cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from fleetbench import db, stats
from fleetbench.db import Database, DatabaseError
from fleetbench.helptext import plain
from fleetbench.history import EXCLUDED_LABELS, KPIS, Filters, Kpi, Sample, load_samples, per_run, read_run
from fleetbench.render import fmt_number, text_table
from fleetbench.results import RunError
from fleetbench.setting import differences


@dataclass(frozen=True)
class Delta:
    host: str
    case: str
    precision: str
    kpi: Kpi
    a: float
    b: float
    change: float  # relative; accuracy: points
    band: float
    assumed: bool  # the band comes from an assumed noise, not from history
    mark: str  # "better", "WORSE" or ""


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    deltas: tuple[Delta, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    excluded: tuple[str, ...]


def load_run_samples(database: Database, ref: str) -> list[Sample]:
    """A run's records, from its folder when `ref` is one, else from the database (LookupError if neither)."""
    path = Path(ref)
    if path.is_dir():
        return read_run(path).samples()
    samples = load_samples(database, Filters(run_ids=(ref,)))
    if not samples:
        raise LookupError(f"{ref}: not a run folder, and no run with that id in the database")
    return samples


def _delta(a: Sample, b: Sample, kpi: Kpi, va: float, vb: float, history: list[float]) -> Delta:
    if kpi.name == "accuracy":
        change, band, assumed = vb - va, stats.ACCURACY_DROP, False
        moved = abs(change) >= band
    else:
        change, band, assumed = vb / va - 1, stats.band(history), len(history) < stats.MIN_HISTORY
        moved = abs(change) > band
    mark = ("better" if (change > 0) == kpi.higher_is_better else "WORSE") if moved else ""
    return Delta(a.host, a.case, a.precision or "-", kpi, va, vb, change, band, assumed, mark)


def _series_key(s: Sample) -> tuple[object, ...]:
    return s.host, *s.measurement


def _mismatch(a: Sample, b: Sample) -> str:
    """Why A and B of one host x case are not the same measurement ("" when they are)."""
    parts = [f"{name} {x} / {y}" for name, x, y in (("precision", a.precision, b.precision),
                                                    ("batch", a.batch_size, b.batch_size)) if x != y]
    return "; ".join([*parts, differences(a.setting, b.setting)] if a.setting != b.setting else parts)


def compare(database: Database, ref_a: str, ref_b: str) -> Comparison:
    side_a, side_b = load_run_samples(database, ref_a), load_run_samples(database, ref_b)
    a_by = {(s.host, s.case): s for s in side_a}
    b_by = {(s.host, s.case): s for s in side_b}
    runs = {side_a[0].run_id, side_b[0].run_id}
    history = [s for s in load_samples(database) if s.run_id not in runs]
    series = {name: per_run(history, _series_key, name) for name in KPIS}
    deltas, excluded = [], []
    for key in [k for k in a_by if k in b_by]:
        a, b = a_by[key], b_by[key]
        if not (a.included and b.included):
            excluded.append(f"{key[0]} {key[1]}: " + "; ".join(
                f"{side} {EXCLUDED_LABELS[s.excluded]}: {s.reason}" for side, s in (("A", a), ("B", b))
                if s.excluded))
            continue
        if mismatch := _mismatch(a, b):
            excluded.append(f"{key[0]} {key[1]}: not the same measurement (A / B: {mismatch})")
            continue
        for name in KPIS:
            va, vb = a.value(name), b.value(name)
            if va is not None and vb is not None:
                past = [v for _, v in series[name].get(_series_key(b), [])]
                deltas.append(_delta(a, b, KPIS[name], va, vb, past))
    return Comparison(side_a[0].run_id, side_b[0].run_id, tuple(deltas),
                      tuple(f"{h} {c}" for h, c in a_by if (h, c) not in b_by),
                      tuple(f"{h} {c}" for h, c in b_by if (h, c) not in a_by), tuple(excluded))


def _fmt_change(d: Delta) -> str:
    return f"{d.change:+.2f} pt" if d.kpi.name == "accuracy" else f"{100 * d.change:+.1f}%"


def _fmt_band(d: Delta) -> str:
    return f"±{d.band:.2f} pt" if d.kpi.name == "accuracy" else f"±{100 * d.band:.1f}%{'*' if d.assumed else ''}"


def render_text(c: Comparison) -> str:
    headers = ("host", "case", "precision", "KPI", "A", "B", "change", "noise band", "")
    rows = [[d.host, d.case, d.precision, f"{d.kpi.label} ({d.kpi.unit})", fmt_number(d.a), fmt_number(d.b),
             _fmt_change(d), _fmt_band(d), d.mark] for d in c.deltas]
    parts = [f"fleetbench compare: A = {c.run_a}, B = {c.run_b}"]
    parts.append(text_table(headers, rows, frozenset({4, 5, 6, 7})) if rows else "No KPI to compare.")
    if any(d.assumed for d in c.deltas):
        parts.append(f"* fewer than {stats.MIN_HISTORY} earlier runs: band from an assumed "
                     f"{100 * stats.DEFAULT_NOISE:.0f}% noise")
    for label, items in (("Only in A", c.only_a), ("Only in B", c.only_b), ("Not compared", c.excluded)):
        if items:
            parts.append(f"{label}:\n" + "\n".join(f"  {item}" for item in items))
    moved = sum(bool(d.mark) for d in c.deltas)
    parts.append(f"{moved} of {len(c.deltas)} KPIs moved beyond the noise band "
                 f"({sum(d.mark == 'WORSE' for d in c.deltas)} worse).")
    return "\n\n".join(parts) + "\n"


def run(args: argparse.Namespace) -> int:
    try:
        with db.opened(args.db) as database:
            comparison = compare(database, args.run_a, args.run_b)
    except (DatabaseError, LookupError, RunError) as err:
        print(f"fleetbench compare: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(comparison))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("compare", help="KPI changes between two runs, with the noise band",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", metavar="RUN_A", help="run id in the database, or a run folder")
    parser.add_argument("run_b", metavar="RUN_B", help="run id in the database, or a run folder")
    db.add_argument(parser)
    parser.set_defaults(func=run)
