#!/usr/bin/env python3
"""Is a case still running? Prints {"finished": bool, "progress": {...}} from Ansible's async job file and
the payload's progress.json (both optional: a missing or half-written file reads as empty), and touches the
run's heartbeat file, which tells watchdog.py that the controller is still watching. Stdlib only.
Usage: case_status.py JOB_FILE PROGRESS_FILE HEARTBEAT_FILE"""

import json
import os
import sys


def load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def main():
    job_file, progress_file, heartbeat = sys.argv[1:4]
    with open(heartbeat, "a"):
        os.utime(heartbeat)
    job = load(job_file)
    # async_wrapper writes {"started": true, "finished": false} while running, the module result at the end.
    finished = bool(job) and (job.get("finished") is True or "started" not in job)
    print(json.dumps({"finished": finished, "progress": load(progress_file)}))


if __name__ == "__main__":
    main()
