"""Start the instance processes, pinned and preloaded, hold them at a barrier, collect what they report.

Each instance is ``python -m fleetbench_payload instance --spec SPEC`` in a fresh interpreter (no OpenMP or
allocator state inherited), started as ``numactl --physcpubind=CPUS --membind=NODES`` where numactl works,
else with its affinity set before exec; its environment carries LD_PRELOAD (jemalloc/tcmalloc, Intel
OpenMP when found), the OpenMP/oneDNN settings and the Inductor cache folder.

The barrier: each process writes ``ready`` on a pipe when its warm-up (and ISA check) is done and waits for
``go`` on its stdin; the launcher sends ``go`` to all once all are ready. A process that fails or exits
before that stops the others. Standard library only.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fleetbench_payload.errors import CaseError
from fleetbench_payload.log import Log
from fleetbench_payload.placement import Runtime, numactl_args
from fleetbench_payload.spec import InstanceSpec

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.2
STOP_GRACE_S = 10


def command(spec: InstanceSpec, runtime: Runtime, nodes: list[int]) -> list[str]:
    base = [sys.executable, "-m", "fleetbench_payload", "instance", "--spec", str(Path(spec.result_path).with_suffix(
        ".spec.json"))]
    return [runtime.numactl, *numactl_args(spec.cpus, nodes), *base] if runtime.numactl else base


def run(specs: list[InstanceSpec], runtime: Runtime, nodes: list[list[int]], env: dict[str, str],
        log: Log) -> list[dict[str, Any]]:
    """Run the instance processes to the end; their result documents in spec order, or CaseError."""
    child_env = {**env, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])}
    procs: list[subprocess.Popen[bytes]] = []
    ready_pipes: list[int] = []
    try:
        for spec, spec_nodes in zip(specs, nodes, strict=True):
            read_fd = write_fd = -1
            extra = dict(spec.extra)
            if spec.barrier:
                read_fd, write_fd = os.pipe()
                extra["ready_fd"] = write_fd
            spec = replace(spec, extra=extra)
            spec.save(Path(spec.result_path).with_suffix(".spec.json"))
            argv = command(spec, runtime, spec_nodes)
            cpus = set(spec.cpus)
            log.info(f"starting instance {spec.index}: {' '.join(argv[:3]) if runtime.numactl else 'python'} "
                     f"(CPUs {sorted(cpus)})")
            proc = subprocess.Popen(
                argv, env=child_env, stdin=subprocess.PIPE if spec.barrier else subprocess.DEVNULL,
                pass_fds=(write_fd,) if spec.barrier else (),
                preexec_fn=None if runtime.numactl else (lambda cpus=cpus: os.sched_setaffinity(0, cpus)))
            if spec.barrier:
                os.close(write_fd)
            procs.append(proc)
            ready_pipes.append(read_fd)
        return _supervise(specs, procs, ready_pipes, log)
    finally:
        _stop(procs)
        for fd in ready_pipes:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _read_result(spec: InstanceSpec, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        return json.loads(Path(spec.result_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"index": spec.index, "error": f"exited with code {proc.returncode} before reporting"}


def _supervise(specs: list[InstanceSpec], procs: list[subprocess.Popen[bytes]], ready_pipes: list[int],
               log: Log) -> list[dict[str, Any]]:
    barrier = specs[0].barrier
    ready: set[int] = set()
    released = not barrier
    results: dict[int, dict[str, Any]] = {}
    while len(results) < len(procs):
        waiting = [fd for i, fd in enumerate(ready_pipes) if barrier and i not in ready and fd >= 0]
        if waiting:
            readable = select.select(waiting, [], [], POLL_S)[0]
        else:
            readable = []
            time.sleep(POLL_S)
        for i, fd in enumerate(ready_pipes):
            if fd in readable and b"ready" in os.read(fd, 64):
                ready.add(i)
        for i, proc in enumerate(procs):
            if i not in results and proc.poll() is not None:
                results[i] = _read_result(specs[i], proc)
                if "error" in results[i]:
                    error = results[i]
                    prefix = f"instance {error['index']}: " if len(procs) > 1 else ""
                    raise CaseError(prefix + error["error"], details=error)
                if not released:
                    raise CaseError(f"instance {i} finished without waiting at the barrier")
        if not released and len(ready) == len(procs):
            log.info(f"all {len(procs)} instances ready: starting the timed phase together")
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.close()
            released = True
    return [results[i] for i in range(len(procs))]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop what still runs (after a failure, or when the launcher itself is being stopped)."""
    for proc in procs:
        if proc.poll() is None:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()  # a process waiting at the barrier reads EOF and stops
                except OSError:
                    pass
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
