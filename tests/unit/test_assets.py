import hashlib
import http.server
import threading

import pytest

from fleetbench import assets, params, paths

SHARED_SST2 = paths.REPO.parent / "shared" / "data" / "sst2"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_dataset_dir_is_checked_against_glue_hashes(cache):
    staged = assets.stage_dataset(params.validate({"dataset_dir": str(SHARED_SST2)}))
    assert staged["sha256"] == assets.SST2_SHA256
    assert hashlib.sha256((SHARED_SST2 / "dev.tsv").read_bytes()).hexdigest() == assets.SST2_SHA256["dev.tsv"]


def test_modified_dataset_is_refused(cache, tmp_path):
    d = tmp_path / "sst2"
    d.mkdir()
    (d / "dev.tsv").write_text("sentence\tlabel\nfoo \t1\n")
    (d / "train.tsv").write_bytes((SHARED_SST2 / "train.tsv").read_bytes())
    with pytest.raises(assets.StageError, match=r"dev\.tsv.*unmodified"):
        assets.stage_dataset(params.validate({"dataset_dir": str(d)}))


def test_offline_download_points_to_the_local_options(cache):
    # Port 9 on loopback: connection refused, exactly what an offline machine sees.
    p = params.validate({"dataset_url": "http://127.0.0.1:9/SST-2.zip"})
    with pytest.raises(assets.StageError) as err:
        assets.stage_dataset(p)
    assert "dataset_dir=" in str(err.value) and "model_source=synthetic" in str(err.value)
    assert not list((cache / "downloads").glob("*")), "no partial download may remain"


def test_glue_zip_is_downloaded_extracted_and_verified(cache, tmp_path):
    import zipfile
    with zipfile.ZipFile(tmp_path / "SST-2.zip", "w") as zf:
        for name in ("dev.tsv", "train.tsv"):
            zf.write(SHARED_SST2 / name, f"SST-2/{name}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = lambda *a, **k: Quiet(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/SST-2.zip"
        staged = assets.stage_dataset(params.validate({"dataset_url": url}))
    finally:
        server.shutdown()
    assert staged["sha256"] == assets.SST2_SHA256


def test_pickle_only_model_dir_is_refused_unless_allowed(cache, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(assets.StageError, match="allow_pickle_weights=true"):
        assets.stage_model(params.validate({"model_dir": str(tmp_path)}))
    staged = assets.stage_model(params.validate({"model_dir": str(tmp_path), "allow_pickle_weights": "true"}))
    assert set(staged["files"]) == {"config.json", "pytorch_model.bin"}


def test_model_dir_files_are_hashed_and_symlinks_skipped(cache, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "vocab.txt").symlink_to("/etc/passwd")
    staged = assets.stage_model(params.validate({"model_dir": str(tmp_path)}))
    assert staged["files"] == {"config.json": hashlib.sha256(b"{}").hexdigest(),
                               "model.safetensors": hashlib.sha256(b"weights").hexdigest()}


def test_offline_hub_model_says_how_to_run_offline(cache, monkeypatch):
    monkeypatch.setattr(assets, "HUB", "http://127.0.0.1:9")
    with pytest.raises(assets.StageError, match="model_source=synthetic"):
        assets.stage_model(params.validate({}))


def test_payload_archive_is_reproducible(cache):
    a = assets.stage_payload()
    b = assets.stage_payload()
    assert a == b and a["archive"].endswith(f"payload-{a['key']}.tar.gz")
