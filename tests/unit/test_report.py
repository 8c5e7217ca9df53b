"""`fleetbench report RUN_DIR`: summary.json, kpi.csv, report.md, the printed tables and Key KPI block."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fleetbench.cli import main
from fleetbench.report import write_report

CASE = "inference-throughput"
SKIP_REASON = "precision amx_bfloat16 needs AMX; this host has no amx_bf16"
NM_NOTE = "n/m: random-weights model, accuracy not meaningful"
RULE = "#================================================"


def report(folder, capsys, path=None) -> tuple[int, str]:
    rc = main(["report", str(path or folder.path)])
    out, err = capsys.readouterr()
    assert err == ""
    return rc, out


def csv_rows(folder) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(folder.read("kpi.csv"))))


@pytest.fixture
def complete_run(make_run, platforms):
    """SPR host h1 passed; ICX host h2 skipped for lack of AMX: a complete run."""
    folder = make_run({"h1": [CASE], "h2": [CASE]})
    folder.write_result("h1")
    folder.write_result("h2", platform=platforms["ICX"], status="skipped", reason=SKIP_REASON, kpi=None)
    return folder


def test_single_host_output_is_exact(make_run, capsys):
    folder = make_run({"h1": [CASE]})
    folder.write_result("h1")
    rc, out = report(folder, capsys)
    assert rc == 0
    assert out.splitlines() == [
        "fleetbench run 20250101T120000Z-a1b2c3: complete (1 passed)",
        "",
        "== SPR ==",
        "platform  host  case                  precision     throughput (samples/s)  latency p50 (ms)"
        "  latency p99 (ms)  accuracy (%)  status",
        "--------  ----  --------------------  ------------  ----------------------  ----------------"
        "  ----------------  ------------  ------",
        "SPR       h1    inference-throughput  amx_bfloat16                  812.35              2.41"
        "              3.87             -  passed",
        "",
        "##HOST: h1",
        "##CASE: inference-throughput",
        "##PLATFORM: SPR",
        "##PRECISION: amx_bfloat16",
        RULE,
        "#Key KPI",
        RULE,
        "*Throughput (samples/sec): 812.35",
        "*P50 Latency (ms): 2.41",
        "*P99 Latency (ms): 3.87",
    ]
    assert out.endswith("3.87\n")


def test_complete_run_has_a_table_per_platform_and_exit_0(complete_run, capsys):
    rc, out = report(complete_run, capsys)
    assert rc == 0
    assert out.startswith("fleetbench run 20250101T120000Z-a1b2c3: complete (1 passed, 1 skipped)\n")
    icx, spr = out.index("== ICX =="), out.index("== SPR ==")
    assert icx < spr < out.index("#Key KPI")
    assert f"skipped: {SKIP_REASON}" in out[icx:spr]
    assert out.count("#Key KPI") == 1, "a skipped case has no KPI block"


def test_summary_json(complete_run):
    summary = write_report(complete_run.path)
    doc = json.loads(complete_run.read("summary.json"))
    assert doc == summary.to_json()
    assert doc["run_id"] == complete_run.run_id and doc["status"] == "complete"
    assert doc["counts"] == {"passed": 1, "failed": 0, "skipped": 1, "timeout": 0, "unreachable": 0}
    h1, h2 = doc["rows"]
    assert h1 == {
        "platform": "SPR", "host": "h1", "case": CASE, "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "precision": "amx_bfloat16", "mode": "throughput", "batch_size": 1, "throughput": 812.345,
        "latency_p50_ms": 2.41, "latency_p90_ms": 2.9, "latency_p99_ms": 3.87, "accuracy": None,
        "accuracy_meaningful": None, "status": "passed", "reason": "",
    }
    assert (h2["platform"], h2["status"], h2["reason"], h2["throughput"]) == ("ICX", "skipped", SKIP_REASON, None)


def test_kpi_csv(complete_run):
    write_report(complete_run.path)
    h1, h2 = csv_rows(complete_run)
    assert list(h1) == ["run_id", "platform", "host", "case", "cpu_model", "precision", "mode", "batch_size",
                        "throughput", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "accuracy",
                        "accuracy_meaningful", "status", "reason"]
    assert (h1["run_id"], h1["throughput"], h1["latency_p99_ms"], h1["accuracy"]) == (
        complete_run.run_id, "812.345", "3.87", "")
    assert (h2["status"], h2["reason"], h2["throughput"]) == ("skipped", SKIP_REASON, "")


def test_report_md_is_rendered_from_the_template(complete_run):
    write_report(complete_run.path)
    md = complete_run.read("report.md")
    assert md.startswith(f"# fleetbench run {complete_run.run_id}\n\nRun status: **complete** (1 passed, 1 skipped).")
    assert "\n## ICX\n" in md and "\n## SPR\n" in md
    assert ("| h1 | inference-throughput | Intel(R) Xeon(R) Platinum 8480+ | amx_bfloat16 | throughput | 1 | "
            "812.35 | 2.41 | 2.90 | 3.87 | - | passed | - |") in md
    assert f"| skipped | {SKIP_REASON} |" in md
    assert "\n## Key KPI\n\n    ##HOST: h1\n" in md
    assert f"\n    #Key KPI\n    {RULE}\n    *Throughput (samples/sec): 812.35\n" in md


def test_writes_are_atomic_and_repeatable(complete_run):
    write_report(complete_run.path)
    first = complete_run.read("summary.json")
    write_report(complete_run.path)
    assert complete_run.read("summary.json") == first
    assert sorted(p.name for p in complete_run.path.iterdir()) == [
        "hosts", "kpi.csv", "report.md", "run.json", "summary.json"]


def test_partial_run_exits_1_and_names_every_problem(make_run, platforms, capsys):
    folder = make_run({"h1": [CASE], "h2": [CASE], "h3": [CASE], "h4": [CASE]})
    folder.write_result("h1")
    folder.write_status("h2", "unreachable", "Failed to connect to the host via ssh")
    folder.write_raw("h3", CASE, b'{"schema_version": 1, "run_id": "')
    folder.write_host("h4", platforms["ICX"])
    folder.write_status("h4", "failed", "No package matching 'numactl'", step="Provision the payload stack")
    rc, out = report(folder, capsys)
    assert rc == 1
    assert out.startswith(f"fleetbench run {folder.run_id}: partial (1 passed, 2 failed, 1 unreachable)\n")
    assert "unreachable: Failed to connect to the host via ssh" in out
    assert "failed: result.json is truncated (ends at line 1 column 33)" in out
    assert "== ICX ==" in out and "failed: Provision the payload stack: No package matching 'numactl'" in out
    assert out.count("#Key KPI") == 1 and "##HOST: h1\n" in out
    statuses = {row["host"]: (row["platform"], row["status"], row["throughput"]) for row in csv_rows(folder)}
    assert statuses == {"h1": ("SPR", "passed", "812.345"), "h2": ("unknown", "unreachable", ""),
                        "h3": ("unknown", "failed", ""), "h4": ("ICX", "failed", "")}
    assert json.loads(folder.read("summary.json"))["status"] == "partial"


def test_rejected_result_shows_no_numbers(make_run, capsys):
    folder = make_run({"h1": [CASE]})
    folder.write_result("h1", doc={**folder.doc("h1"), "host": "somewhere-else"})
    rc, out = report(folder, capsys)
    assert rc == 1
    assert "failed: result.json is for host 'somewhere-else', not 'h1'" in out
    assert "812" not in out and "812" not in folder.read("kpi.csv") and "812" not in folder.read("report.md")
    assert out.endswith(f"\n\n{RULE}\n#Key KPI\n{RULE}\n#No case passed: no KPI to report.\n")


def test_run_without_hosts_is_partial(make_run, capsys):
    folder = make_run({})
    rc, out = report(folder, capsys)
    assert rc == 1
    assert out == (f"fleetbench run {folder.run_id}: partial (no cases)\n\n"
                   f"{RULE}\n#Key KPI\n{RULE}\n#No case passed: no KPI to report.\n")
    assert folder.read("kpi.csv").count("\n") == 1


def test_one_kpi_block_per_passed_host_and_case(make_run, platforms, capsys):
    folder = make_run({"h1": [CASE, "inference-latency"], "h2": [CASE]})
    folder.write_result("h1")
    folder.write_result("h1", "inference-latency", mode="latency",
                        kpi={"throughput": 95.0, "latency_ms": {"p50": 1.05, "p90": 1.1, "p99": 1.5}})
    folder.write_result("h2", platform=platforms["ICX"], params={**folder.doc("h2")["params"], "precision": "avx_fp32"})
    folder.path.joinpath("run.json").write_text(json.dumps({
        **json.loads(folder.read("run.json")),
        "params": {"h1": {CASE: {"precision": "amx_bfloat16"}, "inference-latency": {"precision": "amx_bfloat16"}},
                   "h2": {CASE: {"precision": "avx_fp32"}}}}))
    rc, out = report(folder, capsys)
    assert rc == 0
    blocks = out.split("\n\n##HOST: ")[1:]
    assert [b.splitlines()[:4] for b in blocks] == [
        ["h2", "##CASE: inference-throughput", "##PLATFORM: ICX", "##PRECISION: avx_fp32"],
        ["h1", "##CASE: inference-throughput", "##PLATFORM: SPR", "##PRECISION: amx_bfloat16"],
        ["h1", "##CASE: inference-latency", "##PLATFORM: SPR", "##PRECISION: amx_bfloat16"],
    ]
    assert blocks[2].splitlines()[4:] == [
        RULE, "#Key KPI", RULE,
        "*Throughput (samples/sec): 95.00", "*P50 Latency (ms): 1.05", "*P99 Latency (ms): 1.50"]


def _accuracy_run(make_run, *, synthetic: bool):
    folder = make_run({"h1": ["inference-accuracy"]})
    doc = folder.doc("h1", "inference-accuracy", mode="accuracy")
    doc["params"]["batch_size"] = 100
    doc["kpi"] = {"throughput": 310.5, "accuracy": 50.9174, "samples_timed": 872, "time_measured_s": 2.808}
    if synthetic:
        doc["provenance"]["model"] = {"source": "synthetic", "id": "random-distilbert"}
    else:
        doc["kpi"]["accuracy"] = 91.0550
    folder.write_result("h1", "inference-accuracy", doc=doc)
    return folder


def test_synthetic_accuracy_is_marked_not_meaningful_everywhere(make_run, capsys):
    folder = _accuracy_run(make_run, synthetic=True)
    rc, out = report(folder, capsys)
    assert rc == 0
    assert "  50.92 (n/m)  passed" in out
    assert f"\n\n{NM_NOTE}\n\n" in out
    assert "\n*Throughput (samples/sec): 310.50\n*Accuracy (%): 50.92 (n/m)\n" in out
    assert (csv_rows(folder)[0]["accuracy"], csv_rows(folder)[0]["accuracy_meaningful"]) == ("50.9174", "false")
    row = json.loads(folder.read("summary.json"))["rows"][0]
    assert (row["accuracy"], row["accuracy_meaningful"], row["batch_size"]) == (50.9174, False, 100)
    md = folder.read("report.md")
    assert "| 50.92 (n/m) | passed |" in md and f"\n{NM_NOTE}\n" in md
    assert "*Accuracy (%): 50.92 (n/m)" in md


def test_real_accuracy_has_no_mark_and_no_footnote(make_run, capsys):
    folder = _accuracy_run(make_run, synthetic=False)
    rc, out = report(folder, capsys)
    assert rc == 0
    assert "*Accuracy (%): 91.06\n" in out
    assert "n/m" not in out and "n/m" not in folder.read("report.md")
    assert csv_rows(folder)[0]["accuracy_meaningful"] == "true"


def test_host_text_is_escaped_in_markdown(make_run):
    folder = make_run({"h1": [CASE]})
    folder.write_result("h1", status="failed", kpi=None, reason="a | b <script>x</script>\n## it's no heading")
    write_report(folder.path)
    md = folder.read("report.md")
    assert "| failed | a \\| b &lt;script&gt;x&lt;/script&gt; ## it's no heading |" in md
    assert "<script>" not in md


def test_report_through_the_latest_link(complete_run, capsys):
    rc, _ = report(complete_run, capsys, path=complete_run.path.parent / "latest")
    assert rc == 0
    assert (complete_run.path / "summary.json").is_file()


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp: tmp / "results" / "nope", "no run folder at"),
    (lambda tmp: tmp, "is not a usable run folder: run.json missing"),
])
def test_not_a_run_folder_exits_2_saying_what_to_pass(tmp_path, capsys, make, message):
    assert main(["report", str(make(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err and "results/latest or results/<run_id>" in err


def test_run_dir_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report"])
    assert exc.value.code == 2
    assert "RUN_DIR" in capsys.readouterr().err
