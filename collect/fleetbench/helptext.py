"""Module docstrings as ``--help`` text: reStructuredText roles and literals shown as plain text."""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain(doc: str | None) -> str:
    """``:func:`fleetbench.stats.band``` -> ``fleetbench.stats.band``; ````x```` -> ``x``."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc or ""))
