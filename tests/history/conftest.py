"""History tests: a real PostgreSQL server on loopback (one per session), SQLite files, run folder builders."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.history.synth import Rec, night, run_id, write_run


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: tests run as root in CI, so its tools run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """initdb + pg_ctl start in a temp folder, listening on 127.0.0.1 only; yields the server's base URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert found, "PostgreSQL is not installed: scripts/test-deps.sh installs the Debian package postgresql"
    bindir = Path(found[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="fleetbench-pg-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                 "--no-sync", "-E", "UTF8"]), **run)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"),
                                 "-w", "-t", "60", "start"]), **run)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "results" / "fleetbench.sqlite")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def nightly(results: Path) -> Callable[[int, list[Rec]], Path]:
    """nightly(i, recs): the run folder of night i (run id and start time from synth)."""

    def make(i: int, recs: list[Rec], groups: dict[str, list[str]] | None = None) -> Path:
        return write_run(results, run_id(i), night(i).isoformat(), recs, groups)

    return make
