"""What the instance hands a backend when it prepares a model (no torch, no IPEX: both backends import it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetbench_payload.calibration import Calibration
from fleetbench_payload.errors import CaseError
from fleetbench_payload.log import Log

# (the callable that runs one batch, what ran: backend, path, dtype, ...)
Prepared = tuple[Callable[..., Any], dict[str, Any]]


@dataclass(frozen=True)
class PrepareContext:
    precision: str
    batch_size: int
    log: Log
    encode: Callable[[list[str]], tuple[Any, ...]]  # sentences -> the model's inputs, padded like the run's
    calibration: Calibration | None = None  # int8 precisions only


# (model, example inputs, context) -> Prepared: one per precision in each backend's PRECISIONS table.
Preparer = Callable[[Any, tuple[Any, ...], PrepareContext], Prepared]


def pick(backend: str, precisions: dict[str, Preparer], precision: str) -> Preparer:
    if precision not in precisions:
        raise CaseError(f"precision {precision} is not implemented in the {backend} backend")
    return precisions[precision]
