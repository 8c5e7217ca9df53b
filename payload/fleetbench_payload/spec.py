"""What one instance process runs and where; plain data (JSON between the launcher and the process)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InstanceSpec:
    index: int  # the process
    streams: list[list[int]]  # the CPUs of each stream; more than one only with weight sharing
    first_stream: int  # global index of this process's first stream
    mode: str
    precision: str
    backend: str
    batch_size: int
    max_seq_length: int
    steps: int
    warmup_steps: int
    min_duration_s: int
    model_folder: str
    use_safetensors: bool
    model_files: dict[str, str]
    dev_tsv: str
    train_tsv: str
    cache_dir: str
    lock_sha256: str | None
    verify_isa: bool
    host_lacks_isa: bool
    accuracy_reference: bool  # compute (or reuse) the fp32 accuracy of the same model for the accuracy guard
    log_path: str
    log_prefix: str
    result_path: str
    barrier: bool = False  # wait for the launcher's go before the timed phase (more than one process)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpus(self) -> list[int]:
        return [c for stream in self.streams for c in stream]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> InstanceSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))
