"""`fleetbench run`: the main job through ansible-runner, with live progress per host and case.

Runs the same playbook as `ansible-playbook run.yml` (every option maps 1:1 to a playbook variable), prints
one line per host and case as the fleet works, keeps ansible-runner's artifacts in the run folder
(<run>/ansible-runner/) and exits with the playbook's status. Ctrl-C stops the playbook, stops the
benchmark processes of this run on every host (playbooks/stop.yml) and reports what was collected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from fleetbench import params as fb_params
from fleetbench import paths
from fleetbench.helptext import plain
from fleetbench.render import render_text
from fleetbench.report import write_report
from fleetbench.results import RunError

# Playbook tasks whose events are worth a progress line (the rest are plumbing).
_RUN_FOLDER_TASK = "Create the run folder on the controller"
_CASE_TASK = "Run the case "  # "Run the case NAME", not the role include "Run the cases (...)"
_WAIT_TASK = "Wait for the case"
_LOCK_TASK = "Wait for the host lock"


class Progress:
    """Turns ansible-runner events into progress lines, and remembers the run folder."""

    def __init__(self, out: Any = sys.stdout) -> None:
        self.out = out
        self.run_dir: str | None = None

    def say(self, host: str, text: str) -> None:
        print(f"[{host}] {text}", file=self.out, flush=True)

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host, task, res = data.get("host", "-"), data.get("task", ""), data.get("res") or {}
        if kind == "runner_on_ok" and task == _RUN_FOLDER_TASK:
            self.run_dir = res.get("run_dir")
            self.say("controller", f"run folder {self.run_dir}")
        elif kind == "runner_on_start" and task.startswith(_CASE_TASK):
            self.say(host, f"running {task.removeprefix(_CASE_TASK)}")
        elif kind == "runner_retry" and task.startswith(_WAIT_TASK):
            try:
                progress = json.loads(res.get("stdout") or "{}").get("progress") or {}
            except (ValueError, AttributeError):
                progress = {}
            if progress:
                case = task.removeprefix(_WAIT_TASK).strip()
                self.say(host, f"{case}: {progress.get('phase', '')} {progress.get('done', '?')}/"
                               f"{progress.get('total', '?')}")
        elif kind == "runner_retry" and task.startswith(_LOCK_TASK):
            try:
                state = json.loads(res.get("stdout") or "{}")
            except ValueError:
                state = {}
            if state.get("state") == "waiting":
                holder = (state.get("holder") or {}).get("run_id", "another run")
                self.say(host, f"waiting for the host lock: {holder} is benchmarking this host "
                               f"({state.get('waited_s', '?')} s)")
        elif kind == "runner_on_ok" and task.startswith(_WAIT_TASK):
            self.say(host, f"{task.removeprefix(_WAIT_TASK).strip()}: finished")
        elif kind == "runner_on_unreachable":
            self.say(host, f"unreachable: {res.get('msg', '')}")
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self.say(host, f"failed in '{task}': {str(res.get('msg', ''))[:300]}")
        return True


def extravars(args: argparse.Namespace) -> dict[str, str]:
    out = {p.name: str(getattr(args, p.name)) for p in fb_params.PARAMS if getattr(args, p.name) is not None}
    for pair in args.extra:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"-e {pair!r}: expected NAME=VALUE")
        out[key] = value
    if args.results_dir:
        out["fleetbench_results_dir"] = str(Path(args.results_dir).resolve())
    return out


def _stop_hosts(inventory: str, run_dir: str, private: Path, extra: dict[str, str]) -> None:
    """playbooks/stop.yml with the run's own variables (its hosts' folders may be overridden)."""
    import ansible_runner

    ansible_runner.run(private_data_dir=str(private), project_dir=str(paths.REPO),
                       playbook=str(paths.REPO / "playbooks" / "stop.yml"), inventory=inventory,
                       extravars={**extra, "run_id": Path(run_dir).name}, quiet=True, ident="stop")


def _forget_environment(private: Path) -> None:
    """ansible-runner writes the whole environment (HF_TOKEN, a FLEETBENCH_DB password, ...) into each
    artifacts/<ident>/command; keep the variables' names only."""
    for path in private.glob("artifacts/*/command"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["env"] = sorted(doc.get("env") or {})
            path.write_text(json.dumps(doc), encoding="utf-8")
        except (OSError, ValueError, AttributeError):
            path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    import ansible_runner

    # ansible-runner starts `ansible-playbook` from PATH: use the one beside this Python (the venv's).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    progress = Progress()
    private = Path(tempfile.mkdtemp(prefix="fleetbench-runner-"))
    inventory = str(Path(args.inventory).resolve())
    variables = extravars(args)
    cancelled = threading.Event()
    # Ctrl-C cancels the playbook through ansible-runner (which ends ansible-playbook), then the hosts are
    # told to stop this run's processes: they run detached (async) and would otherwise go on.
    previous = signal.signal(signal.SIGINT, lambda *_: cancelled.set())
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private), project_dir=str(paths.REPO), playbook=str(paths.REPO / "run.yml"),
            inventory=inventory, extravars=variables, limit=args.limit, quiet=True, ident="main",
            event_handler=progress, cancel_callback=cancelled.is_set,
            envvars={"ANSIBLE_CONFIG": str(paths.REPO / "ansible.cfg")},
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    rc = runner.rc if runner.rc is not None else 1
    if cancelled.is_set():
        rc = 130
        print("interrupted: stopping this run's benchmark processes on the hosts ...", file=sys.stderr, flush=True)
        if progress.run_dir:
            _stop_hosts(inventory, progress.run_dir, private, variables)
    _forget_environment(private)
    if progress.run_dir:
        shutil.move(str(private), str(Path(progress.run_dir) / "ansible-runner"))
        try:
            sys.stdout.write(render_text(write_report(progress.run_dir)))
        except RunError as err:
            print(f"fleetbench run: no report: {err}", file=sys.stderr)
    else:
        print(f"fleetbench run: the playbook stopped before creating a run folder; its output is in {private}",
              file=sys.stderr)
        print((private / "artifacts" / "main" / "stdout").read_text()[-4000:]
              if (private / "artifacts" / "main" / "stdout").exists() else "", file=sys.stderr)
    return rc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the main job through ansible-runner, with live progress",
                       description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--inventory", default=str(paths.REPO / "inventory" / "hosts.yml"),
                   help="inventory (default: inventory/hosts.yml, this machine)")
    p.add_argument("--limit", help="only these hosts (an Ansible host pattern)")
    p.add_argument("--results-dir", help="where run folders go (playbook variable fleetbench_results_dir)")
    p.add_argument("-e", "--extra", action="append", default=[], metavar="NAME=VALUE",
                   help="any other playbook variable, e.g. -e fleetbench_host_root=/srv/fb (repeatable)")
    for param in fb_params.PARAMS:
        kwargs: dict[str, Any] = {"help": f"{param.help} (playbook variable {param.name})"}
        if param.choices:
            kwargs["choices"] = [c for c in param.choices if c]
        p.add_argument(f"--{param.name.replace('_', '-')}", dest=param.name, metavar=param.name.upper(), **kwargs)
    p.set_defaults(func=run)
