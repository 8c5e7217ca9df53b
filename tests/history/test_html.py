"""`fleetbench html` checked in a real headless Chromium: no console error, the plots render; a screenshot is kept.

The screenshot goes to results/test-artifacts/history-report.png (results/ is not committed).
"""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from fleetbench.cli import main
from fleetbench.plots import time_labels
from tests.conftest import REPO
from tests.history.synth import Rec, night, run_id, write_run

ARTIFACTS = REPO / "results" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CONSOLE_ERROR = re.compile(r"Uncaught|CONSOLE\(\d+\).*(?:error|Error)|:ERROR:CONSOLE|console\.error|"
                           r"Failed to load resource|Refused to", re.IGNORECASE)


def chromium(user_data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "Chromium is not installed: scripts/test-deps.sh installs the Debian package chromium"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={user_data}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=3000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
            if CONSOLE_ERROR.search(line)]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """A history of 24 nights on SPR, EMR and ICX hosts (a 12% throughput drop on spr-1 from night 16)."""
    tmp = tmp_path_factory.mktemp("html")
    url = str(tmp / "h.sqlite")
    rng = random.Random(3)
    dirs = []
    for i in range(24):
        precision = ("avx_fp32", "amx_bfloat16")[i % 2]
        step = 0.88 if i >= 16 else 1.0
        recs = [Rec("spr-1", "SPR", precision=precision, throughput=1000 * step * (1 + rng.gauss(0, 0.01)),
                    p50=2.0, p99=2.6),
                Rec("emr-1", "EMR", precision=precision, throughput=1150 * (1 + rng.gauss(0, 0.01)), p50=1.8, p99=2.3),
                Rec("spr-1", "SPR", case="inference-latency", precision=precision, throughput=400.0,
                    p50=2.5 * (1 + rng.gauss(0, 0.01)), p99=3.1)]
        recs.append(Rec("icx-1", "ICX", precision=precision, throughput=600.0 * (1 + rng.gauss(0, 0.01)))
                    if precision == "avx_fp32" else
                    Rec("icx-1", "ICX", precision=precision, status="skipped", reason="needs amx_bf16 <b>&"))
        dirs.append(str(write_run(tmp / "results", run_id(i), night(i).isoformat(), recs)))
    assert main(["ingest", "--db", url, *dirs]) == 0
    out = tmp / "report.html"
    assert main(["html", "--db", url, "-o", str(out), "--reference-platform", "SPR"]) == 0
    return out, url


def test_the_report_is_self_contained_and_escapes_host_text(report):
    html = report[0].read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    assert "needs amx_bf16 &lt;b&gt;&amp;" in html
    assert f"Run {run_id(23)}" in html


def test_the_report_loads_in_chromium_without_console_errors_and_the_plots_render(report, tmp_path):
    page = report[0].as_uri()
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert console_errors(dom.stderr) == []
    charts = re.findall(r"<svg[^>]*data-points=\"(\d+)\"", dom.stdout)
    # Run: throughput + latency for two cases; history: 4 trend charts (2 cases x 2 precisions).
    assert len(charts) == 8 and all(int(n) > 0 for n in charts)
    assert len(re.findall(r"<rect class=\"bar\"", dom.stdout)) == 2 * 2 + 1 * 2  # newest run: ICX skipped
    assert len(re.findall(r"<circle class=\"point\"", dom.stdout)) == 12 * 3 + 12 * 2 + 12 + 12
    changes = re.findall(r"<circle class=\"change-point\"[^>]*><title>([^<]*)</title>", dom.stdout)
    # The drop starts on night 16 (avx_fp32) and is first seen in amx_bfloat16 on night 17.
    assert changes == [f"SPR: new level from run {run_id(16)}", f"SPR: new level from run {run_id(17)}"]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "history-report.png"
    shot.unlink(missing_ok=True)
    taken = chromium(tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1400,3200",
                     "--hide-scrollbars", page)
    assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr[-3000:]
    print(f"screenshot: {shot}")


# Appended to a copy of the report (the report itself has no script): where the browser laid things out.
LAYOUT_PROBE = """<script>
const tables = [...document.querySelectorAll("table")].map(t => {
  const box = t.parentElement;
  return {table: t.className, container: box.className, overflowX: getComputedStyle(box).overflowX,
          scrolls: box.scrollWidth > box.clientWidth, fits: box.getBoundingClientRect().right <= innerWidth};
});
const ticks = [...document.querySelectorAll("text.x-tick")].map(t => {
  const svg = t.ownerSVGElement.getBoundingClientRect(), own = t.getBoundingClientRect();
  return {text: [...t.childNodes].map(n => n.textContent).join(" "), inside: own.left >= svg.left - 0.5};
});
document.body.setAttribute("data-layout", JSON.stringify(
  {tables, ticks, pageScrolls: document.documentElement.scrollWidth > innerWidth}));
</script>"""


def layout(page: Path, tmp_path: Path, width: int) -> dict:
    """How Chromium lays `page` out in a window `width` pixels wide (see LAYOUT_PROBE)."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = chromium(tmp_path / "profile-layout", f"--window-size={width},900", "--dump-dom", probed.as_uri())
    found = re.search(r'data-layout="([^"]*)"', dom.stdout)
    assert dom.returncode == 0 and found, dom.stderr[-3000:]
    return json.loads(html.unescape(found[1]))


def test_wide_tables_scroll_inside_their_container_and_the_page_does_not(report, tmp_path):
    seen = layout(report[0], tmp_path, 640)
    assert {t["table"] for t in seen["tables"]} == {"records", "comparison"}
    assert all(t["container"] == "scroll" and t["overflowX"] == "auto" and t["fits"] for t in seen["tables"])
    # At 640 pixels both tables are wider than the page: they scroll, the page does not.
    assert all(t["scrolls"] for t in seen["tables"]) and seen["pageScrolls"] is False


@pytest.fixture(scope="module")
def same_day(tmp_path_factory) -> Path:
    """Three runs: two on 2025-01-01 (02:00 and 14:00 UTC), one on 2025-01-02."""
    tmp = tmp_path_factory.mktemp("same-day")
    url = str(tmp / "h.sqlite")
    starts = [night(0), night(0) + timedelta(hours=12), night(1)]
    dirs = [write_run(tmp / "results", f"{start:%Y%m%dT%H%M%SZ}-{i:06x}", start.isoformat(),
                      [Rec("spr-1", "SPR", throughput=1000.0 + i)]) for i, start in enumerate(starts)]
    assert main(["ingest", "--db", url, *map(str, dirs)]) == 0
    assert main(["html", "--db", url, "-o", str(tmp / "report.html")]) == 0
    return tmp / "report.html"


def test_trend_ticks_of_runs_on_the_same_day_show_their_times(same_day, tmp_path):
    seen = layout(same_day, tmp_path, 1200)
    dates = [t for t in seen["ticks"] if re.match(r"\d{4}-", t["text"])]
    assert [t["text"] for t in dates] == ["2025-01-01 02:00", "2025-01-01 14:00", "2025-01-02 02:00"]
    assert all(t["inside"] for t in seen["ticks"])  # not cut off at the chart's left edge


def test_time_labels_are_as_short_as_keeps_runs_apart():
    assert time_labels(["2025-01-01T02:00:00Z", "2025-01-02T02:00:00Z"]) == [("2025-01-01", ""), ("2025-01-02", "")]
    assert time_labels(["2025-01-01T02:00:10Z", "2025-01-01T02:00:40Z", "2025-01-02T02:00:00Z"]) == [
        ("2025-01-01", "02:00:10"), ("2025-01-01", "02:00:40"), ("2025-01-02", "02:00:00")]
    assert time_labels(["2025-01-01T02:00:00Z"] * 2) == [("2025-01-01", "")] * 2  # one run's records


def test_the_console_check_does_see_errors(tmp_path):
    """The check above would fail on a page with a script error: the detection itself works."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    proc = chromium(tmp_path / "profile-bad", "--dump-dom", bad.as_uri())
    assert any("Uncaught" in line for line in console_errors(proc.stderr)), proc.stderr[-3000:]
