"""The main job over a real fleet: several sshd hosts on loopback, each with its own root folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, SST2, ansible_playbook
from tests.fleet.sshfleet import SshFleet

pytestmark = pytest.mark.e2e
OFFLINE = ["-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}", "-e", "precision=avx_fp32"]


def pids_with(*needles: str) -> list[int]:
    """Processes whose command line contains every needle."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            pids.append(int(pid))
    return pids


def payload_pids(marker: str = "") -> list[int]:
    return pids_with("fleetbench_payload", marker)


def only(*hosts) -> str:
    """--limit to some hosts; localhost stays in, or the report play would be limited out too."""
    return ",".join([*(h.name for h in hosts), "localhost"])


def run_dir_of(results: Path) -> Path:
    return (results / "latest").resolve()


def case_result(run: Path, host: str, case: str = "inference-throughput") -> dict:
    return json.loads((run / "hosts" / host / case / "result.json").read_text())


@pytest.fixture
def fleet(tmp_path, stack_python):
    with SshFleet(tmp_path / "fleet", size=4) as f:
        yield f


def test_three_hosts_in_parallel(fleet, tmp_path):
    hosts = fleet.hosts[:3]
    inventory = fleet.inventory(groups={"emr": [hosts[2].name]})
    results = tmp_path / "results"
    proc = ansible_playbook("-i", str(inventory), "run.yml", *OFFLINE, "-e", "steps=3", "-e", "warmup_steps=1",
                            "--limit", only(*hosts), "-e", f"fleetbench_results_dir={results}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    run = run_dir_of(results)
    windows = []
    for host in hosts:
        result = case_result(run, host.name)
        assert result["status"] == "passed", result["reason"]
        assert result["host"] == host.name and result["kpi"]["throughput"] > 0
        windows.append((result["started_at"], result["finished_at"]))
        # Each host worked in its own root folder.
        assert (host.root / "payload").is_dir()
    # In parallel: every host's case had started before any had finished.
    assert max(start for start, _ in windows) < min(end for _, end in windows), windows
    # The report has a row per host.
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(row["host"] for row in summary["rows"]) == sorted(h.name for h in hosts)
    report = (run / "report.md").read_text()
    assert all(f"| {h.name} |" in report or f" {h.name} " in report for h in hosts), report
    # The declared group (emr) differs from what was detected here: reported, not fatal.
    assert "WARNING: fleet-h2: declared in group emr but detected" in proc.stdout
    host_json = json.loads((run / "hosts" / hosts[2].name / "host.json").read_text())
    assert host_json["platform_mismatch"].startswith("declared in group emr")


def test_faults_stay_local(fleet, tmp_path):
    healthy, down, killed, slow = fleet.hosts
    fleet.stop(down)
    # The slow host's case cannot finish in its timeout; the killed host's payload dies mid-run.
    # (Set as host variables: -e would override the slow host's own values.)
    inventory = fleet.inventory(per_host={slow.name: {"steps": 100000, "case_timeout": 25}}, steps=3,
                                warmup_steps=1)

    stop = threading.Event()

    def kill_when_running() -> None:
        marker = f"fleetbench_payload run --case {killed.root}/"
        while not stop.is_set() and not payload_pids(marker):
            time.sleep(0.2)
        time.sleep(2)  # let it get into its work
        while not stop.is_set() and payload_pids(marker):
            for pid in payload_pids(marker):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    results = tmp_path / "results"
    try:
        proc = ansible_playbook("-i", str(inventory), "run.yml", *OFFLINE, "-e", f"fleetbench_results_dir={results}")
    finally:
        stop.set()
    out = proc.stdout
    assert proc.returncode != 0, "a partial run must fail the playbook"
    assert "The run is partial" in out
    run = run_dir_of(results)
    assert case_result(run, healthy.name)["status"] == "passed"
    summary = json.loads((run / "summary.json").read_text())
    by_host = {r["host"]: r for r in summary["rows"]}
    assert summary["status"] == "partial"
    assert by_host[down.name]["status"] == "unreachable"
    assert by_host[killed.name]["status"] == "failed"
    assert "no result.json" in by_host[killed.name]["reason"]
    assert by_host[slow.name]["status"] == "timeout"
    for host in fleet.hosts:
        assert host.name in out
    survivors = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:300] for pid in payload_pids(str(fleet.workdir))}
    assert not survivors, f"no benchmark process may survive the run: {survivors}"


def interval(result: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(result["started_at"]), datetime.fromisoformat(result["finished_at"])


def test_serial_group_hosts_take_turns_while_others_run_in_parallel(fleet, tmp_path):
    a, b, free = fleet.hosts[:3]
    inventory = fleet.inventory(per_host={a.name: {"fleetbench_serial_group": "box1"},
                                          b.name: {"fleetbench_serial_group": "box1"}})
    results = tmp_path / "results"
    proc = ansible_playbook("-i", str(inventory), "run.yml", *OFFLINE, "-e", "steps=3", "-e", "warmup_steps=1",
                            "--limit", only(a, b, free), "-e", f"fleetbench_results_dir={results}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    run = run_dir_of(results)
    spans = {h.name: interval(case_result(run, h.name)) for h in (a, b, free)}
    (a0, a1), (b0, b1) = spans[a.name], spans[b.name]
    assert a1 <= b0 or b1 <= a0, f"hosts of one serial group ran at the same time: {spans}"
    f0, f1 = spans[free.name]
    assert any(f0 < end and start < f1 for start, end in (spans[a.name], spans[b.name])), \
        f"a host outside the group must run alongside the group's first host: {spans}"


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: too small for the SST-2 files the stage step copies."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_provisioning_and_disk_failures_stay_local(fleet, tmp_path, small_disk):
    healthy, broken, full = fleet.hosts[:3]
    bad_lock = tmp_path / "broken-stack.txt"
    bad_lock.write_text("fleetbench-no-such-package ===== 1\n")
    inventory = fleet.inventory(per_host={
        broken.name: {"provision_lock": str(bad_lock), "fleetbench_host_stack_dir": str(tmp_path / "stacks")},
        full.name: {"fleetbench_host_root": str(small_disk)},
    }, steps=3, warmup_steps=1)
    results = tmp_path / "results"
    proc = ansible_playbook("-i", str(inventory), "run.yml", *OFFLINE, "-e", f"fleetbench_results_dir={results}",
                            "--limit", only(healthy, broken, full))
    out = proc.stdout
    assert proc.returncode != 0, "a partial run must fail the playbook"
    assert "The run is partial" in out
    run = run_dir_of(results)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "partial"
    by_host = {r["host"]: r for r in summary["rows"]}
    assert by_host[healthy.name]["status"] == "passed"
    assert by_host[broken.name]["status"] == "failed"
    assert "pip could not install" in by_host[broken.name]["reason"]
    assert "Invalid requirement" in by_host[broken.name]["reason"]
    assert by_host[full.name]["status"] == "failed"
    assert "no space left" in by_host[full.name]["reason"].lower(), by_host[full.name]["reason"]
    assert not list((tmp_path / "stacks").glob("venv-*")), "a failed install leaves no half-built venv"


def start_playbook(log: Path, *args: str) -> subprocess.Popen:
    """ansible-playbook in the background, in its own process group (as a terminal would run it)."""
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0"}
    with open(log, "w") as out:
        return subprocess.Popen([str(BIN / "ansible-playbook"), *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.5)


def test_interrupted_playbook_leaves_no_payload_behind(fleet, tmp_path):
    host = fleet.hosts[0]
    stale_s = 30
    marker = f"fleetbench_payload run --case {host.root}/"
    log = tmp_path / "playbook.log"
    proc = start_playbook(log, "-i", str(fleet.inventory()), "run.yml", *OFFLINE, "-e", "min_duration_s=3000",
                          "-e", f"benchmark_heartbeat_stale_s={stale_s}", "-e", "benchmark_poll_s=2",
                          "--limit", only(host), "-e", f"fleetbench_results_dir={tmp_path / 'results'}")
    try:
        wait_for(lambda: payload_pids(marker) or proc.poll() is not None, 900, "the payload to start")
        assert proc.poll() is None, log.read_text()[-6000:]
        time.sleep(5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the playbook and its workers
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    interrupted = time.monotonic()
    assert payload_pids(marker), "the payload outlives ansible-playbook (the case the watchdog is for)"
    wait_for(lambda: not payload_pids(marker), stale_s + 60, "the watchdog to stop the payload")
    wait_for(lambda: not pids_with("host_lock.py", str(host.root)), 30, "the host lock to be released")
    assert time.monotonic() - interrupted <= stale_s + 90
    reasons = list(host.root.glob("runs/*/*/watchdog.txt"))
    assert len(reasons) == 1 and "controller stopped polling" in reasons[0].read_text()


def test_one_run_at_a_time_per_host(fleet, tmp_path):
    host = fleet.hosts[0]
    inventory = fleet.inventory()
    marker = f"fleetbench_payload run --case {host.root}/"
    common = ("-i", str(inventory), "run.yml", *OFFLINE, "-e", "steps=3", "-e", "warmup_steps=1", "--limit", only(host))
    # The first case lasts 90 s or more, so the others reach the host lock while it is held.
    first = start_playbook(tmp_path / "first.log", *common, "-e", "min_duration_s=90",
                           "-e", f"fleetbench_results_dir={tmp_path / 'first'}")
    wait_for(lambda: payload_pids(marker) or first.poll() is not None, 900, "the first run's payload")
    # Started while the first run benchmarks the host: one waits for it, one gives up after 3 s.
    second = start_playbook(tmp_path / "second.log", *common, "-e", f"fleetbench_results_dir={tmp_path / 'second'}")
    third = start_playbook(tmp_path / "third.log", *common, "-e", "benchmark_lock_wait_s=3",
                           "-e", f"fleetbench_results_dir={tmp_path / 'third'}")
    for proc in (first, second, third):
        proc.wait(timeout=1200)
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-6000:]
    assert second.returncode == 0, (tmp_path / "second.log").read_text()[-6000:]
    assert "Wait for the host lock" in (tmp_path / "second.log").read_text()
    a, b = (case_result(run_dir_of(tmp_path / name), host.name) for name in ("first", "second"))
    assert interval(a)[1] <= interval(b)[0], "the second run benchmarked the host while the first did"
    for result in (a, b):
        assert isinstance(result["provenance"]["host_state"]["loadavg_1m"], float)

    assert third.returncode != 0
    summary = json.loads((run_dir_of(tmp_path / "third") / "summary.json").read_text())
    row = {r["host"]: r for r in summary["rows"]}[host.name]
    assert row["status"] == "failed" and "host busy: fleetbench run" in row["reason"], row
    assert not (run_dir_of(tmp_path / "third") / "hosts" / host.name / "inference-throughput" / "result.json").exists()
