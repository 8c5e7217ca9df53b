"""The int8 calibration recipe and the host cache it lives in, and the cached fp32 accuracy reference.

Calibration runs on SST-2 **train** sentences (dev is what accuracy is measured on, so it never calibrates):
``SENTENCES`` sentences drawn with a fixed seed, padded to ``max_seq_length``, in batches of ``BATCH``
whatever the case's batch size, on a model prepared for that batch shape. The result (IPEX: the qconf
summary JSON; inductor: the PT2E observers' statistics) is cached under the host's cache folder, and every
run, the calibrating one included, loads it from there into the model prepared for its own batch size. The
cache key holds everything the statistics depend on, so a stale entry is never picked up: the model files'
hashes, the stack lock's hash, the backend, the precision, max_seq_length and this recipe (its version,
sentence count, batch, seed and train.tsv's hash). Concurrent instances calibrate once: the first takes a
file lock, the others wait and reuse what it wrote.

Standard library only (the backends pass in how to tokenize and what to save).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE = 1  # bump when the recipe below changes: old cache entries then stop matching
SENTENCES = 256
BATCH = 32
SEED = 0
REFERENCE_RECIPE = 1  # the fp32 accuracy reference (eager transformers model, fp32)


def digest(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def pick(sentences: list[str], count: int = SENTENCES, seed: int = SEED) -> list[str]:
    """``count`` sentences drawn without replacement with a fixed seed, in the drawn order."""
    rows = random.Random(seed).sample(  # noqa: S311 - a reproducible draw, not a secret
        range(len(sentences)), min(count, len(sentences)))
    return [sentences[r] for r in rows]


@dataclass(frozen=True)
class Calibration:
    """Where the calibration of one model x stack x backend x precision x max_seq_length is cached."""

    folder: Path
    key: str
    spec: dict[str, Any]
    sentences: list[str]

    @classmethod
    def plan(cls, cache_dir: Path, *, backend: str, precision: str, max_seq_length: int, model_files: dict[str, str],
             lock_sha256: str | None, train_sentences: list[str], train_sha256: str) -> Calibration:
        spec = {"recipe": RECIPE, "sentences": SENTENCES, "batch": BATCH, "seed": SEED, "split": "train",
                "train_sha256": train_sha256,
                "backend": backend, "precision": precision, "max_seq_length": max_seq_length,
                "model_files": model_files, "lock_sha256": lock_sha256}
        key = digest(spec)
        return cls(cache_dir / "calibration" / f"{backend}-{precision}-{key}", key, spec, pick(train_sentences))

    def batches(self, batch_size: int = BATCH) -> Iterator[list[str]]:
        """The calibration sentences in batches of ``batch_size``; the last one is filled from the start."""
        n = len(self.sentences)
        for start in range(0, n, batch_size):
            yield [self.sentences[(start + i) % n] for i in range(batch_size)]

    def file(self, name: str) -> Path:
        return self.folder / name

    def complete(self) -> bool:
        return (self.folder / "recipe.json").is_file()

    def mark_complete(self, details: dict[str, Any]) -> None:
        """Written last: a folder without it (a calibration killed half-way) is recalibrated."""
        (self.folder / "recipe.json").write_text(json.dumps({**self.spec, **details}, sort_keys=True, indent=1),
                                                 encoding="utf-8")

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder.with_suffix(".lock"), "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure(self, name: str, log: Any, calibrate: Callable[[Path], dict[str, Any]]) -> tuple[Path, bool]:
        """(the cached file ``name``, whether it was cached). On a miss ``calibrate(tmp)`` writes it to ``tmp``
        and returns details for recipe.json; it is renamed into place, then the folder is marked complete."""
        path = self.file(name)
        with self.locked():
            if self.complete() and path.is_file():
                log.info(f"using cached calibration {self.folder}")
                return path, True
            log.info(f"calibrating on {len(self.sentences)} train sentences into {self.folder}")
            tmp = self.file(f".{name}.{os.getpid()}")
            details = calibrate(tmp)
            os.replace(tmp, path)
            self.mark_complete({"file": name, **details})
            return path, False

    def describe(self, cached: bool, seconds: float) -> dict[str, Any]:
        return {"cached": cached, "key": self.key, "folder": str(self.folder), "split": "train",
                "sentences": len(self.sentences), "batch": BATCH, "seed": SEED, "recipe": RECIPE,
                "seconds": round(seconds, 3)}


def reference_file(cache_dir: Path, *, model_files: dict[str, str], dev_sha256: str, max_seq_length: int,
                   lock_sha256: str | None) -> Path:
    """Where the fp32 accuracy of one model on one dev set at one max_seq_length is cached."""
    key = digest({"recipe": REFERENCE_RECIPE, "model_files": model_files, "dev_sha256": dev_sha256,
                  "max_seq_length": max_seq_length, "lock_sha256": lock_sha256})
    return cache_dir / "accuracy-fp32" / f"{key}.json"


GUARD_POINTS = 1.0


def accuracy_guard(accuracy: float, reference: dict[str, Any], meaningful: bool) -> dict[str, Any]:
    """The result's accuracy_guard: flagged when a reduced precision is more than GUARD_POINTS below fp32."""
    drop = reference["accuracy"] - accuracy
    return {"reference": "fp32 eager transformers model, same model, dev set and max_seq_length",
            "fp32_accuracy": reference["accuracy"], "accuracy": accuracy, "drop_points": drop,
            "threshold_points": GUARD_POINTS, "meaningful": meaningful,
            "flagged": bool(meaningful and drop > GUARD_POINTS), "cached": bool(reference.get("cached")),
            "cache_file": reference.get("cache_file", "")}
