"""The history database on SQLite and on a real PostgreSQL: ingest, re-ingest, interrupted ingest, exclusions."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fleetbench.cli import main
from fleetbench.db import SCHEMA_VERSION, Database, describe, resolve
from fleetbench.history import load_samples
from tests.history.synth import Rec, run_id

SPR_AMX = "precision amx_bfloat16 needs amx_bf16, which this host (ICX) lacks"


def counts(url: str) -> tuple[int, int]:
    database = Database(url)
    try:
        return (database.rows("SELECT COUNT(*) FROM runs")[0][0], database.rows("SELECT COUNT(*) FROM records")[0][0])
    finally:
        database.close()


def fleet(**spr: object) -> list[Rec]:
    return [Rec("spr-1", "SPR", **spr), Rec("icx-1", "ICX", status="skipped", reason=SPR_AMX),
            Rec("emr-1", "EMR", throughput=1200.0)]


def test_ingest_stores_every_record_with_status(db_url, nightly, capsys):
    run_dir = nightly(0, fleet())
    assert main(["ingest", "--db", db_url, str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"run {run_id(0)}: added, 3 records, complete; 1 excluded from aggregates (1 skipped)")
    database = Database(db_url)
    samples = {s.host: s for s in load_samples(database)}
    database.close()
    assert (samples["spr-1"].status, samples["spr-1"].throughput, samples["spr-1"].included) == ("passed", 1000.0, True)
    assert samples["spr-1"].stack == "torch 2.8.0+cpu, ipex 2.8.0"
    assert (samples["icx-1"].status, samples["icx-1"].reason, samples["icx-1"].excluded) == ("skipped", SPR_AMX,
                                                                                            "skipped")
    assert samples["emr-1"].started_at == "2025-01-01T02:00:00Z"


def test_reingest_does_not_duplicate_and_a_changed_run_replaces_the_old(db_url, nightly, capsys):
    run_dir = nightly(0, fleet())
    assert main(["ingest", "--db", db_url, str(run_dir), str(run_dir)]) == 0
    assert "unchanged" in capsys.readouterr().out.splitlines()[1]
    assert counts(db_url) == (1, 3)
    doc = json.loads((run_dir / "hosts/spr-1/inference-throughput/result.json").read_text())
    doc["kpi"]["throughput"] = 990.0
    (run_dir / "hosts/spr-1/inference-throughput/result.json").write_text(json.dumps(doc))
    assert main(["ingest", "--db", db_url, str(run_dir)]) == 0
    assert ": replaced," in capsys.readouterr().out
    assert counts(db_url) == (1, 3)
    database = Database(db_url)
    assert [s.throughput for s in load_samples(database) if s.host == "spr-1"] == [990.0]
    database.close()


_PAUSING_INGEST = """
import os, sys, time
from pathlib import Path
import fleetbench.history as history
insert = history._insert_records
def pausing(cur, records):
    insert(cur, records)
    Path(os.environ["MARK"]).write_text("inside the transaction")
    time.sleep(120)
history._insert_records = pausing
from fleetbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_inside_the_ingest_transaction_leaves_the_database_as_it_was(db_url, nightly, tmp_path):
    assert main(["ingest", "--db", db_url, str(nightly(0, fleet()))]) == 0
    second = nightly(1, fleet())
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", _PAUSING_INGEST, "ingest", "--db", db_url, str(second)],
                            env={**os.environ, "MARK": str(mark)})
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the ingest never reached the pause"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert counts(db_url) == (1, 3)  # the killed run's rows were written, but never committed
    assert main(["ingest", "--db", db_url, str(second)]) == 0
    assert counts(db_url) == (2, 6)


def test_bad_records_are_stored_but_excluded_with_their_reason(db_url, nightly):
    recs = [
        Rec("h-fail", "SPR", status="failed", reason="instance 0: segfault"),
        Rec("h-timeout", "SPR", status="timeout", reason="killed after 900 s"),
        Rec("h-isa", "ICX", doc={"isa_mismatch": {"missing": ["amx_tile", "amx_bf16"]}}),
        Rec("h-absurd", "SPR", throughput=5e7),
        Rec("h-zero-latency", "EMR", p50=0.0, p99=0.0),
        Rec("h-synthetic", "EMR", case="inference-accuracy", accuracy=50.5, meaningful=False),
        Rec("h-ok", "SPR"),
    ]
    run_dir = nightly(0, recs)
    (run_dir / "hosts/h-nan").mkdir()
    run = json.loads((run_dir / "run.json").read_text())
    run["hosts"].append("h-nan")
    run["cases"]["h-nan"] = ["inference-throughput"]
    run["host_dirs"]["h-nan"] = "h-nan"
    (run_dir / "run.json").write_text(json.dumps(run))
    (run_dir / "hosts/h-nan/inference-throughput").mkdir()
    (run_dir / "hosts/h-nan/inference-throughput/result.json").write_text(
        '{"schema_version": 1, "kpi": {"throughput": NaN}}')
    assert main(["ingest", "--db", db_url, str(run_dir)]) == 0
    database = Database(db_url)
    got = {s.host: s for s in load_samples(database)}
    database.close()
    assert {h: s.excluded for h, s in got.items()} == {
        "h-fail": "failed", "h-timeout": "timeout", "h-isa": "isa_mismatch", "h-absurd": "out_of_bounds",
        "h-zero-latency": "out_of_bounds", "h-synthetic": "", "h-ok": "", "h-nan": "invalid"}
    assert got["h-isa"].reason == "ran without the ISA amx_bfloat16 needs (missing: amx_tile, amx_bf16)"
    assert got["h-absurd"].reason == "throughput 50000000.0 samples/s is outside (0.0, 1000000.0)"
    assert "NaN" in got["h-nan"].reason and got["h-nan"].status == "failed"
    assert got["h-synthetic"].value("accuracy") is None and got["h-synthetic"].value("throughput") == 1000.0
    assert got["h-absurd"].value("throughput") is None


def test_database_location_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FLEETBENCH_DB", raising=False)
    assert resolve(None).endswith("results/fleetbench.sqlite")
    monkeypatch.setenv("FLEETBENCH_DB", "postgresql://u@h/db")
    assert resolve(None) == "postgresql://u@h/db" and resolve("x.sqlite") == "x.sqlite"
    assert describe("postgresql://bench:s3cret@db.example:5432/fb") == "postgresql://bench@db.example:5432/fb"
    assert main(["ingest", "--db", "postgresql://nobody:pw@127.0.0.1:1/none", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot use the database postgresql://nobody@127.0.0.1:1/none" in err and "pw" not in err


def test_a_folder_that_is_not_a_run_is_reported_and_the_others_stored(tmp_path, nightly, capsys):
    url = str(tmp_path / "h.sqlite")
    assert main(["ingest", "--db", url, str(tmp_path / "nope"), str(nightly(0, fleet()))]) == 2
    assert "no run folder at" in capsys.readouterr().err
    assert counts(url) == (1, 3)


def test_a_database_from_a_newer_fleetbench_is_refused(tmp_path, capsys):
    url = str(tmp_path / "h.sqlite")
    Database(url).close()
    with sqlite3.connect(url) as conn:
        conn.execute("UPDATE fleetbench_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    assert main(["check", "--db", url]) == 2
    assert f"database schema version {SCHEMA_VERSION + 1} is newer" in capsys.readouterr().err


def test_sqlite_file_is_created_in_the_results_folder(tmp_path: Path):
    url = str(tmp_path / "deep" / "results" / "fleetbench.sqlite")
    Database(url).close()
    assert Path(url).is_file()


def test_a_run_whose_start_time_cannot_be_read_is_refused(db_url, nightly, capsys):
    """Its start time orders it in every series: a bad one is an error, never the time of the ingest."""
    run_dir = nightly(0, fleet())
    meta = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**meta, "started_at": "yesterday"}))
    assert main(["ingest", "--db", db_url, str(run_dir)]) != 0
    captured = capsys.readouterr()
    assert "started_at 'yesterday' is not an ISO 8601 time" in captured.out + captured.err
    database = Database(db_url)
    assert load_samples(database) == []
    database.close()


def test_an_absurd_kpi_is_a_failed_row_in_the_report_and_never_a_key_kpi(nightly, capsys):
    run_dir = nightly(0, [Rec("h-ok", "SPR", throughput=812.3), Rec("h-absurd", "SPR", throughput=5e6)])
    assert main(["report", str(run_dir)]) == 1  # partial: a host sent a number no server reaches
    out = capsys.readouterr().out
    assert "absurd value, not reported: throughput 5000000.0 samples/s is outside (0.0, 1000000.0)" in out
    assert "5000000" not in out.replace("5000000.0 samples/s is outside", "")
    assert "##HOST: h-ok" in out and "##HOST: h-absurd" not in out
    rows = {r["host"]: r for r in csv.DictReader((run_dir / "kpi.csv").open())}
    assert (rows["h-absurd"]["status"], rows["h-absurd"]["throughput"]) == ("failed", "")
    assert float(rows["h-ok"]["throughput"]) == 812.3
