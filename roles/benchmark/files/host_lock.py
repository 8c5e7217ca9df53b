#!/usr/bin/env python3
"""One benchmarking run per host at a time: an flock on <root>/benchmark.lock, held for the benchmark phase.

`hold` (started as an async task) waits up to --wait-s for the lock, writing its state to --state as JSON
({"state": "waiting"|"held"|"gave_up", "holder", "waited_s", "reason"}), then holds it until the run's
heartbeat file is removed (the run's working folder is removed at its end) or is older than --stale-after
(the controller was interrupted or killed). The lock dies with the process; on release the holder also
removes the lock and owner files, so a finished run leaves none behind.
`status` touches the heartbeat (the controller is watching) and prints the state. Stdlib only.
"""

import argparse
import fcntl
import json
import os
import sys
import time

POLL_S = 1.0


def write_json(path, doc):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def touch(path):
    with open(path, "a"):
        os.utime(path)


def age(path):
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return float("inf")


def same_file(fh, path):
    """Whether `path` still names the file `fh` has open (a releasing holder unlinks it)."""
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def acquire(args, owner_file, start):
    """The locked lock file, or None after writing a `gave_up` state."""
    while True:
        lock = open(args.lock, "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            waited = time.monotonic() - start
            holder = read_json(owner_file)
            if waited >= args.wait_s or age(args.heartbeat) > args.stale_after:
                write_json(args.state, {"state": "gave_up", "holder": holder, "waited_s": round(waited), "reason": (
                    f"host busy: fleetbench run {holder.get('run_id', '?')} has been benchmarking it since "
                    f"{holder.get('since', '?')} (lock {args.lock}); waited {waited:.0f} s (benchmark_lock_wait_s="
                    f"{args.wait_s:.0f}). Run again when it is done, or raise benchmark_lock_wait_s.")})
                return None
            write_json(args.state, {"state": "waiting", "holder": holder, "waited_s": round(waited)})
            time.sleep(POLL_S)
            continue
        if same_file(lock, args.lock):
            return lock
        lock.close()  # locked a file the previous holder had just unlinked: take the new one


def hold(args):
    touch(args.heartbeat)
    owner_file = args.lock + ".owner"
    start = time.monotonic()
    lock = acquire(args, owner_file, start)
    if lock is None:
        return 1
    with lock:
        write_json(owner_file, {"run_id": args.owner, "pid": os.getpid(),
                                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        write_json(args.state, {"state": "held", "waited_s": round(time.monotonic() - start)})
        while age(args.heartbeat) <= args.stale_after:
            time.sleep(POLL_S)
        # Unlink while still holding, so the host keeps no lock file; a waiter that opened this file sees
        # it is gone (same_file) and opens a fresh one.
        for path in (owner_file, args.lock):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return 0


def status(args):
    touch(args.heartbeat)
    print(json.dumps(read_json(args.state)))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("hold", "status"))
    ap.add_argument("--state", required=True)
    ap.add_argument("--heartbeat", required=True)
    ap.add_argument("--lock")
    ap.add_argument("--owner")
    ap.add_argument("--wait-s", type=float, default=1800)
    ap.add_argument("--stale-after", type=float, default=120)
    args = ap.parse_args()
    sys.exit(hold(args) if args.action == "hold" else status(args))


if __name__ == "__main__":
    main()
