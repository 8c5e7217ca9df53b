"""Report a run: ``fleetbench report RUN_DIR``.

Reads every host x case that the run's run.json names (results checked as untrusted input, see
:mod:`fleetbench.results`), writes summary.json, kpi.csv and report.md into RUN_DIR (each atomically),
and prints one table per platform followed by the Key KPI block(s) in the reference workload's format.

Exit status: 0 when the run is complete (every case passed or was skipped with a reason), 1 when it is
partial (any case failed, timed out, was unreachable or has no usable result), 2 when there is nothing to
report (RUN_DIR missing or not a run folder: run.json missing or invalid) or the report cannot be written
(a full disk is named as such; files already written keep their previous or their complete new content).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fleetbench import atomic
from fleetbench.helptext import plain
from fleetbench.render import render_csv, render_markdown, render_text
from fleetbench.results import RunError
from fleetbench.summary import Summary, summarize

RUN_DIR_HINT = "pass the folder a run wrote, e.g. results/latest or results/<run_id>"


def write_report(run_dir: str | Path) -> Summary:
    """Summarise RUN_DIR and write summary.json, kpi.csv and report.md into it; RunError if it is not a run."""
    run_dir = Path(run_dir)
    summary = summarize(run_dir)
    atomic.write_text(run_dir / "summary.json", json.dumps(summary.to_json(), indent=2, allow_nan=False) + "\n")
    atomic.write_text(run_dir / "kpi.csv", render_csv(summary))
    atomic.write_text(run_dir / "report.md", render_markdown(summary))
    return summary


def run(args: argparse.Namespace) -> int:
    try:
        summary = write_report(args.run_dir)
    except RunError as err:
        print(f"fleetbench report: {err}: {RUN_DIR_HINT}.", file=sys.stderr)
        return 2
    except atomic.NoSpace as err:
        print(f"fleetbench report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"fleetbench report: cannot write the report into {args.run_dir}: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(summary))
    return 0 if summary.complete else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("report", help="tabulate a run's results and write its report files",
                                   description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="the run folder, e.g. results/latest or results/<run_id>")
    parser.set_defaults(func=run)
