"""`fleetbench html` checked in a real headless Chromium: no console error, the plots render; a screenshot is kept.

The screenshot goes to results/test-artifacts/history-report.png (results/ is not committed).
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetbench.cli import main
from tests.conftest import REPO
from tests.history.synth import Rec, run_id

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
    from tests.history.synth import night, write_run

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


def test_the_console_check_does_see_errors(tmp_path):
    """The check above would fail on a page with a script error: the detection itself works."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    proc = chromium(tmp_path / "profile-bad", "--dump-dom", bad.as_uri())
    assert any("Uncaught" in line for line in console_errors(proc.stderr)), proc.stderr[-3000:]
