#!/usr/bin/env python3
"""Read (and optionally set) the host state that moves benchmark numbers: CPU frequency governor,
transparent huge pages, turbo, SMT, NUMA layout, kernel, microcode. Stdlib only, Python 3.8+.

  host_tuning.py                       print the state as JSON
  host_tuning.py --governor performance --thp always --turbo on [--check]
                                       set what is asked (only that), print {"changed", "state", "errors"}
"""

import argparse
import glob
import json
import os
import platform


def read(path, default="n/a"):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def write(path, value):
    with open(path, "w") as fh:
        fh.write(value)


def bracketed(text):
    """'always [madvise] never' -> 'madvise'."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text


def governor_files():
    return sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"))


def turbo_state():
    no_turbo = read("/sys/devices/system/cpu/intel_pstate/no_turbo", None)
    if no_turbo is not None:
        return ("off" if no_turbo == "1" else "on"), "/sys/devices/system/cpu/intel_pstate/no_turbo"
    boost = read("/sys/devices/system/cpu/cpufreq/boost", None)
    if boost is not None:
        return ("on" if boost == "1" else "off"), "/sys/devices/system/cpu/cpufreq/boost"
    return "n/a", None


def microcode():
    for line in read("/proc/cpuinfo", "").splitlines():
        if line.startswith("microcode"):
            return line.split(":", 1)[1].strip()
    return "n/a"


def state():
    governors = {read(p) for p in governor_files()}
    return {
        "governor": ",".join(sorted(governors)) if governors else "n/a",
        "thp": bracketed(read("/sys/kernel/mm/transparent_hugepage/enabled")),
        "turbo": turbo_state()[0],
        "smt": read("/sys/devices/system/cpu/smt/control"),
        "numa_nodes": len(glob.glob("/sys/devices/system/node/node[0-9]*")) or 1,
        "kernel": platform.release(),
        "microcode": microcode(),
    }


def apply(args):
    before = state()
    errors = []
    plan = []  # (path, value) pairs
    if args.governor and before["governor"] != args.governor:
        plan += [(p, args.governor) for p in governor_files()] or [(None, "no cpufreq governor control")]
    if args.thp and before["thp"] != args.thp:
        plan.append(("/sys/kernel/mm/transparent_hugepage/enabled", args.thp))
    if args.turbo and before["turbo"] != args.turbo:
        _, path = turbo_state()
        if path is None:
            plan.append((None, "no turbo control"))
        elif path.endswith("no_turbo"):
            plan.append((path, "0" if args.turbo == "on" else "1"))
        else:
            plan.append((path, "1" if args.turbo == "on" else "0"))
    changed = any(p for p, _ in plan)
    errors += [v for p, v in plan if p is None]
    if not args.check:
        for path, value in plan:
            if path is None:
                continue
            try:
                write(path, value)
            except OSError as exc:
                errors.append(f"cannot write {path}: {exc}")
    return {"changed": changed, "state": before if args.check else state(), "errors": errors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--governor")
    ap.add_argument("--thp", choices=["always", "madvise", "never"])
    ap.add_argument("--turbo", choices=["on", "off"])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.governor or args.thp or args.turbo:
        print(json.dumps(apply(args)))
    else:
        print(json.dumps(state()))


if __name__ == "__main__":
    os.umask(0o022)
    main()
