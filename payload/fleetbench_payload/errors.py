"""The one exception a case ends with, and the stage wrapper that turns real exceptions into it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MAX_REASON = 1000


class CaseError(Exception):
    """The case cannot pass. ``reason`` is the one-line reason recorded in result.json."""

    def __init__(self, reason: str, status: str = "failed", details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.details = details or {}  # what was recorded on the way (e.g. an ISA check), kept in the result


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, keeping the exception's own text."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Re-raise any failure inside as ``CaseError("<name> failed: <Type>: <message>")``."""
    try:
        yield
    except CaseError:
        raise
    except Exception as exc:
        raise CaseError(f"{name} failed: {one_line(exc)}"[:MAX_REASON]) from exc
