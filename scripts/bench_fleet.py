#!/usr/bin/env python3
"""Orchestration overhead of the main job over a simulated fleet: N hosts on this machine (local
connection, each with its own root folder), payload in dry-run mode (every step but inference).

    .venv/bin/python scripts/bench_fleet.py 1 10 50

Prints the playbook wall time per fleet size and the time per host. Not a test: timings are noisy.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"


def inventory(path: Path, size: int) -> Path:
    hosts = {f"sim-{i:03d}": {"ansible_connection": "local",
                              "ansible_python_interpreter": sys.executable,
                              "fleetbench_host_root": str(path / f"sim-{i:03d}")} for i in range(size)}
    inv = path / "inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"fleetbench": {"hosts": hosts}}}}))
    return inv


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10, 50]
    print(f"{'hosts':>5}  {'wall s':>8}  {'s/host':>7}")
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="fleetbench-sim-") as tmp:
            tmp_path = Path(tmp)
            cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory(tmp_path, size)),
                   "run.yml", "-e", "dry_run=true", "-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}",
                   "-e", "precision=avx_fp32", "-e", "provision_os_packages_enabled=false",
                   "-e", f"fleetbench_results_dir={tmp_path / 'results'}"]
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.monotonic() - start
            if proc.returncode != 0:
                sys.exit(f"{size} hosts: playbook failed:\n{proc.stdout[-3000:]}")
            print(f"{size:>5}  {wall:>8.1f}  {wall / size:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
