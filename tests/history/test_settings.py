"""Records of different settings (sequence length, backend, instance layout, ...) are never one measurement.

The tests store runs that are identical but for one parameter and check that `fleetbench table`, `compare`,
`check` and the HTML trends keep them apart, and that a database or a result.json written before the
setting existed still loads (those records ran IPEX on the pinned Hub model).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import psycopg
import pytest

from fleetbench import db, htmlreport
from fleetbench.cli import main
from fleetbench.history import Filters, load_samples
from fleetbench.params import DEFAULT_MODEL_ID, DEFAULT_MODEL_REVISION
from fleetbench.setting import Setting, setting_of
from tests.history.synth import Rec, params, result_doc, run_id

# Parameters of the second run, and the Setting column of the first and the second run.
DIFFERENT = {
    "max_seq_length": ({"max_seq_length": 512}, ("seq 128", "seq 512")),
    "backend": ({"backend": "inductor"}, ("ipex", "inductor")),
    "layout": ({"instance_number": 2, "cores_per_instance": 4}, ("layout auto", "2 instances x 4 cores")),
    "weight_sharing": ({"weight_sharing": True}, ("layout auto", "layout auto, weight sharing")),
}
HISTORY = [1000.0 + 3 * (i % 3 - 1) for i in range(20)]  # nightly throughput of a quiet host
DEFAULT_MODEL = f"{DEFAULT_MODEL_ID}@{DEFAULT_MODEL_REVISION}"
# What the payload did not write before backends, min_duration_s and model settings existed.
OLD_PARAMS = {"backend": None, "min_duration_s": None, "model_source": None}


def md_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| SPR ")]


@pytest.mark.parametrize("which", DIFFERENT)
def test_runs_differing_only_in_one_setting_are_never_one_cell_or_trend(which, nightly, tmp_path, capsys):
    over, labels = DIFFERENT[which]
    url = str(tmp_path / "h.sqlite")
    a = nightly(0, [Rec("spr-1", "SPR", throughput=1000.0)])
    b = nightly(1, [Rec("spr-1", "SPR", throughput=1500.0, params=over)])
    assert main(["ingest", "--db", url, str(a), str(b)]) == 0
    capsys.readouterr()
    assert main(["table", "--db", url]) == 0
    out = capsys.readouterr().out
    # Platform, precision, case, batch, Setting, n (runs), throughput, ...
    assert sorted((r[4], r[5], r[6]) for r in md_rows(out)) == sorted(
        [(labels[0], "1 (1)", "1000.00"), (labels[1], "1 (1)", "1500.00")])
    assert "| Setting |" in out and "Setting of every row: " in out

    assert main(["table", "--db", url, "--format", "csv"]) == 0
    rows = {float(r["throughput_median"]): r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == {1000.0, 1500.0}
    name = next(iter(over))
    assert rows[1500.0][name] == str(over[name]).lower() != rows[1000.0][name]

    with db.opened(url) as database:
        charts = htmlreport.build(database, Filters(), None, None)["history"].charts
    assert sorted(c.data_points for c in charts) == [1, 1]
    assert [any(f"({label})" in c.title for c in charts) for label in labels] == [True, True]


def test_compare_does_not_compare_runs_of_different_settings(nightly, tmp_path, capsys):
    url = str(tmp_path / "c.sqlite")
    a = nightly(0, [Rec("spr-1", "SPR", throughput=1000.0), Rec("emr-1", "EMR", throughput=1200.0)])
    b = nightly(1, [Rec("spr-1", "SPR", throughput=800.0, params={"max_seq_length": 512}),
                    Rec("emr-1", "EMR", throughput=1200.0)])
    assert main(["ingest", "--db", url, str(a), str(b)]) == 0
    capsys.readouterr()
    assert main(["compare", "--db", url, run_id(0), run_id(1)]) == 0
    out = capsys.readouterr().out
    assert "spr-1 inference-throughput: not the same measurement (A / B: seq 128 / seq 512)" in out
    assert "WORSE" not in out and "0 of 3 KPIs moved beyond the noise band" in out  # emr-1's three


def _ingest_history(nightly, url: str) -> None:
    dirs = [nightly(i, [Rec("spr-1", "SPR", throughput=v)]) for i, v in enumerate(HISTORY)]
    assert main(["ingest", "--db", url, *map(str, dirs)]) == 0


def test_check_never_judges_a_run_against_the_history_of_another_setting(nightly, tmp_path, capsys):
    url = str(tmp_path / "h.sqlite")
    _ingest_history(nightly, url)
    slower = 0.8 * sum(HISTORY) / len(HISTORY)
    n = len(HISTORY)
    assert main(["ingest", "--db", url, str(nightly(n, [Rec("spr-1", "SPR", throughput=slower,
                                                           params={"max_seq_length": 512})]))]) == 0
    capsys.readouterr()
    for by in ("host", "platform"):
        assert main(["check", "--db", url, "--by", by]) == 0
        out = capsys.readouterr().out
        assert "REGRESSION" not in out
        assert "Checked 1 series: 0 regressions, 0 improvements, 0 stable, 1 with fewer than 5" in out

    # The same drop at the same setting is a regression, and the seq 512 run is not part of its series.
    assert main(["ingest", "--db", url, str(nightly(n + 1, [Rec("spr-1", "SPR", throughput=slower)]))]) == 0
    capsys.readouterr()
    assert main(["check", "--db", url]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: spr-1 inference-throughput amx_bfloat16 batch 1 [torch 2.8.0+cpu, ipex 2.8.0; seq 128," in out
    assert "(-20.0%)" in out and f"since run {run_id(n + 1)}" in out


# The layout of version 1 (before records.setting), as fleetbench 1 created it.
V1_DDL = (
    "CREATE TABLE fleetbench_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, source TEXT NOT NULL, status TEXT "
    "NOT NULL, digest TEXT NOT NULL, ingested_at TEXT NOT NULL, location TEXT NOT NULL)",
    "CREATE TABLE records (run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE, host TEXT NOT NULL, "
    "case_name TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, platform TEXT NOT NULL, cpu_model TEXT "
    "NOT NULL, host_groups TEXT NOT NULL, precision TEXT, mode TEXT, batch_size INTEGER, stack TEXT NOT NULL, "
    "throughput DOUBLE PRECISION, latency_p50 DOUBLE PRECISION, latency_p90 DOUBLE PRECISION, latency_p99 DOUBLE "
    "PRECISION, accuracy DOUBLE PRECISION, accuracy_meaningful INTEGER, included INTEGER NOT NULL, excluded TEXT "
    "NOT NULL, doc TEXT, PRIMARY KEY (run_id, host, case_name))",
    "CREATE INDEX runs_started ON runs (started_at)",
    "CREATE INDEX records_series ON records (case_name, precision, platform, host)",
    "INSERT INTO fleetbench_meta VALUES ('schema_version', '1')",
)
V1_RECORD = ("run_id, host, case_name, status, reason, platform, cpu_model, host_groups, precision, mode, batch_size, "
             "stack, throughput, latency_p50, latency_p90, latency_p99, accuracy, accuracy_meaningful, included, "
             "excluded, doc")


def _write_v1(url: str) -> None:
    """A version 1 database with one run: spr-1 passed (an old result.json: no backend, no model source),
    icx-1 unreachable (no result.json at all)."""
    old = result_doc(run_id(0), Rec("spr-1", "SPR", throughput=1000.0, params=OLD_PARAMS))
    mark = "%s" if url.startswith("postgresql") else "?"
    runs, records = ", ".join([mark] * 7), ", ".join([mark] * 21)
    statements = [(sql, ()) for sql in V1_DDL] + [
        (f"INSERT INTO runs VALUES ({runs})",
         (run_id(0), "2025-01-01T02:00:00Z", "fleetbench", "partial", "x", "2025-01-01T03:00:00Z", "/gone")),
        (f"INSERT INTO records ({V1_RECORD}) VALUES ({records})",
         (run_id(0), "spr-1", "inference-throughput", "passed", "", "SPR", "Xeon", ",SPR,", "amx_bfloat16",
          "throughput", 1, "torch 2.8.0+cpu, ipex 2.8.0", 1000.0, 2.0, 2.5, 3.0, None, None, 1, "", json.dumps(old))),
        (f"INSERT INTO records ({V1_RECORD}) VALUES ({records})",
         (run_id(0), "icx-1", "inference-throughput", "unreachable", "ssh: timed out", "ICX", "", ",ICX,", None,
          "throughput", None, "unknown", None, None, None, None, None, None, 0, "unreachable", None)),
    ]
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            for sql, values in statements:
                conn.execute(sql, values)
    else:
        with sqlite3.connect(url) as conn:
            for sql, values in statements:
                conn.execute(sql, values)
        conn.close()


def test_a_version_1_database_is_migrated_and_its_records_join_the_same_setting(db_url, nightly, tmp_path, capsys):
    if not db_url.startswith("postgresql"):
        (tmp_path / "results").mkdir(exist_ok=True)
    _write_v1(db_url)
    with db.opened(db_url) as database:
        assert database.rows("SELECT value FROM fleetbench_meta") == [(str(db.SCHEMA_VERSION),)]
        samples = {s.host: s for s in load_samples(database)}
    old = samples["spr-1"].setting
    assert (old.backend, old.max_seq_length, old.min_duration_s, old.model) == ("ipex", 128, 0, DEFAULT_MODEL)
    assert samples["icx-1"].setting == Setting.from_text("")  # nothing known, and never included
    # A new run of the same setting: one row, two records.
    assert main(["ingest", "--db", db_url, str(nightly(1, [Rec("spr-1", "SPR", throughput=1100.0)]))]) == 0
    capsys.readouterr()
    assert main(["table", "--db", db_url]) == 0
    rows = md_rows(capsys.readouterr().out)
    assert [(r[4], r[5]) for r in rows] == [("2 (2)", "1050.00 (1000.00–1100.00)")]


def test_an_old_result_file_counts_as_ipex_on_the_pinned_model(nightly, tmp_path, capsys):
    url = str(tmp_path / "h.sqlite")
    old = nightly(0, [Rec("spr-1", "SPR", throughput=1000.0, params=OLD_PARAMS)])
    new = nightly(1, [Rec("spr-1", "SPR", throughput=1100.0)])
    assert "backend" not in json.loads((old / "hosts/spr-1/inference-throughput/result.json").read_text())["params"]
    assert main(["ingest", "--db", url, str(old), str(new)]) == 0
    capsys.readouterr()
    assert main(["table", "--db", url]) == 0
    assert [(r[4], r[5]) for r in md_rows(capsys.readouterr().out)] == [("2 (2)", "1050.00 (1000.00–1100.00)")]


def test_setting_of_a_result():
    doc = result_doc(run_id(0), Rec("spr-1", "SPR"))
    setting = setting_of(doc, {})
    assert setting == Setting(max_seq_length=128, backend="ipex", instance_number="auto", cores_per_instance="auto",
                              weight_sharing=False, model=DEFAULT_MODEL, steps=100, warmup_steps=10,
                              min_duration_s=0, onednn_verbose=0)
    assert Setting.from_text(setting.to_text()) == setting
    # Without a result file: what the run asked for.
    assert setting_of(None, params(Rec("spr-1", "SPR"))) == setting
    # Accuracy mode evaluates the dev set once: the run length is not part of it.
    accuracy = setting_of(result_doc(run_id(0), Rec("spr-1", "SPR", case="inference-accuracy", accuracy=91.0)), {})
    assert (accuracy.steps, accuracy.warmup_steps, accuracy.label(["run_length"])) == (None, None, "one pass")
    # Values of the wrong type are unknown, not coerced.
    assert setting_of({"params": {**doc["params"], "max_seq_length": "512", "weight_sharing": 1}}, {}).max_seq_length \
        is None


def test_the_model_is_its_pinned_revision_or_the_digest_of_its_files():
    def model(source: str, revision: str, files: dict[str, str]) -> str | None:
        doc = result_doc(run_id(0), Rec("spr-1", "SPR"))
        doc["provenance"]["model"].update(source=source, revision=revision, files=files)
        return setting_of(doc, {}).model

    weights, other = {"model.safetensors": "ab" * 32}, {"model.safetensors": "cd" * 32}
    assert model("hub", DEFAULT_MODEL_REVISION, weights) == model("hub", DEFAULT_MODEL_REVISION, other) == DEFAULT_MODEL
    # A branch can move: its files' digest is part of it.
    assert model("hub", "main", weights) != model("hub", "main", other)
    assert model("hub", "main", weights).startswith(f"{DEFAULT_MODEL_ID}@main#")
    assert model("dir", "", weights) != model("dir", "", other) and model("dir", "", weights).startswith("dir#")
    # A synthetic model is its build key (hosts that built the same key may differ in tokenizer file bytes).
    assert model("synthetic", "72a69d08b5081b06", weights) == model("synthetic", "72a69d08b5081b06", other) == (
        "synthetic#72a69d08b5081b06")
