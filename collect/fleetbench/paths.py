"""Where things live on the controller."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = REPO / "payload"
SCHEMA = PAYLOAD / "fleetbench_payload" / "result.schema.json"
STACK_LOCK = REPO / "requirements" / "stack.txt"


def cache_dir() -> Path:
    """Controller cache (staged assets); FLEETBENCH_CACHE overrides ~/.cache/fleetbench."""
    return Path(os.environ.get("FLEETBENCH_CACHE") or Path.home() / ".cache" / "fleetbench")
