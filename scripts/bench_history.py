#!/usr/bin/env python3
"""Benchmark the history: ingest, table and check on 1,000 runs x 20 cases (SQLite), and check's false alarms.

Not a test. Run from the repo root: .venv/bin/python scripts/bench_history.py [--runs 1000] [--keep DIR]

1. Generates 1,000 nightly run folders of 20 records each (4 hosts: 2 SPR, 1 EMR, 1 ICX x 5 cases; the
   precision cycles through the five; 3% Gaussian noise; ICX skips the AMX precisions) and times
   `ingest` (all runs, one transaction each), `table`, `check` and `html` on the resulting SQLite file.
2. False alarms: 100 noise-only series (30 nightly runs, 3% noise, no step) in one database, judged by
   `check` on the newest run; and the same series checked every night from the 6th run on.
3. Power, for reference: 100 series with a 10% step down 10 runs before the newest (3% noise).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleetbench import stats  # noqa: E402
from fleetbench.check import check  # noqa: E402
from fleetbench.cli import main  # noqa: E402
from fleetbench.db import Database  # noqa: E402
from fleetbench.history import ingest_one, load_samples  # noqa: E402
from fleetbench.params import PRECISIONS  # noqa: E402
from tests.history.synth import Rec, night, run_id, write_run  # noqa: E402

HOSTS = {"spr-1": ("SPR", 1000.0), "spr-2": ("SPR", 1000.0), "emr-1": ("EMR", 1150.0), "icx-1": ("ICX", 600.0)}
CASES = ("inference-throughput", "inference-latency", "inference-accuracy", "inference-throughput-gated",
         "inference-latency-gated")
SPEED = {"avx_fp32": 1.0, "avx_int8": 2.1, "amx_int8": 4.0, "amx_bfloat16": 3.2, "amx_bfloat32": 1.6}
NOISE = 0.03


def timed(label: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = fn()
    print(f"  {label:<44} {time.perf_counter() - start:8.2f} s")
    return result


def night_records(i: int, rng: random.Random) -> list[Rec]:
    precision = PRECISIONS[i % len(PRECISIONS)]
    recs = []
    for host, (platform, base) in HOSTS.items():
        for case in CASES:
            if platform == "ICX" and precision.startswith("amx"):
                recs.append(Rec(host, platform, case, precision, status="skipped",
                                reason=f"precision {precision} needs amx_tile, which this host (ICX) lacks"))
                continue
            tput = base * SPEED[precision] * (1 + rng.gauss(0, NOISE))
            accuracy = 91.06 + rng.choice((-0.11, 0.0, 0.11)) if "accuracy" in case else None
            recs.append(Rec(host, platform, case, precision, batch_size=100 if "accuracy" in case else 1,
                            throughput=tput, p50=1000 / tput, p99=1300 / tput, accuracy=accuracy))
    return recs


def bench_large(root: Path, runs: int) -> None:
    rng = random.Random(1)  # noqa: S311 - reproducible noise, not secrets
    results = root / "results"
    print(f"History of {runs} runs x {len(HOSTS) * len(CASES)} records (SQLite, {root}):")
    run_dirs = timed("generate run folders", lambda: [
        write_run(results, run_id(i), night(i).isoformat(), night_records(i, rng)) for i in range(runs)])
    url = str(results / "fleetbench.sqlite")
    database = Database(url)
    timed(f"ingest {runs} runs (in-process, one transaction each)",
          lambda: [ingest_one(database, d) for d in run_dirs])
    timed("re-ingest the newest run (unchanged)", lambda: ingest_one(database, run_dirs[-1]))
    database.close()
    timed("fleetbench table (all history, Markdown)", lambda: main(["table", "--db", url]))
    timed("fleetbench table --case inference-throughput", lambda: main(["table", "--db", url, "--case",
                                                                         "inference-throughput"]))
    timed("fleetbench check (newest run, by host)", lambda: main(["check", "--db", url]))
    timed("fleetbench check --by platform", lambda: main(["check", "--db", url, "--by", "platform"]))
    timed("fleetbench html (run + history + trends)", lambda: main(["html", "--db", url, "-o",
                                                                    str(root / "report.html")]))
    print(f"  database size: {Path(url).stat().st_size / 1e6:.1f} MB")


def series_history(root: Path, n_series: int, step_at: int | None, seed: int) -> tuple[Database, str]:
    """n_series hosts x one case over 30 nights, 3% noise, an optional 10% step down from night step_at."""
    rng = random.Random(seed)  # noqa: S311 - reproducible noise, not secrets
    database = Database(str(root / f"series-{seed}.sqlite"))
    results = root / f"series-{seed}"
    for i in range(30):
        factor = 0.9 if step_at is not None and i >= step_at else 1.0
        recs = [Rec(f"host-{h:03d}", "SPR", throughput=1000 * factor * (1 + rng.gauss(0, NOISE)))
                for h in range(n_series)]
        ingest_one(database, write_run(results, run_id(i), night(i).isoformat(), recs))
    return database, run_id(29)


def bench_alarms(root: Path) -> None:
    print("\nfleetbench check on 100 noise-only series (30 nightly runs, 3% Gaussian noise, no step):")
    database, newest = series_history(root, 100, None, seed=7)
    samples = load_samples(database)
    report = check(samples, newest)
    alarms = [f for f in report.findings if f.verdict.kind in ("regression", "improvement")]
    print(f"  newest run judged: {len(alarms)} of {len(report.findings)} series raised "
          f"(false-alarm rate {len(alarms) / len(report.findings):.1%})")
    nightly = 0
    per_night = 0
    for s in range(100):
        values = [v for _, v in _series(samples, f"host-{s:03d}")]
        raised = [stats.judge(values[:t], True).kind in ("regression", "improvement") for t in range(6, 31)]
        nightly += any(raised)
        per_night += sum(raised)
    print(f"  checked every night from run 6 to 30 (2,500 checks): {per_night} alarms "
          f"({per_night / 2500:.2%} per check); {nightly} of 100 series raised at least once")
    database.close()

    print("\nPower: 100 series with a 10% step down 10 runs before the newest (3% noise):")
    database, newest = series_history(root, 100, 20, seed=8)
    report = check(load_samples(database), newest)
    found = sum(f.verdict.kind == "regression" for f in report.findings)
    print(f"  regressions found: {found} of {len(report.findings)}")
    database.close()


def _series(samples: list[Any], host: str) -> list[tuple[str, float]]:
    return [(s.run_id, s.throughput) for s in samples if s.host == host]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetbench-bench-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        bench_large(root, args.runs)
        bench_alarms(root)


if __name__ == "__main__":
    main_bench()
