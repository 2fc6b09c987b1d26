"""The SQLite store: WAL, foreign keys, migrations up and down on a populated database, locks."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from smartplexd.store import Store, locks, open_store
from smartplexd.store.db import available_migrations


def test_pragmas(tmp_path):
    store = open_store(tmp_path / "s.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_every_migration_has_up_and_down_and_the_tables_of_the_design(tmp_path):
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(set(versions)) and versions[0] == 1
    store = open_store(tmp_path / "s.db")
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in (
        "schema_migrations", "audit_log", "locks", "media_items", "item_facts", "sync_events", "plans",
        "plan_items", "deletion_events", "deletion_steps", "webhook_events", "integration_health",
        "deletion_requests", "ai_usage",
    ):  # fmt: skip
        assert table in tables


def _populate(store: Store) -> None:
    from smartplexd import audit

    store.execute(
        "INSERT INTO media_items (server, section_id, section_title, rating_key, type, title, size_bytes) "
        "VALUES ('home', '1', 'Movies', '42', 'movie', 'Heat', 1000)"
    )
    store.execute("INSERT INTO item_facts (item_id, plugin, facts, fetched_at) VALUES (1, 'radarr', '{}', 1)")
    audit.record(store, "test", "populate", "home/42", {"n": 1})


def test_round_trip_up_down_up_on_a_populated_database(tmp_path):
    store = open_store(tmp_path / "s.db")
    latest = store.schema_version()
    _populate(store)
    undone = store.rollback(to=1)
    assert undone == list(range(latest, 1, -1))
    assert store.schema_version() == 1
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "media_items" not in tables and "audit_log" in tables
    # The audit log (migration 1) survived the partial rollback with its row.
    assert store.query_one("SELECT COUNT(*) AS n FROM audit_log")["n"] == 1
    assert store.migrate() == list(range(2, latest + 1))
    _populate(store)
    assert store.query_one("SELECT title FROM media_items")["title"] == "Heat"
    store.rollback(to=0)
    assert store.schema_version() == 0
    assert store.migrate() == list(range(1, latest + 1))


def test_migrate_to_a_version(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.migrate(to=2) == [1, 2]
    assert store.schema_version() == 2


def test_db_cli_migrate_and_rollback(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("database: ./x.db\n")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "smartplexd", "-c", str(cfg), "db", *a, "--json"], capture_output=True, text=True
    )
    out = run("migrate")
    assert out.returncode == 0, out.stderr
    latest = json.loads(out.stdout)["to"]
    out = run("rollback", "--to", "2")
    assert json.loads(out.stdout) | {} == {
        "from": latest,
        "to": 2,
        "latest": latest,
        "applied": list(range(latest, 2, -1)),
    }
    out = run("migrate")
    assert json.loads(out.stdout)["to"] == latest


def test_foreign_keys_are_enforced(tmp_path):
    import sqlite3

    store = open_store(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError):
        store.execute("INSERT INTO item_facts (item_id, plugin, facts, fetched_at) VALUES (999, 'x', '{}', 1)")


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    store = open_store(tmp_path / "s.db")
    held = locks.acquire(store, "sync:home", owner="a", details={"sync_id": 7})
    other = Store(tmp_path / "s.db")
    with pytest.raises(locks.LockHeld) as info:
        locks.acquire(other, "sync:home", owner="b")
    assert "sync:home is already running (sync_id=7)" in str(info.value)
    held.release()
    locks.acquire(other, "sync:home", owner="b").release()


def _hold_lock_and_die(path: str) -> None:
    store = Store(path)
    locks.acquire(store, "executor")
    os._exit(0)  # dies holding the lock, like kill -9


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = str(tmp_path / "s.db")
    open_store(path).close()
    proc = multiprocessing.get_context("spawn").Process(target=_hold_lock_and_die, args=(path,))
    proc.start()
    proc.join(30)
    store = Store(path)
    assert locks.holder(store, "executor") is not None
    lock = locks.acquire(store, "executor")
    assert lock.stolen_from is not None


def test_expired_lease_is_taken_over(tmp_path):
    store = open_store(tmp_path / "s.db")
    locks.acquire(store, "sync:x", owner="elsewhere", ttl=0.01)
    time.sleep(0.05)
    assert locks.acquire(store, "sync:x", owner="me").stolen_from == "elsewhere"
