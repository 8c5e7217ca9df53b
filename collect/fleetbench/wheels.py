"""Offline installs (offline=true): the payload stack's wheels, downloaded once on the controller.

A host describes its Python (install_stack.py prints a ``target``: marker environment and glibc); the
controller evaluates the lock's environment markers for that target, runs ``pip download --require-hashes
--only-binary :all: --no-deps`` for its version and platform tags, and keeps the wheels in
<cache>/wheels/<lock sha256[:12]>-<target tag>/. A marker written last tells a complete folder from an
interrupted one; a flock makes hosts of the same kind wait for one download instead of repeating it.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from fleetbench import paths

MARKER = ".fleetbench-complete"
PROGRESS_EVERY_S = 10
# The keys install_stack.py --check reports about the host's interpreter (a PEP 508 marker environment).
MARKER_KEYS = ("implementation_name", "implementation_version", "os_name", "platform_machine",
               "platform_python_implementation", "platform_release", "platform_system", "platform_version",
               "python_full_version", "python_version", "sys_platform")
# Oldest glibc minor that manylinux wheels target, per architecture (manylinux1 = 2.5 on x86).
_MANYLINUX_FLOOR = {"x86_64": 5, "i686": 5}
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


class WheelError(RuntimeError):
    """The wheels could not be fetched; the message says what to do."""


def target_tag(target: dict[str, Any]) -> str:
    """A short name for a host kind, e.g. cp311-x86_64-glibc2.36."""
    if not re.fullmatch(r"\d+\.\d+", str(target.get("python_version"))) or \
            not re.fullmatch(r"\d+\.\d+|", str(target.get("glibc", ""))):
        raise WheelError(f"unexpected Python or glibc version reported by the host: {target!r}")
    major, minor = target["python_version"].split(".")
    libc = "glibc" + target["glibc"] if target.get("glibc") else "nolibc"
    return f"cp{major}{minor}-{target['platform_machine']}-{libc}"


def platform_tags(target: dict[str, Any]) -> list[str]:
    """The platform tags a host's pip accepts, newest first: manylinux_2_N down to its floor, then linux."""
    arch = target["platform_machine"]
    if not re.fullmatch(r"[A-Za-z0-9_]+", arch):
        raise WheelError(f"unexpected machine name {arch!r} reported by the host")
    tags = []
    glibc = re.fullmatch(r"(\d+)\.(\d+)", target.get("glibc") or "")
    if glibc and glibc.group(1) == "2":
        newest = int(glibc.group(2))
        floor = _MANYLINUX_FLOOR.get(arch, 17)
        tags += [f"manylinux_2_{m}_{arch}" for m in range(newest, floor - 1, -1)]
        tags += [f"{name}_{arch}" for m, name in _LEGACY_MANYLINUX.items() if floor <= m <= newest]
    return [*tags, f"linux_{arch}"]


def _logical_lines(text: str) -> list[str]:
    """The lock's requirement lines, with backslash continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def lock_for(text: str, target: dict[str, Any]) -> str:
    """The lock with its environment markers evaluated for the target: lines for another Python or platform
    are dropped, the rest keep their pins and hashes (pip download evaluates markers for the controller)."""
    env = {k: str(target[k]) for k in MARKER_KEYS}
    out = []
    for line in _logical_lines(text):
        if line.startswith("-"):
            out.append(line)  # an option such as --index-url
            continue
        spec, _, options = line.partition(" --")
        options = " ".join(options.split())
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise WheelError(f"unreadable line in the stack lock: {line[:200]!r} ({exc})") from exc
        if req.marker is None or req.marker.evaluate(env):
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            pin = f"{req.name}{extras}{req.specifier}"
            out.append(f"{pin} --{options}" if options else pin)
    return "\n".join(out) + "\n"


def _size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.glob("*.whl") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _offline_hint(dest: Path) -> str:
    return ("The controller downloads the wheels once for offline hosts, so it needs a package index: give it "
            "access to PyPI, or point pip at a mirror (PIP_INDEX_URL=https://mirror/simple, or PIP_NO_INDEX=1 "
            "with PIP_FIND_LINKS=DIR of wheels) in the environment of ansible-playbook, or copy the wheel cache "
            f"from a connected controller (FLEETBENCH_CACHE; this one is {dest.parent}); then run again. "
            "Without offline=true the hosts install from the index themselves.")


def download(lock: Path, target: dict[str, Any], progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Make sure the wheels of `lock` for `target` are in the controller cache; returns their folder."""
    raw = lock.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    tag = target_tag(target)
    dest = paths.cache_dir() / "wheels" / f"{digest[:12]}-{tag}"
    result = {"dir": str(dest), "key": dest.name, "downloaded": False}

    def complete() -> bool:
        marker = dest / MARKER
        return marker.is_file() and marker.read_text().strip() == digest

    if complete():
        return {**result, "files": _size(dest)[0]}
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another host of the same kind may be downloading right now
        if complete():
            return {**result, "files": _size(dest)[0]}
        dest.mkdir(exist_ok=True)
        major, minor = target["python_version"].split(".")[:2]
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=dest.parent) as filtered, \
                tempfile.TemporaryFile("w+") as log:
            filtered.write(lock_for(raw.decode(), target))
            filtered.flush()
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--only-binary", ":all:",
                   "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                   "--python-version", f"{major}.{minor}", "--implementation", "cp", "--abi", f"cp{major}{minor}",
                   *(f"--platform={p}" for p in platform_tags(target)), "-r", filtered.name, "-d", str(dest)]
            progress(f"Downloading the payload stack's wheels for {tag} into {dest} (once; later runs reuse them)")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            while proc.poll() is None:
                try:
                    proc.wait(timeout=PROGRESS_EVERY_S)
                except subprocess.TimeoutExpired:
                    count, size = _size(dest)
                    progress(f"  {tag}: {count} wheels, {size / 1e9:.2f} GB so far")
            log.seek(0)
            output = log.read()
        if proc.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-15:])
            raise WheelError(f"offline=true: the controller could not download the stack wheels for {tag} from "
                             f"{lock} with pip (exit {proc.returncode}):\n{tail}\n{_offline_hint(dest)}")
        (dest / MARKER).write_text(digest + "\n")
    count, size = _size(dest)
    progress(f"  {tag}: {count} wheels, {size / 1e9:.2f} GB, complete")
    return {**result, "downloaded": True, "files": count}
