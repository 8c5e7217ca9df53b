"""The human log: payload.log and stdout, flushed line by line."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path


class Log:
    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        # Line-buffered append: instance processes share the file, and each line lands whole.
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # open for the whole run
        self._prefix = f"[fleetbench] {prefix}"

    def info(self, message: str) -> None:
        self.raw(self._prefix + message)

    def raw(self, text: str) -> None:
        """Write ``text`` as is (KPI lines must start at column 0 for WSF's kpi.sh)."""
        for stream in (self._file, sys.stdout):
            stream.write(text.rstrip("\n") + "\n")
            stream.flush()

    def progress(self, what: str, done: int, total: int) -> None:
        """Log about ten progress lines per phase, and keep progress.json current for the controller's poll."""
        if done == total or done % max(1, total // 10) == 0:
            self.info(f"{what} {done}/{total}")
            state = {"phase": f"{self._prefix.removeprefix('[fleetbench] ')}{what}".strip(), "done": done,
                     "total": total}
            # One temporary file per thread: weight-sharing streams report from threads of one process.
            tmp = self.path.with_name(f".progress.{os.getpid()}.{threading.get_ident()}.json")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.path.with_name("progress.json"))
