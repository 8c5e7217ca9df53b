"""The test-case matrix (cases.yml) and case selection, as the reference's ctest does it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fleetbench import params as fb_params
from fleetbench import paths

MATRIX = paths.REPO / "cases.yml"
# The case defines these; a user value for them would contradict the case's name.
CASE_KEYS = ("mode", "case_type")


def load_matrix(path: Path = MATRIX) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    cases, platforms = data.get("cases") or {}, data.get("platforms") or {}
    for name, overrides in cases.items():
        checked = fb_params.validate(overrides)
        if checked["case"] != name:
            raise ValueError(f"{path}: case {name!r} sets mode/case_type that name it {checked['case']!r}")
    for group, names in platforms.items():
        unknown = set(names) - set(cases)
        if unknown:
            raise ValueError(f"{path}: platform {group!r} lists unknown cases {sorted(unknown)}")
    if "default" not in platforms:
        raise ValueError(f"{path}: the 'platforms' map needs a 'default' entry")
    return {"cases": cases, "platforms": platforms}


def platform_group(group_names: list[str], matrix: dict[str, Any]) -> str:
    """The first inventory group of the host that the matrix knows, else 'default'."""
    return next((g for g in group_names if g in matrix["platforms"] and g != "default"), "default")


def select(given: dict[str, Any], group_names: list[str], matrix: dict[str, Any] | None = None,
           ) -> list[dict[str, Any]]:
    """Validated parameter sets, one per selected case, for one host."""
    base = fb_params.validate(given)
    if not base["cases"]:
        return [base]
    clash = [k for k in given if k.lower() in CASE_KEYS and given[k] not in (None, "")]
    if clash:
        raise fb_params.ParamError(f"{clash[0]}={given[clash[0]]!r} cannot be combined with cases=: each case sets "
                                   "its own mode and case_type; narrow the selection with cases= instead "
                                   "(e.g. cases=latency-gated).")
    matrix = matrix or load_matrix()
    try:
        pattern = re.compile(base["cases"])
    except re.error as exc:
        raise fb_params.ParamError(f"cases={base['cases']!r} is not a valid regular expression: {exc}") from exc
    group = platform_group(group_names, matrix)
    available = matrix["platforms"][group]
    chosen = [n for n in available if pattern.search(n)]
    if not chosen:
        raise fb_params.ParamError(f"cases={base['cases']!r} matches none of the cases of platform group "
                                   f"{group!r}: {', '.join(available)}.")
    user = {k: v for k, v in given.items() if k.lower() not in CASE_KEYS}
    return [fb_params.validate({**matrix["cases"][name], **user}) for name in chosen]


def case_line(p: dict[str, Any]) -> str:
    """One line describing a selected case, for listings."""
    return (f"{p['case']}: precision={p['precision']} steps={p['steps']} warmup_steps={p['warmup_steps']} "
            f"batch_size={p['batch_size']} instance_number={p['instance_number']} "
            f"cores_per_instance={p['cores_per_instance']}")
