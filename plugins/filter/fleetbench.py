"""Jinja2 filters for the fleetbench playbooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetbench.cases import case_line


def serial_waves(hosts: list[str], hostvars: Mapping[str, Any]) -> dict[str, int]:
    """Wave number per host: hosts sharing a `fleetbench_serial_group` get 0, 1, 2, ... so that no two of
    them run cases at the same time; hosts outside any group all run in wave 0."""
    seen: dict[str, int] = {}
    waves = {}
    for host in hosts:
        group = hostvars[host].get("fleetbench_serial_group")
        if group:
            waves[host] = seen.get(str(group), 0)
            seen[str(group)] = waves[host] + 1
        else:
            waves[host] = 0
    return waves


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fleetbench_case_line": case_line, "fleetbench_serial_waves": serial_waves}
