"""offline=true: download the payload stack's wheels on the controller, once per lock and host Python."""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

try:
    from fleetbench import wheels
except ImportError as exc:  # pragma: no cover
    raise AnsibleActionFail(f"fleetbench is not installed here ({exc}): `source .venv/bin/activate`.") from exc

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars or {})
        try:
            fetched = wheels.download(Path(self._task.args["lock"]), self._task.args["target"], display.display)
        except (wheels.WheelError, OSError) as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result.update(changed=fetched["downloaded"], **fetched)
        return result
