"""`fleetbench table` and `fleetbench compare` on a fixture history of SPR, EMR and ICX hosts with known values.

Expected cells are computed here from the generated values (statistics.median, min, max), not by the code
under test.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import statistics
from pathlib import Path

import pytest

from fleetbench.cli import main
from fleetbench.db import Database
from tests.history.synth import STACK, Rec, run_id

BASE = {"spr-1": ("SPR", 1000.0), "spr-2": ("SPR", 1040.0), "emr-1": ("EMR", 1200.0), "icx-1": ("ICX", 600.0)}
GROUPS = {"spr-1": ["spr", "lab_a"], "spr-2": ["spr"], "emr-1": ["emr"], "icx-1": ["icx", "lab_a"]}
SPEED = {"avx_fp32": 1.0, "amx_bfloat16": 3.0}
NIGHTS = 6
OLD_STACK = {**STACK, "ipex": "2.7.0", "torch": "2.7.1+cpu"}


def precision(i: int) -> str:
    return "avx_fp32" if i % 2 == 0 else "amx_bfloat16"


def throughput(host: str, i: int) -> float:
    return BASE[host][1] * SPEED[precision(i)] + 7 * i


def night_recs(i: int) -> list[Rec]:
    recs = []
    for host, (platform, _) in BASE.items():
        stack = OLD_STACK if i == 0 else STACK
        if platform == "ICX" and precision(i) == "amx_bfloat16":
            recs.append(Rec(host, platform, precision=precision(i), status="skipped", reason="no AMX", stack=stack))
        elif (host, i) == ("emr-1", 3):
            recs.append(Rec(host, platform, precision=precision(i), status="failed", reason="oom", stack=stack))
        elif (host, i) == ("spr-2", 5):
            recs.append(Rec(host, platform, precision=precision(i), throughput=throughput(host, i), stack=stack,
                            doc={"isa_mismatch": {"missing": ["amx_tile"]}}))
        else:
            t = throughput(host, i)
            recs.append(Rec(host, platform, precision=precision(i), throughput=t, p50=1000 / t, p99=1500 / t,
                            stack=stack))
    return recs


def included(i: int, host: str) -> bool:
    return not ((BASE[host][0] == "ICX" and precision(i) == "amx_bfloat16") or (host, i) in (("emr-1", 3),
                                                                                            ("spr-2", 5)))


@pytest.fixture
def history(nightly, tmp_path) -> str:
    url = str(tmp_path / "history.sqlite")
    assert main(["ingest", "--db", url, *(str(nightly(i, night_recs(i), GROUPS)) for i in range(NIGHTS))]) == 0
    return url


def expected(platform: str, prec: str, nights: range = range(NIGHTS), hosts: tuple[str, ...] = tuple(BASE)):
    values = [throughput(h, i) for i in nights for h in hosts
              if BASE[h][0] == platform and precision(i) == prec and included(i, h)]
    return values


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def md_rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 11 and cells[0] in ("SPR", "EMR", "ICX"):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_table_cells_match_values_computed_independently(history, capsys, tmp_path):
    assert main(["table", "--db", history, "--reference-platform", "EMR", "-o", str(tmp_path / "t.csv"),
                 "-o", str(tmp_path / "t.html")]) == 0
    out = capsys.readouterr().out
    rows = md_rows(out)
    assert set(rows) == {("SPR", "avx_fp32"), ("SPR", "amx_bfloat16"), ("EMR", "avx_fp32"), ("EMR", "amx_bfloat16"),
                         ("ICX", "avx_fp32")}
    for (platform, prec), cells in rows.items():
        values = expected(platform, prec)
        runs = len({i for i in range(NIGHTS) for h in BASE
                    if BASE[h][0] == platform and precision(i) == prec and included(i, h)})
        assert cells[4] == f"{len(values)} ({runs})"
        assert cells[5] == spread(values)
        assert cells[6] == spread([1000 / v for v in values])
        fp32 = statistics.median(expected(platform, "avx_fp32"))
        assert cells[9] == f"{statistics.median(values) / fp32:.2f}x"
        emr = expected("EMR", prec)
        assert cells[10] == f"{statistics.median(values) / statistics.median(emr):.2f}x"
    assert "Excluded 5 of 24 records: 3 skipped, 1 failed, 1 ran without the ISA its precision needs" in out
    with (tmp_path / "t.csv").open() as fh:
        got = {(r["platform"], r["precision"]): r for r in csv.DictReader(fh)}
    values = expected("SPR", "amx_bfloat16")
    assert math.isclose(float(got[("SPR", "amx_bfloat16")]["throughput_median"]), statistics.median(values))
    assert math.isclose(float(got[("SPR", "amx_bfloat16")]["throughput_min"]), min(values))
    assert got[("ICX", "avx_fp32")]["speedup_vs_EMR"] != ""
    html = (tmp_path / "t.html").read_text()
    assert "<table class=\"comparison\">" in html and spread(values) in html


@pytest.mark.parametrize(("args", "nights", "hosts"), [
    (["--group", "lab_a"], range(NIGHTS), ("spr-1", "icx-1")),
    (["--group", "EMR"], range(NIGHTS), ("emr-1",)),  # platform when the host had no group of that name
    (["--since", "2025-01-03", "--until", "2025-01-05"], range(2, 5), tuple(BASE)),
    (["--stack", "ipex 2.7"], range(1), tuple(BASE)),
])
def test_table_filters(history, capsys, args, nights, hosts):
    assert main(["table", "--db", history, *args]) == 0
    rows = md_rows(capsys.readouterr().out)
    for (platform, prec), cells in rows.items():
        assert cells[5] == spread(expected(platform, prec, nights, hosts))
    assert rows and all(expected(p, prec, nights, hosts) for p, prec in rows)


def test_table_with_the_group_of_an_emr_host_uses_its_inventory_group(history, capsys):
    assert main(["table", "--db", history, "--group", "emr", "--case", "inference-throughput"]) == 0
    assert set(md_rows(capsys.readouterr().out)) == {("EMR", "avx_fp32"), ("EMR", "amx_bfloat16")}


def test_table_rejects_a_malformed_date(history, capsys):
    assert main(["table", "--db", history, "--since", "yesterday"]) == 2
    assert "'yesterday' is not a date" in capsys.readouterr().err


def test_table_on_an_empty_history_says_so(tmp_path, capsys):
    Database(str(tmp_path / "empty.sqlite")).close()
    assert main(["table", "--db", str(tmp_path / "empty.sqlite")]) == 0
    assert "No included records match the filters." in capsys.readouterr().out
    for command in ("table", "html"):  # a mistyped path is refused, not created
        assert main([command, "--db", str(tmp_path / "typo.sqlite")]) == 2
        assert "no history database at" in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite").exists()


def compare_rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in BASE and parts[1].startswith("inference"):
            rows[(parts[0], " ".join(parts[3:5]))] = parts
    return rows


def test_compare_marks_what_moved_beyond_the_noise_band(nightly, tmp_path, capsys):
    url = str(tmp_path / "c.sqlite")
    a = nightly(0, [Rec("spr-1", "SPR", throughput=1000.0), Rec("emr-1", "EMR", throughput=1200.0),
                    Rec("icx-1", "ICX", throughput=600.0)])
    b = nightly(1, [Rec("spr-1", "SPR", throughput=800.0), Rec("emr-1", "EMR", throughput=1224.0),
                    Rec("icx-1", "ICX", status="unreachable", reason="ssh: connection refused")])
    assert main(["ingest", "--db", url, str(a)]) == 0
    capsys.readouterr()
    # A from the database, B straight from its folder (not stored).
    assert main(["compare", "--db", url, run_id(0), str(b)]) == 0
    out = capsys.readouterr().out
    rows = compare_rows(out)
    assumed_band = 3 * math.sqrt(2) * 0.02  # no history: 2% assumed noise, 3 standard errors
    assert rows[("spr-1", "throughput (samples/s)")][-3:] == ["-20.0%", f"±{100 * assumed_band:.1f}%*", "WORSE"]
    assert rows[("emr-1", "throughput (samples/s)")][-2:] == ["+2.0%", f"±{100 * assumed_band:.1f}%*"]
    assert "icx-1 inference-throughput: B unreachable: ssh: connection refused" in out
    assert "1 of 6 KPIs moved beyond the noise band (1 worse)." in out


def test_compare_band_comes_from_the_history(nightly, tmp_path, capsys):
    url = str(tmp_path / "c.sqlite")
    levels = [1000.0, 1010.0, 990.0, 1005.0, 995.0, 1000.0, 1010.0]
    dirs = [nightly(i, [Rec("spr-1", "SPR", throughput=v, p50=2.0, p99=3.0)]) for i, v in enumerate(levels)]
    dirs.append(nightly(7, [Rec("spr-1", "SPR", throughput=1060.0, p50=2.0, p99=3.0)]))
    assert main(["ingest", "--db", url, *map(str, dirs)]) == 0
    capsys.readouterr()
    assert main(["compare", "--db", url, run_id(6), run_id(7)]) == 0
    history = levels[:6]  # the runs other than A and B
    diffs = [(b - a) ** 2 for a, b in itertools.pairwise(history)]
    sigma = max(0.01, math.sqrt(statistics.fmean(diffs) / 2) / statistics.median(history))
    band = max(0.05, 3 * math.sqrt(2) * sigma)
    row = compare_rows(capsys.readouterr().out)[("spr-1", "throughput (samples/s)")]
    assert row[-2:] == [f"{100 * (1060 / 1010 - 1):+.1f}%", f"±{100 * band:.1f}%"]


def test_compare_an_unknown_run(tmp_path, capsys):
    assert main(["compare", "--db", str(tmp_path / "c.sqlite"), "nope", str(Path("/nonexistent"))]) == 2
    assert "nope: not a run folder, and no run with that id in the database" in capsys.readouterr().err


def test_csv_is_parseable_and_has_the_counts(history, capsys):
    assert main(["table", "--db", history, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sum(int(r["records"]) for r in rows) == 24 - 5
