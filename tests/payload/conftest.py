"""Fixtures for payload tests: a cached tiny trained model and a case runner (the stack venv's python comes
from tests/conftest.py, which provisions it with the real provision playbook)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from payload_harness import CACHE, PAYLOAD, SST2, STACK_LOCK, TRAIN_TINY, PayloadRunner, build_once, sha256


@pytest.fixture(scope="session")
def tiny_model(stack_python: Path) -> Path:
    """A tiny DistilBERT-architecture SST-2 classifier (about 80% dev accuracy), trained once and cached."""
    package = PAYLOAD / "fleetbench_payload"
    sources = [TRAIN_TINY, package / "synthetic.py", package / "dataset.py"]  # train_tiny.py builds on these
    key = hashlib.sha256("\n".join([sha256(SST2 / "train.tsv"), sha256(STACK_LOCK)] +
                                   [p.read_text(encoding="utf-8") for p in sources]).encode()).hexdigest()[:16]

    def train(out: Path) -> None:
        proc = subprocess.run([str(stack_python), str(TRAIN_TINY), "--train", str(SST2 / "train.tsv"),
                               "--dev", str(SST2 / "dev.tsv"), "--out", str(out)],
                              capture_output=True, text=True, timeout=2400)  # ~2.5 min idle
        assert proc.returncode == 0, f"train_tiny.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    return build_once(CACHE / f"tiny-{key}", train)


@pytest.fixture
def run_payload(stack_python: Path, tmp_path: Path) -> PayloadRunner:
    return PayloadRunner(stack_python, tmp_path)
