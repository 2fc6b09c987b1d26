"""The SQLite store: one file, WAL, foreign keys on, a busy timeout, numbered up/down migrations.

A :class:`Store` wraps one ``sqlite3`` connection (and the sqlite-utils ``Database`` over it). A
connection belongs to the thread that opened it; code that works in another thread opens its own
``Store`` on the same path (WAL lets readers and one writer proceed together).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import sqlite_utils

BUSY_TIMEOUT_MS = 10_000
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


class MigrationError(Exception):
    """A migration could not be applied or rolled back; the database is left at the last good version."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    up: str
    down: str


def available_migrations() -> list[Migration]:
    """Every migration shipped in ``smartplexd/store/migrations``, in version order."""
    files: dict[tuple[int, str], dict[str, str]] = {}
    folder = resources.files("smartplexd.store") / "migrations"
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if not match:
            continue
        key = (int(match.group(1)), match.group(2))
        files.setdefault(key, {})[match.group(3)] = entry.read_text(encoding="utf-8")
    out = []
    for (version, name), parts in sorted(files.items()):
        if "up" not in parts or "down" not in parts:
            raise MigrationError(f"migration {version:04d}_{name} needs both .up.sql and .down.sql")
        out.append(Migration(version, name, parts["up"], parts["down"]))
    return out


class Store:
    """An open smartplexd database."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we manage transactions explicitly (BEGIN IMMEDIATE for writers).
        self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.db = sqlite_utils.Database(self.conn)
        self._depth = 0

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    def query_one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    # --- migrations -------------------------------------------------------------------------------

    def _ensure_migrations_table(self) -> None:
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )

    def schema_version(self) -> int:
        self._ensure_migrations_table()
        row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return row[0] or 0

    def applied_migrations(self) -> list[dict[str, Any]]:
        self._ensure_migrations_table()
        return self.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")

    def migrate(self, to: int | None = None) -> list[int]:
        """Apply pending migrations up to ``to`` (default: the newest). Returns the versions applied."""
        current = self.schema_version()
        done = []
        for m in available_migrations():
            if m.version <= current or (to is not None and m.version > to):
                continue
            self._run_script(m.up, m, "up")
            self.conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
            done.append(m.version)
        return done

    def rollback(self, to: int | None = None) -> list[int]:
        """Roll back to version ``to`` (default: undo only the newest migration). Returns versions undone."""
        current = self.schema_version()
        target = current - 1 if to is None else to
        if target < 0:
            raise MigrationError("cannot roll back below version 0")
        done = []
        for m in reversed(available_migrations()):
            if m.version > current or m.version <= target:
                continue
            self._run_script(m.down, m, "down")
            self.conn.execute("DELETE FROM schema_migrations WHERE version = ?", (m.version,))
            done.append(m.version)
        return done

    def _run_script(self, sql: str, m: Migration, direction: str) -> None:
        # executescript would COMMIT on its own; run statement by statement inside one transaction so a
        # failing migration leaves the database exactly as it was.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    self.conn.execute(statement)
            except sqlite3.Error as exc:
                self.conn.execute("ROLLBACK")
                raise MigrationError(f"migration {m.version:04d}_{m.name} ({direction}) failed: {exc}") from exc
            self.conn.execute("COMMIT")
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (complete_statement keeps trigger bodies together)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def open_store(path: str | Path, migrate: bool = True) -> Store:
    """Open the database at ``path`` and bring its schema up to date (the daemon and CLI both do this)."""
    store = Store(path)
    if migrate:
        store.migrate()
    return store
