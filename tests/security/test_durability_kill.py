"""Nothing is lost when the controller is killed: `fleetbench report` and `fleetbench ingest`, SIGKILLed at
random points again and again, leave each file and the database in its previous state or its complete new one.

A kill point is the N-th function call (Python or C) the command makes, N drawn at random from those a full
run makes; the process then SIGKILLs itself, as `kill -9` from outside would. Some kills are drawn over the
whole command, the others over the calls made from the module that writes (fleetbench.atomic: each temporary
file, write, fsync and rename; fleetbench.db: each statement, the commit), where a kill can do harm.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fleetbench.db import Database
from tests.history.conftest import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.history.synth import Rec, night, run_id, write_run

REPORT_FILES = ("summary.json", "kpi.csv", "report.md")
SEED = 20250101

# Runs `fleetbench ARGS...`, counting calls and SIGKILLing itself at the KILL_AT-th (0: never; the count is
# then written to KILL_COUNT). KILL_FROM "module:function": every call from that function's first call on;
# "module": only the calls made in that module (its functions, and the C functions they call).
_KILLABLE = """
import importlib, os, signal, sys
from pathlib import Path
from fleetbench.cli import main
module, _, name = os.environ["KILL_FROM"].partition(":")
module = importlib.import_module(module)
target = getattr(module, name).__code__ if name else None
kill_at, count, armed = int(os.environ["KILL_AT"]), 0, False
def hook(frame, event, arg):
    global count, armed
    if target is None:
        armed = frame.f_code.co_filename == module.__file__
    else:
        armed = armed or (event == "call" and frame.f_code is target)
    if armed:
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(hook)
code = main(sys.argv[1:])
sys.setprofile(None)
if not kill_at:
    Path(os.environ["KILL_COUNT"]).write_text(str(count))
sys.exit(code)
"""


def fleetbench_killed_at(args: list[str], kill_from: str, kill_at: int, count_file: Path | None = None) -> int:
    env = {**os.environ, "KILL_FROM": kill_from, "KILL_AT": str(kill_at), "KILL_COUNT": str(count_file or "")}
    return subprocess.run([sys.executable, "-c", _KILLABLE, *args], env=env, capture_output=True,
                          timeout=300).returncode


def kill_points(args: list[str], tmp_path: Path, plan: dict[str, int]) -> list[tuple[str, int]]:
    """(where counting starts, call number) for each kill: `plan` says how many kills start counting where."""
    rng = random.Random(SEED)
    points = []
    for kill_from, kills in plan.items():
        count_file = tmp_path / "calls"
        assert fleetbench_killed_at(args, kill_from, 0, count_file) in (0, 1)
        calls = int(count_file.read_text())
        assert calls > 20, f"{kill_from} was never reached"
        points += [(kill_from, rng.randint(1, calls)) for _ in range(kills)]
    return points


def fleet() -> list[Rec]:
    """A realistic run: 6 hosts on three platforms, 3 cases each, one skipped and one failed."""
    recs = [Rec(f"{p.lower()}-{i}", p, case=case, throughput=900.0 + 10 * i)
            for p in ("SPR", "EMR", "ICX") for i in (1, 2)
            for case in ("inference-throughput", "inference-latency", "inference-accuracy")]
    recs[7] = replace(recs[7], status="failed", reason="Segmentation fault")  # emr-1 latency
    recs[13] = replace(recs[13], status="skipped", reason="amx_bfloat16 needs AMX")  # icx-1 latency
    return [replace(r, accuracy=91.06) if r.mode == "accuracy" else r for r in recs]


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """results/ with run A, and run B twice: `old` lacks one result (a late host), `new` has it."""
    results = tmp_path / "results"
    recs = fleet()
    a = write_run(results, run_id(0), night(0).isoformat(), recs)
    new = write_run(results, run_id(1), night(1).isoformat(), recs)
    old = tmp_path / "old" / new.name
    shutil.copytree(new, old)
    (old / "hosts" / "icx-2" / "inference-accuracy" / "result.json").unlink()
    return {"a": a, "old": old, "new": new}


def _files(run_dir: Path) -> dict[str, bytes | None]:
    return {name: (run_dir / name).read_bytes() if (run_dir / name).exists() else None for name in REPORT_FILES}


def _set_files(run_dir: Path, files: dict[str, bytes | None]) -> None:
    for name, data in files.items():
        (run_dir / name).unlink(missing_ok=True)
        if data is not None:
            (run_dir / name).write_bytes(data)


def test_report_killed_anywhere_leaves_each_file_previous_or_complete(runs: dict[str, Path], tmp_path: Path):
    run_dir = runs["new"]
    assert fleetbench_killed_at(["report", str(runs["old"])], "fleetbench.cli:main", 0, tmp_path / "n") == 1
    previous = _files(runs["old"])
    results = {p: p.read_bytes() for p in run_dir.rglob("result.json")}
    args = ["report", str(run_dir)]
    points = kill_points(args, tmp_path, {"fleetbench.cli:main": 8, "fleetbench.atomic": 16})
    new = _files(run_dir)  # what the uninterrupted runs above wrote
    assert all(new.values()) and new != previous
    outcomes = []
    for i, (kill_from, call) in enumerate(points):
        before = previous if i % 3 else dict.fromkeys(REPORT_FILES)  # every third kill: no report yet
        _set_files(run_dir, before)
        code = fleetbench_killed_at(args, kill_from, call)
        after = _files(run_dir)
        for name in REPORT_FILES:
            assert after[name] in (before[name], new[name]), f"{name} is torn after a kill at {kill_from} #{call}"
        assert code in (-signal.SIGKILL, 1), code
        outcomes.append(sum(after[n] == new[n] for n in REPORT_FILES))
        litter = {p.name for p in run_dir.iterdir()} - {*REPORT_FILES, "run.json", "hosts"}
        assert all(n.startswith(tuple(f".{f}." for f in REPORT_FILES)) and n.endswith(".tmp") for n in litter), litter
    assert {p: p.read_bytes() for p in run_dir.rglob("result.json")} == results, "a collected result changed"
    print(f"report: kill points {[c for _, c in points]}; files already new at each kill: {outcomes}")
    assert fleetbench_killed_at(args, "fleetbench.cli:main", 0, tmp_path / "n") == 1
    assert _files(run_dir) == new


def snapshot(url: str) -> tuple[list[tuple], list[tuple]]:
    """What the database holds (runs and records), without the ingest time."""
    database = Database(url)
    try:
        return (database.rows("SELECT run_id, started_at, status, digest FROM runs ORDER BY run_id"),
                database.rows("SELECT run_id, host, case_name, status, reason, throughput, excluded, doc FROM records "
                              "ORDER BY run_id, host, case_name"))
    finally:
        database.close()


def _ingest_killed_anywhere(url: str, runs: dict[str, Path], tmp_path: Path, plan: dict[str, int]) -> None:
    from fleetbench.cli import main

    assert main(["ingest", "--db", url, str(runs["a"]), str(runs["old"])]) == 0
    previous = snapshot(url)
    args = ["ingest", "--db", url, str(runs["new"])]
    outcomes, points = [], kill_points(args, tmp_path, plan)
    for kill_from, call in points:
        assert main(["ingest", "--db", url, str(runs["old"])]) == 0  # back to the previous state
        assert snapshot(url) == previous
        code = fleetbench_killed_at(args, kill_from, call)
        assert code in (-signal.SIGKILL, 0), code
        outcomes.append(snapshot(url))
    assert main(["ingest", "--db", url, str(runs["new"])]) == 0
    new = snapshot(url)
    assert new[0] != previous[0] and new[1] != previous[1]  # run B's digest and its late record changed
    for i, state in enumerate(outcomes):
        assert state in (previous, new), f"kill {i}: the database is neither the previous state nor the new run"
    print(f"ingest: kill points {[c for _, c in points]}; new run stored after "
          f"{sum(s == new for s in outcomes)} of {len(outcomes)} kills")


def test_ingest_killed_anywhere_leaves_sqlite_previous_or_complete(runs: dict[str, Path], tmp_path: Path):
    url = str(tmp_path / "results" / "fleetbench.sqlite")
    _ingest_killed_anywhere(url, runs, tmp_path, {"fleetbench.cli:main": 8, "fleetbench.db": 16})
    database = Database(url)
    assert database.rows("PRAGMA integrity_check") == [("ok",)]
    database.close()


def test_ingest_killed_anywhere_leaves_postgresql_previous_or_complete(runs: dict[str, Path], tmp_path: Path,
                                                                       postgres_url: str):  # noqa: F811
    _ingest_killed_anywhere(postgres_url, runs, tmp_path, {"fleetbench.db": 12})
