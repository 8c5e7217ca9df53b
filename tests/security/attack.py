"""Helpers for the attack tests: the real playbook on localhost with a per-test host root and temp folder,
and snapshots of every folder a run may write to, so a test can say exactly what a run added."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import SST2, ansible_playbook

OFFLINE = ["-e", "model_source=synthetic", "-e", f"dataset_dir={SST2}", "-e", "precision=avx_fp32"]


class Playground:
    """One test's controller results, host root, controller cache and TMPDIR, all under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.results, self.host_root = tmp_path / "results", tmp_path / "host"
        self.cache, self.tmpdir = tmp_path / "cache", tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.marker = tmp_path / "pwned"  # what an injected command would create

    def playbook(self, *args: str, playbook: str = "run.yml", root: bool = True, timeout: int = 1800):
        """ansible-playbook PLAYBOOK ARGS; root=False leaves the host roots to the inventory."""
        env = {"TMPDIR": str(self.tmpdir), "FLEETBENCH_CACHE": str(self.cache)}
        where = ["-e", f"fleetbench_host_root={self.host_root}"] if root else []
        return ansible_playbook(playbook, "-e", f"fleetbench_results_dir={self.results}", *where, *args, env=env,
                                timeout=timeout)

    def tree(self) -> set[str]:
        """Every path under the test's folder (relative), but the controller cache."""
        return {str(path.relative_to(self.tmp_path)) for path in self.tmp_path.rglob("*")
                if self.cache not in path.parents and path != self.cache}

    def added_outside_run(self, before: set[str]) -> set[str]:
        """Paths the run added but its run folder, the history database beside it and the host's deliberate
        files (caches, helper scripts, the empty runs folder): the host lock file is gone too."""
        run = (self.results / "latest").resolve() if (self.results / "latest").exists() else None
        return {rel for rel in self.tree() - before
                if not _DELIBERATE.match(rel) and not (run and (self.tmp_path / rel).is_relative_to(run))}


_DELIBERATE = re.compile(r"^(results(/latest|/fleetbench\.sqlite)?"
                         r"|host(/\d+)?(/runs|/(bin|payload|assets|cache)(/.*)?)?)$")
