"""GLUE SST-2 TSV files: header ``sentence<TAB>label``, one labelled sentence a line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetbench_payload.errors import CaseError
from fleetbench_payload.fileio import sha256_file

HEADER = "sentence\tlabel"


@dataclass(frozen=True)
class Split:
    path: Path
    sentences: list[str]
    labels: list[int]
    sha256: str


def read_sst2(path: Path) -> Split:
    """Read a labelled split. Sentences are kept exactly, trailing spaces included; no CSV quoting."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"cannot read dataset file {path}: {exc}") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines or lines[0] != HEADER:
        raise CaseError(f"{path} does not start with the SST-2 header {HEADER!r}")
    sentences, labels = [], []
    for number, line in enumerate(lines[1:], start=2):
        sentence, tab, label = line.rpartition("\t")  # a sentence never holds a tab; the label is last
        if not tab or label not in ("0", "1"):
            raise CaseError(f"{path} line {number} is not '<sentence><TAB><0|1>': {line[:80]!r}")
        sentences.append(sentence)
        labels.append(int(label))
    if not sentences:
        raise CaseError(f"{path} holds no sentences")
    return Split(path, sentences, labels, sha256_file(path))
