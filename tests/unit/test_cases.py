"""The case matrix and `fleetbench cases` on an inventory with spr, icx and emr groups."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from fleetbench import cases, params
from tests.conftest import BIN, REPO


@pytest.fixture
def fleet_inventory(tmp_path):
    # Inside inventory/ of a copy, so group_vars/ beside it applies as for a user's inventory/fleet.yml.
    inv_dir = tmp_path / "inventory"
    inv_dir.mkdir()
    (inv_dir / "group_vars").symlink_to(REPO / "inventory" / "group_vars")
    inv = {"all": {"children": {"fleetbench": {"children": {
        "spr": {"hosts": {"spr-01": {}}}, "icx": {"hosts": {"icx-01": {}}}, "emr": {"hosts": {"emr-01": {}}},
    }}}}}
    path = inv_dir / "fleet.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def fb_cases(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "fleetbench"), "cases", *args], capture_output=True, text=True, timeout=120)


def test_cases_lists_each_host_with_its_platform_defaults(fleet_inventory):
    proc = fb_cases("-i", str(fleet_inventory), "-e", "cases=gated")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    hosts = [ln for ln in lines if not ln.startswith("  ")]
    assert hosts == ["emr-01 [emr]", "icx-01 [icx]", "spr-01 [spr]"]
    by_host: dict[str, list[str]] = {}
    current = ""
    for ln in lines:
        if ln.startswith("  "):
            by_host[current].append(ln.strip())
        else:
            current = ln.split()[0]
            by_host[current] = []
    for host, precision in (("spr-01", "amx_bfloat16"), ("emr-01", "amx_bfloat16"), ("icx-01", "avx_fp32")):
        names = [c.split(":")[0] for c in by_host[host]]
        assert names == ["inference-throughput-gated", "inference-latency-gated", "inference-accuracy-gated"]
        assert all(f"precision={precision}" in c for c in by_host[host])


def test_regex_selection_and_errors(fleet_inventory):
    proc = fb_cases("-i", str(fleet_inventory), "-e", "cases=^inference-(throughput|latency)-pkm$")
    assert proc.returncode == 0 and proc.stdout.count("-pkm:") == 6
    bad = fb_cases("-i", str(fleet_inventory), "-e", 'cases=.*"; id; "')
    assert bad.returncode == 2 and "matches none of the cases" in bad.stderr
    assert "uid=" not in bad.stdout + bad.stderr
    typo = fb_cases("-i", str(fleet_inventory), "-e", "precison=avx_fp32")
    assert typo.returncode == 2 and "unknown parameter 'precison'; did you mean 'precision'?" in typo.stderr
    assert typo.stdout == "", "nothing is listed under a typo"
    missing = fb_cases("-i", str(fleet_inventory.parent / "nonexistent.yml"))
    assert missing.returncode != 0 and "no host in group 'fleetbench' in" in missing.stderr
    empty_name = fb_cases("-i", str(fleet_inventory), "-e", "=x")
    assert empty_name.returncode != 0 and "expected name=value" in empty_name.stderr
    jinja = fb_cases("-i", str(fleet_inventory), "-e", "steps={{ 7 * 6 }}")
    assert jinja.returncode == 2 and "contains a Jinja template" in jinja.stderr


def test_case_overrides_and_user_values():
    matrix = cases.load_matrix()
    [latency] = cases.select({"cases": "latency-gated", "steps": "7"}, ["spr"], matrix)
    assert (latency["case"], latency["mode"], latency["steps"], latency["weight_sharing"]) == (
        "inference-latency-gated", "latency", 7, True)
    with pytest.raises(params.ParamError, match="cannot be combined with cases="):
        cases.select({"cases": "gated", "mode": "latency"}, ["spr"], matrix)
    with pytest.raises(params.ParamError, match="not a valid regular expression"):
        cases.select({"cases": "("}, ["spr"], matrix)
