"""Run folders: results/<run_id>/ with run.json, one sub-folder per host and case, and results/latest."""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fleetbench import atomic, paths

# Folder names made from host and case names: anything else is replaced, and dot-only names refused.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """A host or case name as a single, harmless path component."""
    cleaned = _UNSAFE.sub("_", name)[:128]
    # No leading dot: never "." or "..", and never a hidden folder ("../../etc" becomes "___.._etc").
    return re.sub(r"^\.+", lambda m: "_" * len(m.group()), cleaned) or "_"


def host_dirs(hosts: list[str]) -> dict[str, str]:
    """Folder name per host: safe, and distinct even when two names clean up to the same string."""
    out: dict[str, str] = {}
    for host in hosts:
        name = safe_name(host)
        if name in out.values():
            name = f"{name[:110]}-{hashlib.sha256(host.encode()).hexdigest()[:12]}"
        out[host] = name
    return out


def default_results_dir() -> Path:
    return paths.REPO / "results"


# Assets are staged once per run, so every host must ask for the same ones.
SHARED_PARAMS = ("model_source", "model_id", "model_revision", "model_dir", "allow_pickle_weights", "dataset_dir",
                 "dataset_url")


def _check_shared_assets(cases: dict[str, list[dict[str, Any]]]) -> None:
    for name in SHARED_PARAMS:
        values = {f"{h}/{p['case']}": p[name] for h, ps in cases.items() for p in ps}
        if len(set(map(str, values.values()))) > 1:
            raise ValueError(f"{name} differs between hosts ({values}); it must be the same for the whole run.")


def create_run(results_dir: str | Path | None, cases: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Create a new, never-reused run folder and write run.json; point results/latest at it.

    `cases` maps each host to its selected cases' validated parameter sets. Returns run_dir, run_id and
    host_dirs (each host's folder name under hosts/).
    """
    _check_shared_assets(cases)
    root = Path(results_dir).resolve() if results_dir else default_results_dir()
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    for _ in range(20):
        run_id = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        run_dir = root / run_id
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise OSError(f"could not create a fresh run folder under {root} (20 names taken)")
    dirs = host_dirs(list(cases))
    try:
        _fill(run_dir, run_id, now, cases, dirs)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # ours, just made: a run that cannot start leaves nothing
        raise
    atomic.point_symlink(root / "latest", run_id)
    return {"run_dir": str(run_dir), "run_id": run_id, "host_dirs": dirs}


def _fill(run_dir: Path, run_id: str, now: datetime, cases: dict[str, list[dict[str, Any]]],
          dirs: dict[str, str]) -> None:
    (run_dir / "hosts").mkdir()
    for name in dirs.values():
        (run_dir / "hosts" / name).mkdir()
    atomic.write_json(run_dir / "run.json", {
        "run_id": run_id,
        "started_at": now.isoformat(timespec="seconds"),
        "hosts": list(cases),
        "host_dirs": dirs,
        "cases": {h: [p["case"] for p in ps] for h, ps in cases.items()},
        "params": {h: {p["case"]: p for p in ps} for h, ps in cases.items()},
    })
