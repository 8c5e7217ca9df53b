"""Validate the benchmark parameters on the controller, before any host is touched.

Reads each parameter from the host's variables (extra vars, group_vars, ...), coerces and checks it with
fleetbench.params, selects the cases (fleetbench.cases) and sets the facts ``fleetbench_cases`` (one typed
parameter set per selected case) and ``fleetbench`` (the first; run-wide settings such as the model).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

try:
    from fleetbench import cases as fb_cases
    from fleetbench import params as fb_params
except ImportError as exc:  # pragma: no cover - depends on how ansible-playbook was started
    raise AnsibleActionFail(
        "fleetbench is not installed in the Python running ansible-playbook "
        f"({exc}). Run the README set-up, then `source .venv/bin/activate`."
    ) from exc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        try:
            # Before any templating: a Jinja value typed with -e would otherwise run (lookups included).
            fb_params.check_typed(load_extra_vars(self._loader))
            given = {key: self._templar.template(value) for key, value in task_vars.items()
                     if key.lower() in fb_params.BY_NAME}
            selected = fb_cases.select(given, list(task_vars.get("group_names", [])))
        except (fb_params.ParamError, ValueError) as exc:
            result.update(failed=True, msg=f"Invalid parameter: {exc}")
            return result
        result["ansible_facts"] = {"fleetbench": selected[0], "fleetbench_cases": selected}
        result["changed"] = False
        return result
