"""The Hub token is sent to the Hub and nowhere else: not printed, not in the run folder (report, history
database, ansible-runner's artifacts and job events), not in the controller cache, not on the host."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import BIN, REPO, SST2
from tests.payload.test_hub_e2e import MODEL_ID, REVISION, TOKEN, serve_hub
from tests.security.attack import Playground

pytestmark = pytest.mark.e2e


def test_token_is_never_written_anywhere(tmp_path, stack_python):
    play = Playground(tmp_path)
    model = tmp_path / "hub-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    server = serve_hub(model)
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_TOKEN": TOKEN,
           "FLEETBENCH_CACHE": str(play.cache), "TMPDIR": str(play.tmpdir)}
    try:
        proc = subprocess.run(
            [str(BIN / "fleetbench"), "run", "--model-source", "hub", "--model-id", MODEL_ID, "--model-revision",
             REVISION, "--dataset-dir", str(SST2), "--precision", "avx_fp32", "--dry-run", "true",
             "--results-dir", str(play.results), "-e", f"fleetbench_host_root={play.host_root}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout[-4000:]
    run = (play.results / "latest").resolve()
    # The download really used the token (the mirror answers 401 without it) and the runner kept its artifacts.
    assert (play.cache / "models").is_dir() and (run / "ansible-runner" / "artifacts" / "main").is_dir()
    assert (play.results / "fleetbench.sqlite").is_file()
    assert TOKEN not in proc.stdout + proc.stderr
    searched = 0
    for top in (play.results, play.host_root, play.cache, play.tmpdir):
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink():
                searched += 1
                assert TOKEN.encode() not in path.read_bytes(), f"token found in {path}"
    assert searched > 20
