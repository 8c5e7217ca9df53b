"""A host's output is untrusted: whatever its payload leaves in its output folder (symlinks to secrets,
results claiming another host or case, `../` names) lands in that host's own folder of the run, as data, or
not at all. The payload is replaced by a hostile one through the stage role's payload folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.security.attack import OFFLINE, Playground

pytestmark = pytest.mark.e2e

HOSTILE = '''
import json, os, sys
from pathlib import Path
args = sys.argv
out = Path(args[args.index("--out") + 1])
case = json.loads(Path(args[args.index("--case") + 1]).read_text())
if {links!r}:
    os.symlink({secret!r}, out / "result.json")
    os.symlink({secret!r}, out / "payload.log")
else:
    doc = {{"schema_version": 1, "run_id": case["run_id"], "host": "../../x", "case": "../../x",
            "status": "failed", "reason": "x", "params": case["params"]}}
    (out / "result.json").write_text(json.dumps(doc))
    (out / "payload.log").write_text("Throughput: 1e9\\n")
'''


def _hostile_run(tmp_path: Path, links: bool):
    play = Playground(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9c")
    secret.chmod(0o600)
    package = tmp_path / "hostile" / "fleetbench_payload"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(HOSTILE.format(links=links, secret=str(secret)))
    before = play.tree()
    proc = play.playbook(*OFFLINE, "-e", f"stage_payload_dir={package.parent}")
    run = (play.results / "latest").resolve()
    result = json.loads((run / "hosts/localhost/inference-throughput/result.json").read_text())
    return play, proc, run, result, before


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def test_symlinks_in_the_host_output_are_not_followed(tmp_path, stack_python):
    play, proc, run, result, before = _hostile_run(tmp_path, links=True)
    assert proc.returncode == 2, proc.stdout[-4000:]  # the run is partial
    assert result["status"] == "failed"
    assert "not a regular file on the host: not fetched" in result["reason"]
    assert not (run / "hosts/localhost/inference-throughput/payload.log").exists()
    for path in _files(run):
        assert b"TOP-SECRET" not in path.read_bytes(), f"the secret was copied into {path}"
    assert not any(p.is_symlink() for p in run.rglob("*"))
    assert play.added_outside_run(before) == set()


def test_results_naming_other_hosts_or_paths_stay_in_their_folder(tmp_path, stack_python):
    play, proc, run, result, before = _hostile_run(tmp_path, links=False)
    assert proc.returncode == 2, proc.stdout[-4000:]
    (row,) = json.loads((run / "summary.json").read_text())["rows"]
    assert (row["host"], row["case"], row["status"]) == ("localhost", "inference-throughput", "failed")
    assert "result.json" in row["reason"]
    assert result["host"] == "../../x"  # kept in the host's own folder, as the host wrote it: data
    assert play.added_outside_run(before) == set()
    assert not (play.results / "x").exists() and not (tmp_path / "x").exists()
    assert not os.path.lexists(run.parent.parent / "x")
