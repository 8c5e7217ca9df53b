"""offline=true over SSH: the controller downloads the stack's wheels once, hosts install only what it pushed.

Every host's SSH session points pip at an index that counts connections: a host pip without --no-index
would reach it. The "stack" is a one-wheel lock (tests/tinywheel.py), selected with provision_lock.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import ansible_playbook
from tests.fleet.sshfleet import SshFleet
from tests.tinywheel import make_wheel, write_lock

pytestmark = pytest.mark.e2e
DOWNLOADING = "Downloading the payload stack's wheels"


class CountingIndex:
    """A TCP listener standing in for a package index: it counts connections and answers none."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple"
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()


def test_offline_install_uses_only_pushed_wheels(tmp_path):
    index = CountingIndex()
    no_network = {"PIP_INDEX_URL": index.url, "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
    # Control: a pip that may use an index does reach this one.
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "x"), "fbtiny"],
                   env=no_network, capture_output=True, timeout=120)
    assert index.hits > 0
    index.hits = 0

    mirror = tmp_path / "mirror"  # what the controller's pip may use (PIP_FIND_LINKS), hosts cannot see it
    lock = write_lock(tmp_path / "stack.txt", make_wheel(mirror))
    with SshFleet(tmp_path / "fleet", size=2, env=no_network) as fleet:
        # Each host its own stack folder, so both need the venv; both have the same Python: one download.
        inventory = fleet.inventory(per_host={h.name: {"fleetbench_host_stack_dir": str(tmp_path / f"stacks-{h.name}")}
                                              for h in fleet.hosts})
        args = ("-i", str(inventory), "playbooks/provision.yml", "-e", "offline=true", "-e", f"provision_lock={lock}",
                "-e", "provision_os_packages_enabled=false")
        controller_env = {"FLEETBENCH_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1",
                          "PIP_FIND_LINKS": str(mirror)}
        first = ansible_playbook(*args, env=controller_env)
        assert first.returncode == 0, first.stdout[-6000:]
        assert first.stdout.count(DOWNLOADING) == 1, first.stdout[-6000:]
        for host in fleet.hosts:
            venvs = list((tmp_path / f"stacks-{host.name}").glob("venv-*/bin/python"))
            assert len(venvs) == 1, venvs
            out = subprocess.run([str(venvs[0]), "-c", "import fbtiny; print(fbtiny.VALUE)"], capture_output=True,
                                 text=True, check=True)
            assert out.stdout.strip() == "42"
            assert not list((host.root / "wheels").glob("*/*.whl")), "pushed wheels are removed once installed"
        assert index.hits == 0, "a host's pip reached the package index"

        # A rebuilt host reuses the controller's cache: the mirror is gone, nothing is downloaded again.
        (mirror / "fbtiny-1.0-py3-none-any.whl").unlink()
        subprocess.run(["rm", "-rf", str(tmp_path / f"stacks-{fleet.hosts[0].name}")], check=True)
        again = ansible_playbook(*args, env=controller_env)
        assert again.returncode == 0, again.stdout[-6000:]
        assert DOWNLOADING not in again.stdout
        assert list((tmp_path / f"stacks-{fleet.hosts[0].name}").glob("venv-*/bin/python"))
        assert index.hits == 0
