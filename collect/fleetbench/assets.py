"""Stage what every host needs, once, on the controller: dataset, model and payload archive.

Downloads go to the controller cache (paths.cache_dir()); every file is checksummed so hosts receive and
results record exactly what was staged. Offline, each download fails with a message that says how to
point at a local copy instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from fleetbench import paths

# sha256 of the files in the official GLUE SST-2.zip (the same as ../shared/data/sst2/SHA256SUMS).
SST2_SHA256 = {
    "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    "train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
}
# The Hub, or a mirror of it (HF_ENDPOINT, as huggingface_hub reads it).
HUB = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
# Files a sequence-classification model folder may carry; weights are chosen separately.
MODEL_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
SAFE_WEIGHTS, PICKLE_WEIGHTS = "model.safetensors", "pytorch_model.bin"
DOWNLOAD_TIMEOUT_S = 30
OFFLINE_HINT = ("Offline? Use local copies: -e dataset_dir=DIR (a folder with SST-2 dev.tsv and train.tsv, "
                "e.g. ../shared/data/sst2) and -e model_source=synthetic (random weights, for speed runs) or "
                "-e model_dir=DIR (a downloaded model folder).")


class StageError(RuntimeError):
    """Staging failed; the message says what to do next."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, what: str) -> None:
    """Fetch url into dest (via a temp file, so a broken download never looks complete)."""
    headers = {"User-Agent": "fleetbench"}
    token = os.environ.get("HF_TOKEN")
    if token and url.startswith(HUB):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - URL scheme checked in params
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StageError(f"Cannot download {what} from {url}: {exc}. {OFFLINE_HINT}") from exc


def _check_sst2(folder: Path) -> dict[str, str]:
    sums = {}
    for name, expected in SST2_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise StageError(f"dataset_dir {folder} has no {name}: it must hold the GLUE SST-2 dev.tsv and "
                             "train.tsv (e.g. -e dataset_dir=../shared/data/sst2).")
        actual = sha256_file(path)
        if actual != expected:
            raise StageError(f"{path} has sha256 {actual}, not the GLUE SST-2 {name} ({expected}): "
                             "use an unmodified copy of SST-2.")
        sums[name] = actual
    return sums


def stage_dataset(params: dict[str, Any]) -> dict[str, Any]:
    if params["dataset_dir"]:
        folder = Path(params["dataset_dir"]).expanduser().resolve()
        if not folder.is_dir():
            raise StageError(f"dataset_dir={params['dataset_dir']!r} is not a folder. {OFFLINE_HINT}")
    else:
        folder = paths.cache_dir() / "assets" / "sst2"
        if not all((folder / n).is_file() for n in SST2_SHA256):
            archive = paths.cache_dir() / "downloads" / "SST-2.zip"
            if not archive.is_file():
                _download(params["dataset_url"], archive, "the GLUE SST-2 dataset")
            _extract_sst2(archive, folder)
    return {"dir": str(folder), "sha256": _check_sst2(folder)}


def _extract_sst2(archive: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(n).name: n for n in zf.namelist() if Path(n).name in SST2_SHA256}
            if set(members) != set(SST2_SHA256):
                raise StageError(f"{archive} does not contain SST-2 dev.tsv and train.tsv; delete it and retry.")
            folder.mkdir(parents=True, exist_ok=True)
            for name, member in members.items():
                tmp = folder / f".{name}.part"
                tmp.write_bytes(zf.read(member))
                os.replace(tmp, folder / name)
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise StageError(f"{archive} is not a valid zip ({exc}); it was removed, run again to re-download.") from exc


def _hash_model_dir(folder: Path, allow_pickle: bool) -> dict[str, str]:
    if not (folder / "config.json").is_file():
        raise StageError(f"model folder {folder} has no config.json: pass a Hugging Face model folder.")
    if not (folder / SAFE_WEIGHTS).is_file():
        if not (folder / PICKLE_WEIGHTS).is_file():
            raise StageError(f"model folder {folder} has neither {SAFE_WEIGHTS} nor {PICKLE_WEIGHTS}.")
        if not allow_pickle:
            raise StageError(f"model folder {folder} has only pickle weights ({PICKLE_WEIGHTS}), which can run "
                             "code when loaded. Convert them to safetensors, or opt in with "
                             "-e allow_pickle_weights=true.")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        if path.name in MODEL_SIDE_FILES or path.name in (SAFE_WEIGHTS, PICKLE_WEIGHTS):
            files[path.name] = sha256_file(path)
    return files


def _hub_files(model_id: str, revision: str, allow_pickle: bool) -> list[str]:
    listing = paths.cache_dir() / "models" / model_id.replace("/", "--") / revision / ".listing.json"
    if not listing.is_file():
        _download(f"{HUB}/api/models/{model_id}/revision/{revision}", listing, f"the file list of {model_id}")
    try:
        siblings = {s["rfilename"] for s in json.loads(listing.read_text())["siblings"]}
    except (ValueError, KeyError, TypeError) as exc:
        listing.unlink(missing_ok=True)
        raise StageError(f"Unexpected Hub answer for {model_id}@{revision}: {exc}") from exc
    if SAFE_WEIGHTS in siblings:
        weights = SAFE_WEIGHTS
    elif PICKLE_WEIGHTS in siblings and allow_pickle:
        weights = PICKLE_WEIGHTS
    elif PICKLE_WEIGHTS in siblings:
        raise StageError(
            f"{model_id} at revision {revision} has only pickle weights ({PICKLE_WEIGHTS}). Choose a revision "
            f"that has {SAFE_WEIGHTS} (-e model_revision=main, or a commit listed at "
            f"{HUB}/{model_id}/commits/main), or opt in with -e allow_pickle_weights=true.")
    else:
        raise StageError(f"{model_id} at revision {revision} has no weights file.")
    return [f for f in MODEL_SIDE_FILES if f in siblings] + [weights]


def stage_model(params: dict[str, Any]) -> dict[str, Any]:
    source = params["model_source"]
    allow_pickle = params["allow_pickle_weights"]
    if source == "synthetic":
        return {"source": "synthetic", "dir": "", "files": {}, "key": "synthetic"}
    if source == "dir":
        folder = Path(params["model_dir"]).expanduser().resolve()
        if not folder.is_dir():
            raise StageError(f"model_dir={params['model_dir']!r} is not a folder.")
    else:
        model_id, revision = params["model_id"], params["model_revision"]
        folder = paths.cache_dir() / "models" / model_id.replace("/", "--") / revision
        for name in _hub_files(model_id, revision, allow_pickle):
            if not (folder / name).is_file():
                _download(f"{HUB}/{model_id}/resolve/{revision}/{name}", folder / name, f"{model_id} {name}")
    files = _hash_model_dir(folder, allow_pickle)
    key = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": source, "dir": str(folder), "files": files, "key": key}


def stage_payload() -> dict[str, Any]:
    """A reproducible tar.gz of payload/fleetbench_payload, named by its content hash."""
    root = paths.PAYLOAD
    members = sorted(p for p in (root / "fleetbench_payload").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    digest = hashlib.sha256()
    for p in members:
        digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    key = digest.hexdigest()[:16]
    archive = paths.cache_dir() / "payload" / f"payload-{key}.tar.gz"
    if not archive.is_file():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for p in members:
                info = tarfile.TarInfo(str(p.relative_to(root)))
                data = p.read_bytes()
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_suffix(".part")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, archive)
    return {"archive": str(archive), "key": key}


def stage_all(params: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": stage_dataset(params), "model": stage_model(params), "payload": stage_payload()}
