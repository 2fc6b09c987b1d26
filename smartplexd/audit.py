"""The tamper-evident audit log: every action, who did it, hash-chained.

Each row's ``hash`` is sha256 over the canonical JSON of its fields plus the previous row's hash, so
editing or deleting any row breaks the chain from that row on; :func:`verify` finds the first break.
Rows are appended inside the caller's transaction when there is one, so an action and its audit entry
commit together. SQLite triggers reject UPDATE and DELETE on the table.

A chain alone cannot show that its *newest* rows were removed, so the head (last seq and hash) is also
written to a small file beside the database (``<db>.audit-head``); :func:`verify` compares the two.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smartplexd.store.db import Store

GENESIS = "0" * 64


def _canonical(seq: int, ts: str, actor: str, action: str, target: str | None, details: str, prev: str) -> bytes:
    body = {"seq": seq, "ts": ts, "actor": actor, "action": action, "target": target, "details": details}
    return (json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + prev).encode()


def record(
    store: Store, actor: str, action: str, target: str | None = None, details: dict[str, Any] | None = None
) -> int:
    """Append one entry; returns its sequence number. ``actor`` is ``cli:<user>``, ``api:<token>``, ``scheduler``..."""
    details_json = json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str)
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    with store.transaction():
        last = store.query_one("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = (last["seq"] + 1) if last else 1
        prev = last["hash"] if last else GENESIS
        digest = hashlib.sha256(_canonical(seq, ts, actor, action, target, details_json, prev)).hexdigest()
        store.execute(
            "INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, ts, actor, action, target, details_json, prev, digest),
        )
        # Inside the write lock, so concurrent writers cannot leave an older head in the file.
        _write_head(store, seq, digest)
    return seq


def _head_path(store: Store) -> str | None:
    return None if store.path == ":memory:" else store.path + ".audit-head"


def _write_head(store: Store, seq: int, digest: str) -> None:
    path = _head_path(store)
    if path is None:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{seq} {digest}\n")
    os.replace(tmp, path)


def _read_head(store: Store) -> tuple[int, str] | None:
    path = _head_path(store)
    if path is None or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        seq, digest = fh.read().split()
    return int(seq), digest


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    rows: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(store: Store) -> VerifyResult:
    """Walk the chain; report the first row whose hash, link or sequence is wrong."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in store.conn.execute("SELECT * FROM audit_log ORDER BY seq"):
        count += 1
        seq = row["seq"]
        if seq != expected_seq:
            return VerifyResult(False, count, expected_seq, f"row {expected_seq} is missing (deleted?)")
        if row["prev_hash"] != prev:
            return VerifyResult(
                False, count, seq, "prev_hash does not match the previous row (row removed or reordered)"
            )
        digest = hashlib.sha256(
            _canonical(seq, row["ts"], row["actor"], row["action"], row["target"], row["details"], prev)
        ).hexdigest()
        if digest != row["hash"]:
            return VerifyResult(False, count, seq, "hash does not match the row's contents (row edited)")
        prev = row["hash"]
        expected_seq += 1
    head = _read_head(store)
    if head is not None and head != (expected_seq - 1, prev if count else GENESIS):
        if head[0] >= expected_seq:
            return VerifyResult(False, count, expected_seq, f"rows {expected_seq}..{head[0]} are missing (deleted?)")
        return VerifyResult(False, count, head[0], "the newest row does not match the recorded head")
    return VerifyResult(True, count)


def entries(store: Store, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
    """The newest entries first (``audit show``)."""
    sql = "SELECT seq, ts, actor, action, target, details FROM audit_log"
    params: list[Any] = []
    if action:
        sql += " WHERE action LIKE ?"
        params.append(action.replace("*", "%"))
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(limit)
    rows = store.query(sql, params)
    for r in rows:
        r["details"] = json.loads(r["details"])
    return rows
