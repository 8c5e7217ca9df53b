"""The host-side helpers of the benchmark role: the heartbeat watchdog and the host lock (stdlib scripts)."""

import json
import subprocess
import sys
import time
from pathlib import Path

from fleetbench import paths

FILES = paths.REPO / "roles" / "benchmark" / "files"


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that is gone."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_watchdog_passes_the_exit_status_through_while_polled(tmp_path):
    beat = tmp_path / "heartbeat"
    proc = subprocess.run([sys.executable, str(FILES / "watchdog.py"), "--heartbeat", str(beat), "--stale-after", "5",
                           "--reason-file", str(tmp_path / "why"), "--", "sh", "-c", "exit 7"], timeout=30)
    assert proc.returncode == 7 and beat.is_file() and not (tmp_path / "why").exists()


def test_watchdog_kills_the_whole_group_when_the_heartbeat_goes_stale(tmp_path):
    pids = tmp_path / "pids"
    # A leader and a worker in its group, both ignoring SIGTERM: only the SIGKILL that follows stops them.
    script = f"trap '' TERM; sleep 300 & echo $$ $! > {pids}; wait"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(FILES / "watchdog.py"), "--heartbeat", str(tmp_path / "heartbeat"),
                           "--stale-after", "2", "--reason-file", str(tmp_path / "why"), "--", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert time.monotonic() - start < 2 + 10 + 5  # bound, grace, polling
    assert "controller stopped polling" in (tmp_path / "why").read_text() and "bound 2 s" in proc.stderr
    time.sleep(0.5)
    assert not [pid for pid in map(int, pids.read_text().split()) if alive(pid)]


def lock_cmd(tmp_path, run: str, *extra: str) -> list[str]:
    return [sys.executable, str(FILES / "host_lock.py"), "hold", "--lock", str(tmp_path / "benchmark.lock"),
            "--owner", run, "--state", str(tmp_path / f"{run}.json"), "--heartbeat", str(tmp_path / f"{run}.beat"),
            *extra]


def state(tmp_path, run: str) -> dict:
    try:
        return json.loads((tmp_path / f"{run}.json").read_text())
    except (OSError, ValueError):
        return {}


def test_host_lock_one_holder_the_next_gives_up_then_gets_it_after_release(tmp_path):
    first = subprocess.Popen(lock_cmd(tmp_path, "run-a"))
    deadline = time.monotonic() + 20
    while state(tmp_path, "run-a").get("state") != "held":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = subprocess.run(lock_cmd(tmp_path, "run-b", "--wait-s", "2"), timeout=30)
    assert busy.returncode == 1
    reason = state(tmp_path, "run-b")["reason"]
    assert reason.startswith("host busy: fleetbench run run-a") and "benchmark_lock_wait_s=2" in reason

    # run-c waits while run-a releases: it must end up holding the (new) lock file, not the unlinked one.
    second = subprocess.Popen(lock_cmd(tmp_path, "run-c", "--stale-after", "2"))
    beat_c = tmp_path / "run-c.beat"
    deadline = time.monotonic() + 20
    while state(tmp_path, "run-c").get("state") != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.2)
        beat_c.touch()
    (tmp_path / "run-a.beat").unlink()  # the run's working folder was removed: release
    assert first.wait(timeout=10) == 0
    deadline = time.monotonic() + 20
    while state(tmp_path, "run-c").get("state") != "held":
        assert time.monotonic() < deadline
        time.sleep(0.2)
        beat_c.touch()
    beat_c.touch()  # the controller is still watching run-c
    assert json.loads((tmp_path / "benchmark.lock.owner").read_text())["run_id"] == "run-c"
    third = subprocess.Popen(lock_cmd(tmp_path, "run-d", "--wait-s", "1"))
    while third.poll() is None:
        beat_c.touch()
        time.sleep(0.2)
    assert third.returncode == 1 and state(tmp_path, "run-d")["state"] == "gave_up", \
        "a second holder got the lock while run-c held it"
    # Nobody polls run-c: its heartbeat goes stale and the holder lets go by itself, leaving no lock files.
    assert second.wait(timeout=15) == 0
    assert not (tmp_path / "benchmark.lock").exists() and not (tmp_path / "benchmark.lock.owner").exists()
