"""fleetbench run's progress lines for a host that waits for another run's host lock."""

import io
import json

from fleetbench.runner import Progress


def retry(task: str, stdout: dict) -> dict:
    return {"event": "runner_retry", "event_data": {"host": "h1", "task": task, "res": {"stdout": json.dumps(stdout)}}}


def test_waiting_for_the_host_lock_names_the_run_holding_it():
    out = io.StringIO()
    progress = Progress(out)
    task = "Wait for the host lock (another fleetbench run may be benchmarking this host)"
    progress(retry(task, {"state": "waiting", "holder": {"run_id": "20260101T000000Z-abc123"}, "waited_s": 12}))
    progress(retry(task, {}))  # the lock holder has not written its state yet: no line
    assert out.getvalue() == ("[h1] waiting for the host lock: 20260101T000000Z-abc123 is benchmarking this host "
                              "(12 s)\n")
