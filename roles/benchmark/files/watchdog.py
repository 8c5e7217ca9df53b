#!/usr/bin/env python3
"""Run a case's command, and kill it when the controller stops watching.

The controller's wait loop (case_status.py) touches the run's heartbeat file at every poll. A controller
that is interrupted (Ctrl-C on ansible-playbook) or killed stops touching it; once the heartbeat is older
than --stale-after seconds this wrapper kills the command's whole process group (SIGTERM, then SIGKILL),
writes why to --reason-file and to stderr, and exits 3. Otherwise it exits with the command's status.
Usage: watchdog.py --heartbeat FILE --stale-after S --reason-file FILE -- COMMAND... Stdlib only.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

GRACE_S = 10
STALE_EXIT = 3


def heartbeat_age(path):
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return float("inf")  # removed: the run's working folder is gone


def kill_group(pgid, proc):
    try:
        os.killpg(pgid, signal.SIGTERM)
        proc.wait(timeout=GRACE_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)  # what is left: the leader if it hung, else its workers
    except ProcessLookupError:
        pass
    proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heartbeat", required=True)
    ap.add_argument("--stale-after", type=float, required=True)
    ap.add_argument("--reason-file", required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with open(args.heartbeat, "a"):
        os.utime(args.heartbeat)  # the bound counts from the start
    proc = subprocess.Popen(command, start_new_session=True)  # its own group, to kill it with its workers
    every = max(0.5, min(5.0, args.stale_after / 4))
    while True:
        try:
            sys.exit(proc.wait(timeout=every))
        except subprocess.TimeoutExpired:
            pass
        age = heartbeat_age(args.heartbeat)
        if age > args.stale_after:
            reason = (f"the controller stopped polling this case (heartbeat {args.heartbeat} "
                      f"{'missing' if age == float('inf') else f'{age:.0f} s old'}, bound {args.stale_after:.0f} s): "
                      "the playbook was interrupted or killed, so the case was killed")
            with open(args.reason_file, "w") as fh:
                fh.write(reason + "\n")
            print(reason, file=sys.stderr, flush=True)
            kill_group(proc.pid, proc)
            sys.exit(STALE_EXIT)


if __name__ == "__main__":
    main()
