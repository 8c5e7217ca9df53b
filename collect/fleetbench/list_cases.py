"""`fleetbench cases`: list the cases each host of an inventory would run, without running anything."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleetbench import cases as fb_cases
from fleetbench import params as fb_params
from fleetbench import paths
from fleetbench.helptext import plain


def inventory_hosts(inventory: str) -> dict[str, dict[str, Any]]:
    """Hosts of group `fleetbench` with their variables and group names, as Ansible resolves them."""
    exe = Path(sys.executable).parent / "ansible-inventory"
    proc = subprocess.run([str(exe), "-i", inventory, "--list"], capture_output=True, text=True, cwd=paths.REPO)
    if proc.returncode != 0:
        raise SystemExit(f"ansible-inventory could not read {inventory}: {proc.stderr.strip()[-800:]}")
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def members(group: str) -> set[str]:
        entry = data.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= members(child)
        return found

    groups_of: dict[str, list[str]] = {}
    for group in data:
        if group != "_meta":
            for host in members(group):
                groups_of.setdefault(host, []).append(group)
    hosts = {h: {"vars": hostvars.get(h, {}), "groups": sorted(groups_of.get(h, []))}
             for h in sorted(members("fleetbench"))}
    if not hosts:  # ansible-inventory only warns about a missing file or one without the group
        raise SystemExit(f"no host in group 'fleetbench' in {inventory}: is the path right? The playbooks run the "
                         "hosts of that group (see inventory/fleet.example.yml)")
    return hosts


def parse_extra(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"-e {pair!r}: expected name=value")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    extra = parse_extra(args.extra)
    try:
        fb_params.check_typed(extra)
    except fb_params.ParamError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 2
    matrix = fb_cases.load_matrix()
    for host, info in inventory_hosts(args.inventory).items():
        given = {k: v for k, v in info["vars"].items() if k.lower() in fb_params.BY_NAME}
        given.update(extra)
        group = fb_cases.platform_group(info["groups"], matrix)
        try:
            selected = fb_cases.select(given, info["groups"], matrix)
        except fb_params.ParamError as exc:
            print(f"{host} [{group}]: invalid: {exc}", file=sys.stderr)
            return 2
        print(f"{host} [{group}]")
        for p in selected:
            print(f"  {fb_cases.case_line(p)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cases", help="list the cases each host would run (runs nothing)",
                       description=plain(__doc__).splitlines()[0])
    p.add_argument("-i", "--inventory", default=str(paths.REPO / "inventory" / "hosts.yml"),
                   help="inventory file or folder (default: inventory/hosts.yml)")
    p.add_argument("-e", "--extra", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter, as with ansible-playbook -e (repeatable), e.g. -e cases=gated")
    p.set_defaults(func=run)
