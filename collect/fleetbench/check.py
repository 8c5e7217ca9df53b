"""Regression check for nightly runs: ``fleetbench check``.

Judges the newest run (or --run) against the history of the same host (or, with --by platform, the median
of the platform's hosts per run), case, precision, batch size, setting (sequence length, backend, instance
layout, model, ...: see :mod:`fleetbench.setting`) and stack, over the last --window runs; a run is never
judged against the history of another setting:

- performance KPIs (throughput; latency p50 and p99 in latency mode): change-point detection on medians
  (:func:`fleetbench.stats.judge`): a new level that started within the last --recent runs, differs from
  the level before it by at least --min-effect and by MIN_SCORE standard errors of the series' own noise.
  The newest level is then a regression or an improvement.
- accuracy (only where meaningful): a drop of --accuracy-drop points or more below the median of the
  earlier runs is always a regression.

Series with fewer than MIN_HISTORY earlier runs are reported as such, not judged. Excluded records (failed,
skipped, invalid, ...) are never judged, and never part of a baseline. Exit status: 0 no regression,
1 at least one regression, 2 nothing to check (empty database, unknown run) or the database cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from fleetbench import db, stats
from fleetbench.db import DatabaseError
from fleetbench.helptext import plain
from fleetbench.history import KPIS, Kpi, Sample, describe_excluded, excluded_counts, load_samples, newest_run, per_run
from fleetbench.render import fmt_number
from fleetbench.setting import Setting

BY = ("host", "platform")
# host or platform, case, precision, batch size, setting, stack
SeriesKey = tuple[str, str, str, int | None, Setting, str]


@dataclass(frozen=True)
class Settings:
    by: str = "host"
    window: int = stats.WINDOW
    recent: int = stats.RECENT
    min_effect: float = stats.MIN_EFFECT
    accuracy_drop: float = stats.ACCURACY_DROP


@dataclass(frozen=True)
class Finding:
    key: SeriesKey
    kpi: Kpi
    verdict: stats.Verdict
    since_run: str | None


@dataclass(frozen=True)
class CheckReport:
    run_id: str
    settings: Settings
    findings: tuple[Finding, ...]
    excluded: dict[str, int]

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.verdict.kind == kind]

    @property
    def regressed(self) -> bool:
        return bool(self.of_kind("regression"))


def series_key(by: str) -> Callable[[Sample], SeriesKey]:
    def key(s: Sample) -> SeriesKey:
        return (s.host if by == "host" else s.platform), *s.measurement, s.stack

    return key


def check(samples: list[Sample], run_id: str, settings: Settings = Settings()) -> CheckReport:
    """Judge every series the run `run_id` has a value in; `samples` is the history, oldest run first."""
    target = [s for s in samples if s.run_id == run_id]
    if not target:
        raise LookupError(f"no run {run_id!r} in the database")
    until = (target[0].started_at, run_id)
    history = [s for s in samples if (s.started_at, s.run_id) <= until]
    key = series_key(settings.by)
    wanted = {(key(s), kpi) for s in target for kpi in s.kpis()}
    findings = []
    for name, kpi in KPIS.items():
        for k, points in per_run(history, key, name).items():
            if (k, name) not in wanted or points[-1][0] != run_id:
                continue
            values = [v for _, v in points]
            if name == "accuracy":
                verdict = stats.judge_accuracy(values, settings.window, settings.accuracy_drop)
            else:
                verdict = stats.judge(values, kpi.higher_is_better, settings.window, settings.recent,
                                      settings.min_effect)
            since = points[verdict.since][0] if verdict.since is not None else None
            findings.append(Finding(k, kpi, verdict, since))
    return CheckReport(run_id, settings, tuple(findings), excluded_counts(target))


def _describe(f: Finding) -> str:
    subject, case, precision, batch, setting, stack = f.key
    v = f.verdict
    what = (f"{subject} {case} {precision} batch {batch if batch is not None else '-'} "
            f"[{stack}; {setting.label()}] {f.kpi.label}")
    if v.before is None or v.change is None:
        return what
    change = f"{v.change:+.2f} points" if f.kpi.name == "accuracy" else f"{100 * v.change:+.1f}%"
    return (f"{what}: {fmt_number(v.before)} -> {fmt_number(v.after)} {f.kpi.unit} ({change})"
            f"{f', since run {f.since_run}' if f.since_run else ''}")


def render_text(report: CheckReport) -> str:
    s = report.settings
    lines = [f"fleetbench check: run {report.run_id} against the last {s.window} runs of the same {s.by}, case, "
             f"precision, batch size, setting and stack"]
    for kind, label in (("regression", "REGRESSION"), ("improvement", "improvement")):
        lines += [f"{label}: {_describe(f)}" for f in report.of_kind(kind)]
    counts = {kind: len(report.of_kind(kind)) for kind in ("regression", "improvement", "stable", "insufficient")}
    lines.append(f"Checked {len(report.findings)} series: {counts['regression']} regressions, "
                 f"{counts['improvement']} improvements, {counts['stable']} stable, {counts['insufficient']} with "
                 f"fewer than {stats.MIN_HISTORY} earlier runs (not judged).")
    if report.excluded:
        lines.append(f"Not checked: {sum(report.excluded.values())} records of the run "
                     f"({describe_excluded(report.excluded)}).")
    return "\n".join(lines) + "\n"


def _positive(kind: type[int] | type[float], minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    settings = Settings(args.by, args.window, args.recent, args.min_effect, args.accuracy_drop)
    try:
        with db.opened(args.db, existing=True) as database:
            run_id = args.run or newest_run(database)
            if run_id is None:
                raise LookupError("the database holds no run yet: `fleetbench ingest RUN_DIR` first")
            report = check(load_samples(database), run_id, settings)
    except (DatabaseError, LookupError) as err:
        print(f"fleetbench check: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(report))
    return 1 if report.regressed else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="find regressions of the newest run against the history",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", metavar="RUN_ID", help="the run to judge (default: the newest in the database)")
    parser.add_argument("--by", choices=BY, default="host", help="history of the same host (default) or platform")
    parser.add_argument("--window", type=_positive(int, stats.MIN_HISTORY + 1), default=stats.WINDOW,
                        help=f"runs to look back over (default {stats.WINDOW})")
    parser.add_argument("--recent", type=_positive(int, 1), default=stats.RECENT,
                        help=f"report a change that started within this many runs (default {stats.RECENT})")
    parser.add_argument("--min-effect", type=_positive(float, 0.001), default=stats.MIN_EFFECT,
                        help=f"smallest relative change reported (default {stats.MIN_EFFECT})")
    parser.add_argument("--accuracy-drop", type=_positive(float, 0.01), default=stats.ACCURACY_DROP,
                        help=f"accuracy points whose loss is a regression (default {stats.ACCURACY_DROP})")
    db.add_argument(parser)
    parser.set_defaults(func=run)
