"""The audit log: append-only, hash-chained; any edit or deletion is found by `audit verify`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from smartplexd import audit
from smartplexd.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "smartplexd.db")
    for i in range(1, 6):
        audit.record(s, "cli:alice", "deletion.step", f"item/{i}", {"step": i})
    return s


def _tamper(store, sql: str) -> None:
    # Triggers stop UPDATE/DELETE through SQLite; someone with file access can drop them first.
    store.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    store.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    store.execute(sql)


def test_intact_chain_verifies(store):
    result = audit.verify(store)
    assert result.ok and result.rows == 5


def test_triggers_reject_update_and_delete(store):
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.execute("DELETE FROM audit_log WHERE seq = 2")


def test_edited_row_is_found(store):
    _tamper(store, "UPDATE audit_log SET details = '{\"step\":99}' WHERE seq = 3")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 3 and "edited" in result.problem


def test_deleted_middle_row_is_found(store):
    _tamper(store, "DELETE FROM audit_log WHERE seq = 2")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 2


def test_deleted_newest_row_is_found(store):
    _tamper(store, "DELETE FROM audit_log WHERE seq = 5")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 5


def test_rehashed_forgery_is_found_from_the_edit_on(store):
    # A forger who recomputes the edited row's hash still breaks the link to the next row.
    _tamper(store, "UPDATE audit_log SET actor = 'mallory', hash = 'f' || substr(hash, 2) WHERE seq = 4")
    result = audit.verify(store)
    assert not result.ok and result.first_bad_seq == 4


def test_cli_verify_exit_codes_and_show(store, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("database: ./smartplexd.db\n")
    cmd = [sys.executable, "-m", "smartplexd", "-c", str(cfg), "audit"]
    ok = subprocess.run([*cmd, "verify"], capture_output=True, text=True)
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    shown = json.loads(subprocess.run([*cmd, "show", "--json"], capture_output=True, text=True).stdout)
    assert [r["seq"] for r in shown] == [5, 4, 3, 2, 1]
    assert shown[0]["details"] == {"step": 5}
    _tamper(store, "UPDATE audit_log SET target = 'item/x' WHERE seq = 1")
    bad = subprocess.run([*cmd, "verify"], capture_output=True, text=True)
    assert bad.returncode == 1 and "BROKEN at row 1" in bad.stdout
