#!/usr/bin/env python3
"""Stop every benchmark process of one run on this host: each payload whose command line names a case of
RUN_DIR, with its whole process group (its instance workers). SIGTERM, then SIGKILL after a grace period.
Prints {"stopped": [pids]}. Stdlib only."""

import json
import os
import signal
import sys
import time


def payload_groups(marker):
    groups = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            if b"fleetbench_payload" in argv and any(a.startswith(marker) for a in argv):
                groups.add(os.getpgid(int(pid)))
        except OSError:
            continue  # the process ended while we looked
    groups.discard(os.getpgrp())
    return groups


def main():
    run_dir = os.path.abspath(sys.argv[1])
    marker = (run_dir.rstrip("/") + "/").encode()
    grace_s = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    groups = payload_groups(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and payload_groups(marker):
            time.sleep(0.2)
        if not payload_groups(marker):
            break
    print(json.dumps({"stopped": sorted(groups), "left": sorted(payload_groups(marker))}))


if __name__ == "__main__":
    main()
