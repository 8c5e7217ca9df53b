"""Hosts are left clean: after a normal or a timed-out run no payload process and no working folder
remains, only the caches; playbooks/cleanup.yml removes a killed run's leftovers (and the caches when
asked), and changes nothing under --check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import BIN, REPO
from tests.playbook.test_runner_cli import payload_running
from tests.security.attack import OFFLINE, Playground

pytestmark = pytest.mark.e2e


def _wait_for_payload(root, proc=None, limit_s=600):
    deadline = time.monotonic() + limit_s
    while not payload_running(root) and time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, "the playbook ended before the payload started"
        time.sleep(0.5)
    assert payload_running(root), "the payload never started"


def test_timed_out_case_leaves_no_process_or_folder(tmp_path, stack_python):
    play = Playground(tmp_path)
    proc = play.playbook(*OFFLINE, "-e", "steps=1000000", "-e", "case_timeout=20", "-e", "benchmark_poll_s=1")
    assert proc.returncode == 2, proc.stdout[-4000:]
    run = (play.results / "latest").resolve()
    result = json.loads((run / "hosts/localhost/inference-throughput/result.json").read_text())
    assert result["status"] == "timeout", result["reason"]
    assert not payload_running(play.host_root)
    assert list((play.host_root / "runs").iterdir()) == []
    assert not list(play.host_root.glob("benchmark.lock*")), "the host lock file was left behind"


def _leftovers(play):
    """What a killed synthetic-model build and a killed calibration leave, beside real caches."""
    cache = play.host_root / "cache"
    (cache / ".synthetic-0123.k1ll3d").mkdir(parents=True)
    (cache / ".synthetic-0123.k1ll3d" / "model.safetensors").write_bytes(b"half")
    (cache / "calibration" / "ipex-avx_int8-abc").mkdir(parents=True)
    (cache / "calibration" / "ipex-avx_int8-abc" / "recipe.json").write_text("{}")
    (cache / "calibration" / "ipex-avx_int8-abc" / ".qconf.json.4242").write_text("half")
    (cache / "calibration" / "ipex-avx_int8-abc.lock").write_text("")
    stacks = play.tmp_path / "stacks"
    (stacks / "venv-0123456789ab" / "bin").mkdir(parents=True)
    (stacks / ".lock").write_text("")
    (stacks / "not-ours.txt").write_text("a file fleetbench did not write")
    return stacks


def _cleanup(play, stacks, *extra):
    return play.playbook("-e", f"fleetbench_host_stack_dir={stacks}", *extra, playbook="playbooks/cleanup.yml",
                         timeout=600)


def test_cleanup_playbook_after_a_killed_controller(tmp_path, stack_python):
    play = Playground(tmp_path)
    env = {**os.environ, "TMPDIR": str(play.tmpdir), "ANSIBLE_FORCE_COLOR": "0"}
    controller = subprocess.Popen(
        # benchmark_poll_s=30: the host's watchdog waits 300 s for a silent controller, cleanup comes first.
        [str(BIN / "ansible-playbook"), "run.yml", *OFFLINE, "-e", "steps=1000000", "-e", "benchmark_poll_s=30",
         "-e", f"fleetbench_results_dir={play.results}", "-e", f"fleetbench_host_root={play.host_root}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_payload(play.host_root, controller)
    finally:
        os.killpg(controller.pid, signal.SIGKILL)  # the controller dies without a word to the hosts
        controller.wait()
    time.sleep(2)
    assert payload_running(play.host_root), "the payload runs on, detached (this is what cleanup is for)"
    run_id = (play.results / "latest").resolve().name
    stacks = _leftovers(play)
    cache = play.host_root / "cache"

    check = _cleanup(play, stacks, "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    assert payload_running(play.host_root) and (play.host_root / "runs" / run_id).is_dir()
    assert (cache / ".synthetic-0123.k1ll3d").is_dir()
    assert f"{play.host_root}/runs/{run_id}" in check.stdout  # --check says what it would remove

    done = _cleanup(play, stacks)
    assert done.returncode == 0, done.stdout[-4000:]
    assert not payload_running(play.host_root)
    assert list((play.host_root / "runs").iterdir()) == []
    assert not (cache / ".synthetic-0123.k1ll3d").exists()
    assert not (cache / "calibration" / "ipex-avx_int8-abc" / ".qconf.json.4242").exists()
    # The caches stay: calibration (with its lock), stack venv, assets, payload.
    assert (cache / "calibration" / "ipex-avx_int8-abc" / "recipe.json").is_file()
    assert (cache / "calibration" / "ipex-avx_int8-abc.lock").is_file()
    assert (stacks / "venv-0123456789ab").is_dir() and (stacks / ".lock").is_file()
    assert (play.host_root / "assets").is_dir() and (play.host_root / "payload").is_dir()

    again = _cleanup(play, stacks)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]

    caches = _cleanup(play, stacks, "-e", "cleanup_caches=true")
    assert caches.returncode == 0, caches.stdout[-4000:]
    assert sorted(p.name for p in play.host_root.iterdir()) == []
    assert sorted(p.name for p in stacks.iterdir()) == ["not-ours.txt"]


def test_cleanup_rejects_a_bad_flag(tmp_path):
    play = Playground(tmp_path)
    proc = _cleanup(play, tmp_path / "stacks", "-e", "cleanup_caches=maybe")
    assert proc.returncode != 0
    assert 'cleanup_caches="maybe" is not allowed: expected true or false.' in proc.stdout
