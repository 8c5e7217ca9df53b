"""What one instance runs and where; plain data, so the launcher needs no torch to build it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceSpec:
    index: int
    cpus: list[int]
    mode: str
    precision: str
    batch_size: int
    max_seq_length: int
    steps: int
    warmup_steps: int
    model_folder: str
    use_safetensors: bool
    dev_tsv: str
    log_path: str
    log_prefix: str
