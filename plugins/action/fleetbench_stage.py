"""Stage the model, the dataset and the payload once on the controller, for every host to copy."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:
    from fleetbench import assets
except ImportError as exc:  # pragma: no cover
    raise AnsibleActionFail(f"fleetbench is not installed here ({exc}): `source .venv/bin/activate`.") from exc


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        params = self._task.args["params"]
        try:
            staged = assets.stage_all(params)
        except assets.StageError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result.update(changed=False, staged=staged)
        return result
