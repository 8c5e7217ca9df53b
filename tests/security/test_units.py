"""Fast checks behind the attack tests: parameter names and values typed with -e, folder names made from
host names, and no task anywhere that hands a string to a shell."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleetbench import params as P
from fleetbench.runs import host_dirs, safe_name
from tests.conftest import REPO


@pytest.mark.parametrize(("typed", "message"), [
    ({"precison": "avx_fp32"}, "unknown parameter 'precison'; did you mean 'precision'?"),
    ({"BATCHSIZE": "2"}, "unknown parameter 'BATCHSIZE'; did you mean 'batch_size'?"),
    ({"model_dir": "{{ lookup('pipe', 'id') }}"}, "model_dir=\"{{ lookup('pipe', 'id') }}\" contains a Jinja"),
    ({"cases": "{% if true %}x{% endif %}"}, "contains a Jinja template"),
    ({"Precision": "{# x #}"}, "expected one of: avx_fp32"),
])
def test_typed_names_and_values_are_checked(typed, message):
    with pytest.raises(P.ParamError) as err:
        P.check_typed(typed)
    assert message in str(err.value)


def test_other_variables_pass():
    P.check_typed({"precision": "avx_fp32", "PRECISION": "avx_fp32", "ansible_steps": "1", "run_id": "x",
                   "fleetbench_results_dir": "{{ playbook_dir }}/r", "nightly_cases": "gated", "batch_size": 4})


@pytest.mark.parametrize("name", ["../../etc", "..", ".", "", "/", "a/../../b", ".hidden", "a b'\"c;$(id)",
                                  "x" * 400, "\x00\n\t"])
def test_host_names_become_one_visible_harmless_folder(name):
    folder = safe_name(name)
    assert folder and "/" not in folder and not folder.startswith(".") and len(folder) <= 128
    assert all(c.isalnum() or c in "._-" for c in folder)


def test_names_that_clean_up_alike_get_distinct_folders():
    dirs = host_dirs(["a b", "a_b", "a/b", "a?b"])
    assert len(set(dirs.values())) == 4


def _tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        if any(k.startswith("ansible.builtin.") for k in node):
            yield node
        for key in ("tasks", "block", "rescue", "always", "pre_tasks", "post_tasks", "handlers"):
            yield from _tasks(node.get(key))


def test_no_task_hands_a_string_to_a_shell():
    files = [*REPO.glob("playbooks/*.yml"), *REPO.glob("roles/*/tasks/*.yml"), REPO / "run.yml"]
    commands = 0
    for path in files:
        for task in _tasks(yaml.safe_load(Path(path).read_text())):
            where = f"{path.relative_to(REPO)}: {task.get('name')}"
            assert not {"ansible.builtin.shell", "ansible.builtin.raw", "ansible.builtin.script"} & set(task), where
            if "ansible.builtin.command" in task:
                commands += 1
                args = task["ansible.builtin.command"]
                assert isinstance(args, dict) and "argv" in args and "cmd" not in args, where
    assert commands >= 5
