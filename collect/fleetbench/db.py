"""The history database: SQLite in the results folder by default, PostgreSQL for a ``postgresql://`` URL.

Where it is: ``--db`` if given, else ``FLEETBENCH_DB``, else ``results/fleetbench.sqlite``. A value is a
PostgreSQL URL (``postgresql://user@host/db``; psycopg 3) or an SQLite path (``sqlite:///abs/path`` or a
plain path). SQL is written once, with ``?`` placeholders and types both dialects accept; this module
translates the placeholders and owns the transactions (``BEGIN IMMEDIATE`` on SQLite, psycopg's on
PostgreSQL), so a writer sees all of its changes committed or none.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from fleetbench.runs import default_results_dir
from fleetbench.setting import setting_of

ENV = "FLEETBENCH_DB"
DEFAULT_NAME = "fleetbench.sqlite"
SCHEMA_VERSION = 2  # 2: records.setting (the series key's parameters, fleetbench.setting)
PG_SCHEMES = ("postgresql://", "postgres://")

# Columns of `records`, in the order ingest writes them (see fleetbench.history.StoredRecord).
RECORD_COLUMNS = (
    "run_id", "host", "case_name", "status", "reason", "platform", "cpu_model", "host_groups", "precision",
    "mode", "batch_size", "stack", "setting", "throughput", "latency_p50", "latency_p90", "latency_p99", "accuracy",
    "accuracy_meaningful", "included", "excluded", "doc",
)
RUN_COLUMNS = ("run_id", "started_at", "source", "status", "digest", "ingested_at", "location")

_DDL = (
    """CREATE TABLE IF NOT EXISTS fleetbench_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        digest TEXT NOT NULL,
        ingested_at TEXT NOT NULL,
        location TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS records (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        host TEXT NOT NULL,
        case_name TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        platform TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        host_groups TEXT NOT NULL,
        precision TEXT,
        mode TEXT,
        batch_size INTEGER,
        stack TEXT NOT NULL,
        setting TEXT NOT NULL,
        throughput DOUBLE PRECISION,
        latency_p50 DOUBLE PRECISION,
        latency_p90 DOUBLE PRECISION,
        latency_p99 DOUBLE PRECISION,
        accuracy DOUBLE PRECISION,
        accuracy_meaningful INTEGER,
        included INTEGER NOT NULL,
        excluded TEXT NOT NULL,
        doc TEXT,
        PRIMARY KEY (run_id, host, case_name))""",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
    "CREATE INDEX IF NOT EXISTS records_series ON records (case_name, precision, platform, host)",
)


class DatabaseError(Exception):
    """The database cannot be opened or used; the message says which and why."""


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...


def resolve(value: str | None) -> str:
    """The database to use: --db, else $FLEETBENCH_DB, else results/fleetbench.sqlite."""
    return value or os.environ.get(ENV) or str(default_results_dir() / DEFAULT_NAME)


def describe(url: str) -> str:
    """The database for messages, without a password."""
    if url.startswith(PG_SCHEMES):
        scheme, rest = url.split("://", 1)
        creds, sep, where = rest.rpartition("@")
        return f"{scheme}://{creds.split(':', 1)[0]}@{where}" if sep else url
    return url


class Database:
    """One connection. Reads with :meth:`rows`; writes inside :meth:`transaction`."""

    def __init__(self, url: str, existing: bool = False) -> None:
        """`existing`: refuse an SQLite file that is not there yet (the read-only commands: a mistyped path
        would otherwise become a new, empty history)."""
        self.url = url
        self.postgres = url.startswith(PG_SCHEMES)
        path = Path(url.removeprefix("sqlite://"))
        if existing and not self.postgres and not path.exists():
            raise DatabaseError(f"no history database at {path}: ingest a run first (fleetbench ingest RUN_DIR), "
                                f"or name yours with --db or ${ENV}")
        try:
            self._conn: Any = self._connect_postgres() if self.postgres else self._connect_sqlite()
            with self.transaction() as cur:
                for statement in _DDL:
                    cur.execute(statement)
                cur.execute("SELECT value FROM fleetbench_meta WHERE name = 'schema_version'")
                found = cur.fetchall()
                if not found:
                    cur.execute("INSERT INTO fleetbench_meta (name, value) VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
                elif int(found[0][0]) > SCHEMA_VERSION:
                    raise DatabaseError(f"database schema version {found[0][0]} is newer than this fleetbench "
                                        f"understands ({SCHEMA_VERSION})")
                elif int(found[0][0]) < SCHEMA_VERSION:
                    _migrate(cur, int(found[0][0]))
        except DatabaseError:
            raise
        except Exception as err:  # driver errors: sqlite3.Error, psycopg.Error, OSError
            raise DatabaseError(f"cannot use the database {describe(url)}: {err}") from err

    def _connect_postgres(self) -> Any:
        import psycopg  # only needed for PostgreSQL

        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = Path(self.url.removeprefix("sqlite://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """All statements in the block commit together, or none does (an exception or a kill rolls back)."""
        cur = _Translating(self._conn.cursor(), self._sql)
        if self.postgres:
            with self._conn.transaction():
                yield cur
            return
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (a full disk does)
                    cur.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise DatabaseError(self._failure(err)) from err

    def _failure(self, err: sqlite3.Error) -> str:
        if "database or disk is full" in str(err):  # SQLITE_FULL
            return (f"no space left on device while writing the database {describe(self.url)} (it is left as it "
                    f"was); free space there, or use another database (--db URL or {ENV})")
        return f"cannot write to the database {describe(self.url)}: {err}"

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        cur.execute(self._sql(sql), params)
        return [tuple(row) for row in cur.fetchall()]

    def close(self) -> None:
        self._conn.close()


def _add_settings(cur: Cursor) -> None:
    """1 -> 2: each record's setting, recomputed from its stored result.json (unknown without one)."""
    cur.execute("ALTER TABLE records ADD COLUMN setting TEXT NOT NULL DEFAULT ''")
    cur.execute("SELECT run_id, host, case_name, doc FROM records")
    rows = cur.fetchall()
    cur.executemany("UPDATE records SET setting = ? WHERE run_id = ? AND host = ? AND case_name = ?",
                    [(setting_of(json.loads(doc) if doc else None, {}).to_text(), run_id, host, case)
                     for run_id, host, case, doc in rows])


_MIGRATIONS = {1: _add_settings}  # from version N to N + 1


def _migrate(cur: Cursor, version: int) -> None:
    """Bring an older layout up to SCHEMA_VERSION, inside the opening transaction (all steps or none)."""
    for step in range(version, SCHEMA_VERSION):
        _MIGRATIONS[step](cur)
    cur.execute("UPDATE fleetbench_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))


class _Translating:
    """A cursor that takes ``?`` placeholders whatever the driver wants."""

    def __init__(self, cur: Any, sql: Any) -> None:
        self._cur, self._sql = cur, sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cur.execute(self._sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cur.executemany(self._sql(sql), params)

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall())


@contextmanager
def opened(value: str | None, existing: bool = False) -> Iterator[Database]:
    """The database named by --db / $FLEETBENCH_DB / the default, closed afterwards (`existing`: see
    :class:`Database`)."""
    db = Database(resolve(value), existing)
    try:
        yield db
    finally:
        db.close()


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help=f"history database: a postgresql:// URL or an SQLite path "
                        f"(default: ${ENV}, else results/{DEFAULT_NAME})")
