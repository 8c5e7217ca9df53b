#!/usr/bin/env python3
"""Wall time of the main job over 1 and over 3 SSH hosts (sshd on loopback, each with its own root), same
cases, and the orchestration overhead: playbook wall time minus the payload's timed phases. Then the time
of a second, no-change provision over the 3 hosts. Not a test: timings are noisy.

    .venv/bin/python scripts/bench_ssh_fleet.py [--steps 20]

Needs root and sshd (scripts/test-deps.sh). Each size runs twice: the first run also copies the payload and
assets into the fresh host roots and builds each host's synthetic model; the second is the steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fleet.sshfleet import SshFleet  # noqa: E402 - the test suite's sshd fleet

SST2 = REPO.parent / "shared" / "data" / "sst2"
PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def playbook(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run([PLAYBOOK, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"})
    return time.monotonic() - started, proc


def timed_phases(run_dir: Path) -> list[float]:
    seconds = []
    for path in sorted(run_dir.glob("hosts/*/*/result.json")):
        doc = json.loads(path.read_text())
        if doc.get("status") != "passed":
            raise SystemExit(f"{path}: {doc.get('status')}: {doc.get('reason')}")
        seconds.append(doc["kpi"]["wall_s"])
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'hosts':>5} {'try':>4} {'wall s':>7} {'timed s (per host)':>24} {'overhead s':>10}")
    with tempfile.TemporaryDirectory(prefix="fleetbench-ssh-") as tmp, SshFleet(Path(tmp) / "fleet", size=3) as fleet:
        inventory = fleet.inventory()
        common = ["-i", str(inventory), "run.yml", "-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}",
                  "-e", "precision=avx_fp32", "-e", f"steps={args.steps}", "-e", "warmup_steps=2",
                  "-e", "provision_os_packages_enabled=false"]
        for size in (1, 3):
            limit = ",".join(h.name for h in fleet.hosts[:size])
            for attempt in (1, 2):
                results = Path(tmp) / f"results-{size}-{attempt}"
                wall, proc = playbook(*common, "--limit", limit, "-e", f"fleetbench_results_dir={results}")
                if proc.returncode != 0:
                    print(proc.stdout[-3000:], proc.stderr[-2000:])
                    return 1
                timed = timed_phases((results / "latest").resolve())
                # Hosts run in parallel: the overhead is the wall time beyond the longest timed phase.
                print(f"{size:>5} {attempt:>4} {wall:>7.1f} {' / '.join(f'{t:.1f}' for t in timed):>24} "
                      f"{wall - max(timed):>10.1f}", flush=True)
        wall, proc = playbook("-i", str(inventory), "playbooks/provision.yml", "-e",
                              "provision_os_packages_enabled=false")
        recap = [line for line in proc.stdout.splitlines() if "changed=" in line]
        print(f"second provision over 3 hosts: {wall:.1f} s, rc {proc.returncode}")
        for line in recap:
            print(f"  {line.strip()}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
