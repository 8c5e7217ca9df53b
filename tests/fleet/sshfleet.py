"""A real multi-host fleet on this machine: one sshd per host on its own loopback address and port.

Each host gets its own fleetbench root folder (they all share this machine's filesystem) and key-based
root login with a key made for the test. The daemons are started and stopped by the test itself.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


@dataclass
class Host:
    name: str
    address: str
    port: int
    root: Path
    config: Path
    proc: subprocess.Popen | None = None


@dataclass
class SshFleet:
    workdir: Path
    size: int = 3
    env: dict[str, str] = field(default_factory=dict)  # set in every host's SSH sessions (sshd SetEnv)
    hosts: list[Host] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        for i in range(self.size):
            name = f"fleet-h{i}"
            address = f"127.0.0.{20 + i}"
            hostdir = self.workdir / name
            hostdir.mkdir()
            hostkey = hostdir / "ssh_host_ed25519_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)], check=True)
            port = _free_port(address)
            config = hostdir / "sshd_config"
            config.write_text("\n".join([
                f"ListenAddress {address}:{port}",
                f"HostKey {hostkey}",
                f"PidFile {hostdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                *(f"SetEnv {k}={v}" for k, v in self.env.items()),
                "",
            ]))
            self.hosts.append(Host(name, address, port, hostdir / "root", config))

    def start(self, host: Host) -> None:
        host.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(host.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host.address, host.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd for {host.name} did not start on {host.address}:{host.port}")

    def stop(self, host: Host) -> None:
        if host.proc and host.proc.poll() is None:
            host.proc.terminate()
            host.proc.wait(timeout=10)
        host.proc = None

    def __enter__(self) -> SshFleet:
        for host in self.hosts:
            self.start(host)
        return self

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts:
            self.stop(host)

    def inventory(self, groups: dict[str, list[str]] | None = None,
                  per_host: dict[str, dict[str, object]] | None = None, **host_vars: object) -> Path:
        """Write an inventory with every host in group `fleetbench` (and in `groups`, by host name);
        `host_vars` apply to every host, `per_host` to the named ones."""
        hosts = {
            h.name: {
                "ansible_host": h.address,
                "ansible_port": h.port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "ansible_python_interpreter": "/usr/bin/python3",
                "fleetbench_host_root": str(h.root),
                **host_vars,
                **(per_host or {}).get(h.name, {}),
            }
            for h in self.hosts
        }
        children: dict[str, dict] = {"fleetbench": {"hosts": hosts}}
        for group, members in (groups or {}).items():
            children[group] = {"hosts": {m: {} for m in members}}
        path = self.workdir / "inventory.yml"
        path.write_text(yaml.safe_dump({"all": {"children": children}}, sort_keys=False))
        return path
