"""Hostile values typed with -e or put in an inventory: each is rejected before any host is touched, with a
message naming the value and what is allowed, or carried as plain data; nothing they carry is executed and
nothing is written outside the run folder."""

from __future__ import annotations

import json

import pytest

from tests.security.attack import OFFLINE, Playground

pytestmark = pytest.mark.e2e


def _extra(name: str, value: str) -> list[str]:
    # JSON form: `-e name=value` would split the value at its spaces before Ansible looks at it.
    return ["-e", json.dumps({name: value})]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("precision", "amx_int8; touch {marker}", ["amx_int8; touch", "avx_fp32, avx_int8, amx_int8"]),
    ("cases", '.*"; touch {marker}; "', ["matches none of the cases", "inference-throughput"]),
    ("batch_size", "1 && touch {marker}", ["batch_size='1 && touch", "an integer from 1 to 4096"]),
    ("steps", "$(touch {marker})", ["steps='$(touch", "an integer from 1"]),
    # Ansible would run a template typed with -e (lookups included): refused before anything expands it.
    ("model_dir", "{{{{ lookup('pipe', 'touch {marker}') }}}}", ["contains a Jinja template", "plain text"]),
    ("list_cases", "{{{{ lookup('pipe', 'touch {marker}') }}}}", ["contains a Jinja template", "true or false"]),
    ("PRECISION", "{{% set x = lookup('pipe', 'touch {marker}') %}}", ["PRECISION=", "Jinja template"]),
])
def test_hostile_parameter_is_rejected_before_any_host(tmp_path, name, value, expected):
    play = Playground(tmp_path)
    before = play.tree()
    proc = play.playbook(*OFFLINE, *_extra(name, value.format(marker=play.marker)))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid parameter" in out, out[-3000:]
    for text in expected:
        assert text in out, out[-3000:]
    assert "Gather the minimal host facts" not in out
    assert not play.marker.exists(), "the injected command ran"
    assert play.tree() == before, "nothing may be written for invalid parameters"


def test_command_substitution_in_a_path_is_plain_data(tmp_path):
    play = Playground(tmp_path)
    before = play.tree()
    proc = play.playbook(*OFFLINE[2:], *_extra("model_dir", f"$(touch {play.marker})"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"model_dir='$(touch {play.marker})' is not a folder" in out, out[-3000:]
    assert not play.marker.exists()
    assert play.added_outside_run(before) == set()


@pytest.mark.parametrize(("typed", "meant"), [("precison", "precision"), ("Batch_Sise", "batch_size"),
                                              ("step", "steps")])
def test_misspelt_parameter_fails_early_and_names_the_right_one(tmp_path, typed, meant):
    play = Playground(tmp_path)
    proc = play.playbook(*OFFLINE, "-e", f"{typed}=1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"unknown parameter '{typed}'; did you mean '{meant}'?" in out, out[-3000:]
    assert not play.results.exists()


def test_ansible_and_role_variables_are_not_taken_for_typos(tmp_path):
    play = Playground(tmp_path)
    proc = play.playbook(*OFFLINE, "-e", "list_cases=true", "-e", "ansible_python_interpreter=/usr/bin/python3",
                         "-e", "benchmark_poll_s=2", "-e", "fleetbench_db=sqlite:///x")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "inference-throughput: precision=avx_fp32" in proc.stdout


def test_hostile_inventory_host_names_are_plain_data(tmp_path, stack_python):
    play = Playground(tmp_path)
    names = ["../../etc", f"a b'\"c; touch {play.marker}"]
    hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "fleetbench_host_root": str(play.host_root / str(i))} for i, name in enumerate(names)}
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"fleetbench": {"hosts": hosts}}}}))
    before = play.tree()
    proc = play.playbook("-i", str(inventory), *OFFLINE, "-e", "dry_run=true", root=False)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert not play.marker.exists()
    run = (play.results / "latest").resolve()
    dirs = json.loads((run / "run.json").read_text())["host_dirs"]
    assert dirs == {"../../etc": "___.._etc", names[1]: "a_b__c__touch_" + str(play.marker).replace("/", "_")}
    for name, folder in dirs.items():
        result = json.loads((run / "hosts" / folder / "inference-throughput" / "result.json").read_text())
        assert (result["host"], result["status"]) == (name, "skipped")
    assert play.added_outside_run(before) == set()
    # Each host's working folder is gone (added_outside_run would name it); only the caches stay.
    assert all((play.host_root / str(i) / "assets").is_dir() for i in range(len(names)))
