"""Check a model folder before anything loads it: which weights, their hashes, the expected hashes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fleetbench_payload.errors import CaseError
from fleetbench_payload.fileio import sha256_file

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelFiles:
    folder: Path
    sha256: dict[str, str]  # relative path -> hex digest
    use_safetensors: bool
    warnings: list[str] = field(default_factory=list)


def inspect(folder: Path, allow_pickle: bool, expected: dict[str, str] | None) -> ModelFiles:
    if not (folder / "config.json").is_file():
        raise CaseError(f"model folder {folder} has no config.json")
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}
    for name, want in sorted((expected or {}).items()):
        got = files.get(name)
        if got is None:
            raise CaseError(f"model file {name} is missing from {folder} (its sha256 is pinned)")
        if got != want:
            raise CaseError(f"model file {name} has sha256 {got}, expected {want}: the model on this host is not "
                            "the one staged")
    if any(name in files for name in SAFETENSORS):
        return ModelFiles(folder, files, use_safetensors=True)
    if not any(name in files for name in PICKLE):
        raise CaseError(f"model folder {folder} has no weights (model.safetensors or pytorch_model.bin)")
    if not allow_pickle:
        raise CaseError(f"model folder {folder} has only pickle weights (pytorch_model.bin), which can run code "
                        "when loaded: choose a model_revision that has model.safetensors, or pass "
                        "-e allow_pickle_weights=true to accept them")
    return ModelFiles(folder, files, use_safetensors=False,
                      warnings=["loaded pickle weights (pytorch_model.bin) because allow_pickle_weights=true"])
