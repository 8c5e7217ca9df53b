"""A full disk on the controller, and run id collisions: clear errors, and what was collected stays intact.

The full disk is a real one: a small tmpfs mounted for the test (the suite runs as root in CI) and filled up.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fleetbench import runs
from fleetbench.atomic import NoSpace
from fleetbench.cli import main
from tests.history.synth import Rec, night, run_id, write_run
from tests.history.test_wsf import kpi_lines, params_dump
from tests.security.test_durability_kill import REPORT_FILES, snapshot

FILLER = "filler"


@pytest.fixture
def disk(tmp_path: Path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)], check=True, timeout=60)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, timeout=60)


def fill(mount: Path) -> None:
    """Take every free byte of the disk."""
    with (mount / FILLER).open("ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    assert os.statvfs(mount).f_bavail == 0


def tree(root: Path) -> dict[str, str]:
    """Every file under root (but the filler) and its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != FILLER}


def case(**more: str) -> dict[str, str]:
    """One case's parameters as create_run gets them (the assets every host must share included)."""
    return {"case": "inference-throughput", **dict.fromkeys(runs.SHARED_PARAMS, ""), **more}


RECS = [Rec("spr-1", "SPR"), Rec("icx-1", "ICX", precision="avx_fp32"), Rec("emr-1", "EMR", throughput=1200.0)]


def test_report_on_a_full_disk_names_the_file_and_keeps_what_was_there(disk: Path, capsys):
    run_dir = write_run(disk / "results", run_id(0), night(0).isoformat(), RECS)
    assert main(["report", str(run_dir)]) == 0
    (run_dir / "hosts" / "spr-1" / "inference-throughput" / "result.json").unlink()  # so the new report differs
    before = tree(disk)
    fill(disk)
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on device while writing {run_dir}/summary.json; free space there" in err, err
    assert "fleetbench_results_dir" in err
    assert tree(disk) == before, "a file changed or a temporary file was left behind"
    (disk / FILLER).unlink()
    assert main(["report", str(run_dir)]) == 1  # partial now: spr-1 has no result
    assert all((run_dir / name).read_bytes() for name in REPORT_FILES)


def test_ingest_on_a_full_disk_leaves_the_database_as_it_was(disk: Path, capsys):
    results = disk / "results"
    first = write_run(results, run_id(0), night(0).isoformat(), RECS)
    second = write_run(results, run_id(1), night(1).isoformat(), [*RECS, Rec("spr-2", "SPR")])
    url = str(results / "fleetbench.sqlite")
    assert main(["ingest", "--db", url, str(first)]) == 0
    stored, files = snapshot(url), tree(disk)
    fill(disk)
    capsys.readouterr()
    assert main(["ingest", "--db", url, str(second)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on device while writing the database {url} (it is left as it was)" in err, err
    assert snapshot(url) == stored and tree(disk) == files
    (disk / FILLER).unlink()
    assert main(["ingest", "--db", url, str(second)]) == 0
    assert len(snapshot(url)[0]) == 2


def test_a_new_run_on_a_full_disk_fails_clearly_and_leaves_no_folder(disk: Path):
    results = disk / "results"
    earlier = runs.create_run(results, {"h1": [case()]})
    before = tree(disk)
    fill(disk)
    hosts = {f"host-{i}": [case(note="x" * 2000)] for i in range(50)}
    with pytest.raises(NoSpace, match=r"no space left on device while writing .*/run\.json; free space there"):
        runs.create_run(results, hosts)
    assert tree(disk) == before
    assert sorted(p.name for p in results.iterdir()) == sorted([earlier["run_id"], "latest"])
    assert os.readlink(results / "latest") == earlier["run_id"]


def test_import_wsf_on_a_full_disk_fails_clearly_and_keeps_earlier_runs(disk: Path, tmp_path: Path, capsys):
    logs = tmp_path / "wsf" / "run" / "pod" / "benchmark_0.log"
    logs.parent.mkdir(parents=True)
    logs.write_text(params_dump(INSTANCE_NUMBER="1") + kpi_lines(406.1, 2.41, 3.87))
    results, url = disk / "results", str(disk / "results" / "h.sqlite")
    assert main(["ingest", "--db", url, str(write_run(results, run_id(0), night(0).isoformat(), RECS))]) == 0
    before, stored = tree(disk), snapshot(url)
    fill(disk)
    capsys.readouterr()
    assert main(["import-wsf", str(tmp_path / "wsf"), "--db", url, "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on device while writing {results}/wsf-" in err and "fleetbench_results_dir" in err, err
    assert snapshot(url) == stored
    assert {k: v for k, v in tree(disk).items() if not k.startswith("results/wsf-")} == before


class _Frozen(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


def test_a_run_id_that_is_taken_is_never_reused(tmp_path: Path, monkeypatch):
    """Two runs started in the same second drawing the same random suffix: the second gets another folder."""
    monkeypatch.setattr(runs, "datetime", _Frozen)
    draws = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(draws))
    cases = {"h1": [case()]}
    first = runs.create_run(tmp_path, cases)
    marker = Path(first["run_dir"]) / "hosts" / "h1" / "inference-throughput" / "result.json"
    marker.parent.mkdir()
    marker.write_text("collected")
    before = tree(tmp_path)
    second = runs.create_run(tmp_path, cases)
    assert (first["run_id"], second["run_id"]) == ("20250101T120000Z-aaaaaa", "20250101T120000Z-bbbbbb")
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith(second["run_id"])} == before
    assert os.readlink(tmp_path / "latest") == second["run_id"]

    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: "aaaaaa")  # every name taken
    with pytest.raises(OSError, match=r"could not create a fresh run folder under .* \(20 names taken\)"):
        runs.create_run(tmp_path, cases)
    assert marker.read_text() == "collected" and os.readlink(tmp_path / "latest") == second["run_id"]
