"""offline=true on the controller: markers evaluated for the host, one hash-checked download, a clear error."""

import json
import subprocess
import sys

import pytest

from fleetbench import paths, wheels
from tests.tinywheel import make_wheel, write_lock

INSTALLER = paths.REPO / "roles" / "provision" / "files" / "install_stack.py"


@pytest.fixture
def target(tmp_path):
    """This machine's Python as install_stack.py reports it to the controller."""
    lock = write_lock(tmp_path / "probe.txt", make_wheel(tmp_path / "probe"))
    out = subprocess.run([sys.executable, str(INSTALLER), "--lock", str(lock), "--stack-dir", str(tmp_path / "s"),
                          "--check"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["target"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_markers_are_evaluated_for_the_host_not_the_controller(target):
    lock = ("numpy==2.2.6 ; python_full_version < '3.11' \\\n    --hash=sha256:aa\n"
            "numpy==2.4.6 ; python_full_version >= '3.11' \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\n"
            "    # via torch\ncolorama==0.4.6 ; sys_platform == 'win32' --hash=sha256:dd\n")
    old = {**target, "python_full_version": "3.10.12", "python_version": "3.10"}
    new = {**target, "python_full_version": "3.12.3", "python_version": "3.12"}
    assert wheels.lock_for(lock, old) == "numpy==2.2.6 --hash=sha256:aa\n"
    assert wheels.lock_for(lock, new) == "numpy==2.4.6 --hash=sha256:bb --hash=sha256:cc\n"


def test_platform_tags_cover_the_hosts_glibc_down_to_manylinux1(target):
    tags = wheels.platform_tags({**target, "platform_machine": "x86_64", "glibc": "2.36"})
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags) and tags[-1] == "linux_x86_64"
    assert wheels.platform_tags({**target, "platform_machine": "aarch64", "glibc": "2.28"})[-3:] == [
        "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]
    with pytest.raises(wheels.WheelError, match="unexpected"):
        wheels.target_tag({**target, "python_version": "3.12; rm -rf /"})


def test_download_once_then_reuse(target, cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    lock = write_lock(tmp_path / "stack.txt", make_wheel(mirror))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(mirror))
    said = []
    first = wheels.download(lock, target, said.append)
    assert first["downloaded"] and first["files"] == 1 and "Downloading" in said[0]
    assert (cache / "wheels" / first["key"] / "fbtiny-1.0-py3-none-any.whl").is_file()
    said.clear()
    (mirror / "fbtiny-1.0-py3-none-any.whl").unlink()  # a second download would now fail
    again = wheels.download(lock, target, said.append)
    assert not again["downloaded"] and again["dir"] == first["dir"] and not said


def test_a_wrong_hash_is_refused(target, cache, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    wheel = make_wheel(mirror)
    lock = tmp_path / "stack.txt"
    lock.write_text(f"fbtiny==1.0 --hash=sha256:{'0' * 64}\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(mirror))
    with pytest.raises(wheels.WheelError, match=r"(?i)hash"):
        wheels.download(lock, target, lambda _: None)
    assert wheel.is_file()


def test_a_controller_without_index_says_what_to_do(target, cache, tmp_path, monkeypatch):
    lock = write_lock(tmp_path / "stack.txt", make_wheel(tmp_path / "w"))
    # Port 9 on loopback: connection refused, as on a controller without network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(wheels.WheelError) as err:
        wheels.download(lock, target, lambda _: None)
    text = str(err.value)
    assert "offline=true" in text and "PIP_INDEX_URL" in text and "FLEETBENCH_CACHE" in text
    assert not list((cache / "wheels").glob("*/.fleetbench-complete"))
