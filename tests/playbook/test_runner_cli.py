"""`fleetbench run`: the same playbook through ansible-runner, with live progress and Ctrl-C handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, SST2

pytestmark = pytest.mark.e2e
OFFLINE = ["--model-source", "synthetic", "--dataset-dir", str(SST2), "--precision", "avx_fp32"]


def fleetbench(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "fleetbench"), *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def payload_running(root: Path) -> list[int]:
    """Payload processes working under this test's host root (other runs on the machine are not ours)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"fleetbench_payload\0run" in cmd and str(root).encode() in cmd:
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_help_documents_every_playbook_parameter():
    from fleetbench.params import PARAMS
    out = subprocess.run([str(BIN / "fleetbench"), "run", "--help"], capture_output=True, text=True).stdout
    flat = " ".join(out.split())
    for p in PARAMS:
        assert f"--{p.name.replace('_', '-')}" in flat and f"playbook variable {p.name})" in flat


def test_run_shows_progress_and_keeps_runner_artifacts(tmp_path, stack_python):
    results = tmp_path / "results"
    proc = fleetbench("run", *OFFLINE, "--steps", "40", "--warmup-steps", "2", "--results-dir", str(results),
                      "-e", "benchmark_poll_s=1")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-5000:]
    assert "[controller] run folder" in out
    assert "[localhost] inference-throughput: step" in out and "/40" in out
    assert "#Key KPI" in out
    run = (results / "latest").resolve()
    assert (run / "ansible-runner" / "artifacts" / "main" / "rc").read_text().strip() == "0"
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_ctrl_c_stops_the_hosts_and_keeps_what_was_collected(tmp_path, stack_python):
    results, root = tmp_path / "results", tmp_path / "host-root"
    proc = fleetbench("run", *OFFLINE, "--steps", "100000", "--results-dir", str(results),
                      "-e", f"fleetbench_host_root={root}", start_new_session=True)
    deadline = time.monotonic() + 600
    while not payload_running(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert payload_running(root), "the payload never started"
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "interrupted: stopping" in out, out[-4000:]
    assert not payload_running(root), "Ctrl-C must stop the benchmark processes"
    assert not (root / "runs" / (results / "latest").resolve().name).exists()
    run = (results / "latest").resolve()
    assert (run / "run.json").exists() and (run / "hosts" / "localhost" / "host.json").exists()
