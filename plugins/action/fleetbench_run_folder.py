"""Create this run's folder on the controller (never reusing one) and write run.json."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:
    from fleetbench import runs
except ImportError as exc:  # pragma: no cover
    raise AnsibleActionFail(f"fleetbench is not installed here ({exc}): `source .venv/bin/activate`.") from exc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        hostvars = task_vars["hostvars"]
        hosts = list(args["hosts"])
        try:
            created = runs.create_run(
                results_dir=args.get("results_dir"),
                cases={h: list(hostvars[h]["fleetbench_cases"]) for h in hosts},
            )
        except (OSError, ValueError) as exc:
            result.update(failed=True, msg=f"Cannot create the run folder: {exc}")
            return result
        result.update(changed=True, **created)
        return result
