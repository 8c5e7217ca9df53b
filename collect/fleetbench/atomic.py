"""Write files so a reader (or a crash) sees the old content or the new, never half of it.

A full disk (or quota) raises :class:`NoSpace`, whose message names the file and what to do; the file
keeps its old content and no temporary file is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

FULL = (errno.ENOSPC, errno.EDQUOT)
WHERE_ELSE = "or write the results elsewhere (-e fleetbench_results_dir=DIR, or --results-dir DIR)"


class NoSpace(OSError):
    """No space left on the device (or over quota) while writing a file."""


def no_space(what: str) -> NoSpace:
    return NoSpace(f"no space left on device while writing {what}; free space there, {WHERE_ELSE}")


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    try:
        _replace(path, text)
    except OSError as err:
        if err.errno in FULL:
            raise no_space(str(path)) from err
        raise


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut, not only a killed process."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def point_symlink(link: Path, target: str) -> None:
    """Make `link` point at `target`, replacing any old link in one rename."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
