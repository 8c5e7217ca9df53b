"""The default model path end to end: the main job downloads a model from a Hub (a local mirror serving
the tiny trained model over HTTP, as HF_ENDPOINT allows), with a token that must never be written down."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from tests.conftest import SST2, ansible_playbook

pytestmark = pytest.mark.e2e
TOKEN = "hf_plantedSecretToken1234567890"
MODEL_ID, REVISION = "fleetbench-test/tiny-sst2", "0123456789abcdef0123456789abcdef01234567"


def serve_hub(model_dir: Path) -> http.server.ThreadingHTTPServer:
    files = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_error(401)
                return
            if self.path == f"/api/models/{MODEL_ID}/revision/{REVISION}":
                body = json.dumps({"siblings": [{"rfilename": n} for n in files]}).encode()
            elif self.path.startswith(f"/{MODEL_ID}/resolve/{REVISION}/") and self.path.rsplit("/", 1)[1] in files:
                body = files[self.path.rsplit("/", 1)[1]]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_hub_model_is_downloaded_checked_and_the_token_never_written(tiny_model, tmp_path):
    server = serve_hub(tiny_model)
    results = tmp_path / "results"
    try:
        proc = ansible_playbook(
            "run.yml", "-e", "model_source=hub", "-e", f"model_id={MODEL_ID}", "-e", f"model_revision={REVISION}",
            "-e", "mode=accuracy", "-e", "precision=avx_fp32", "-e", f"dataset_dir={SST2}",
            "-e", f"fleetbench_results_dir={results}",
            env={"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_TOKEN": TOKEN,
                 "FLEETBENCH_CACHE": str(tmp_path / "cache")})
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stdout[-5000:]
    run = (results / "latest").resolve()
    result = json.loads((run / "hosts/localhost/inference-accuracy/result.json").read_text())
    assert result["status"] == "passed" and result["kpi"]["accuracy"] >= 75
    model = result["provenance"]["model"]
    assert (model["source"], model["id"], model["revision"]) == ("hub", MODEL_ID, REVISION)
    expected = hashlib.sha256((tiny_model / "model.safetensors").read_bytes()).hexdigest()
    assert model["files"]["model.safetensors"] == expected
    # The token: sent to the Hub, never printed, never stored.
    assert TOKEN not in proc.stdout + proc.stderr
    for path in [*results.rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file() and not path.is_symlink():
            assert TOKEN.encode() not in path.read_bytes(), f"token found in {path}"
