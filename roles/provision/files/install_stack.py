#!/usr/bin/env python3
"""Create the payload stack venv from a hash-pinned lock, once per lock, safely on shared filesystems.

The venv is <stack-dir>/venv-<first 12 hex of the lock's sha256>: a changed lock makes a new venv, an
unchanged one is reused. An exclusive flock serialises hosts that share the folder (NFS homes, or the
loopback test fleet); a marker written last tells a complete venv from an interrupted one.
Prints one JSON object: {"changed", "venv", "python", "lock_sha256", "target"} (target: this Python, for
an offline download on the controller), plus "pip_args" when it installed. Stdlib only, Python 3.8+.
"""

import argparse
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = ".fleetbench-lock-sha256"


def version_ok(spec, version):
    """True if version (a tuple) satisfies a spec such as '>=3.10,<3.14'."""
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, "==": lambda a, b: a == b}
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([0-9.]+)\s*", part)
        if not m:
            raise SystemExit(f"unreadable requires-python spec: {spec!r}")
        bound = tuple(int(x) for x in m.group(2).split("."))
        if not ops[m.group(1)](version[: len(bound)], bound):
            return False
    return True


def target():
    """This interpreter as a PEP 508 marker environment, plus its glibc: what an offline download needs."""
    impl = sys.implementation
    v = impl.version
    pre = "" if v.releaselevel == "final" else v.releaselevel[0] + str(v.serial)
    impl_version = f"{v.major}.{v.minor}.{v.micro}{pre}"
    libc, libc_version = platform.libc_ver()
    return {"implementation_name": impl.name, "implementation_version": impl_version, "os_name": os.name,
            "platform_machine": platform.machine(), "platform_python_implementation": platform.python_implementation(),
            "platform_release": platform.release(), "platform_system": platform.system(),
            "platform_version": platform.version(), "python_full_version": platform.python_version(),
            "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
            "glibc": libc_version if libc == "glibc" else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", required=True, type=Path)
    ap.add_argument("--stack-dir", required=True, type=Path)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report whether the venv would be created")
    mode.add_argument("--apply", action="store_true", help="create it if needed (the default)")
    ap.add_argument("--wheels", type=Path, help="install from this folder only (air-gapped hosts)")
    args = ap.parse_args()

    raw = args.lock.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    m = re.search(rb"^# requires-python: (\S+)$", raw, re.M)
    spec = m.group(1).decode() if m else ">=3"
    if not version_ok(spec, sys.version_info[:3]):
        found = ".".join(map(str, sys.version_info[:3]))
        sys.exit(f"This host's Python is {found} ({sys.executable}), outside the stack lock's range {spec}: install "
                 "a Python in that range and set fleetbench_host_python=/path/to/python3 for this host.")

    venv = args.stack_dir / ("venv-" + digest[:12])
    python = venv / "bin" / "python"
    result = {"changed": False, "venv": str(venv), "python": str(python), "lock_sha256": digest, "target": target()}

    def complete():
        marker = venv / MARKER
        return marker.is_file() and marker.read_text().strip() == digest

    if complete() or args.check:
        result["changed"] = not complete()
        print(json.dumps(result))
        return
    args.stack_dir.mkdir(parents=True, exist_ok=True)
    with open(args.stack_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another host may be building the same venv right now
        if not complete():
            if venv.exists():
                shutil.rmtree(venv)  # left over from an interrupted install
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
                   "--require-hashes", "--only-binary", ":all:", "-r", str(args.lock)]
            if args.wheels:
                pip += ["--no-index", "--find-links", str(args.wheels)]
            proc = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                errors = " ".join(line for line in proc.stdout.splitlines() if line.startswith("ERROR"))
                sys.exit(f"pip could not install the stack lock into {venv}: {errors[:1500]}\n{proc.stdout[-4000:]}")
            (venv / MARKER).write_text(digest + "\n")
            result.update(changed=True, pip_args=pip[3:])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
