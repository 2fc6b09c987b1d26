"""Cross-process locks in SQLite: one sync per server, one deletion executor.

A lock is a row in ``locks``. It is taken inside a write transaction, so two processes can never both
hold it. A holder that died (kill -9, container restart) is detected by its expired lease or, on the same
host, by its pid no longer running; such a lock is taken over and the takeover is reported.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from smartplexd.store.db import Store

DEFAULT_TTL = 300.0


class LockHeld(Exception):
    """Someone else holds the lock. ``details`` says who (e.g. the running sync's id)."""

    def __init__(self, name: str, owner: str, since: float, details: dict[str, Any]) -> None:
        self.name, self.owner, self.since, self.details = name, owner, since, details
        running = f" ({', '.join(f'{k}={v}' for k, v in details.items())})" if details else ""
        super().__init__(f"{name} is already running{running}, held by {owner} since {time.ctime(since)}")


@dataclass
class Lock:
    store: Store
    name: str
    owner: str
    ttl: float
    stolen_from: str | None = None

    def refresh(self) -> None:
        """Extend the lease; long work calls this now and then."""
        self.store.execute(
            "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ?",
            (time.time() + self.ttl, self.name, self.owner),
        )

    def update_details(self, details: dict[str, Any]) -> None:
        self.store.execute(
            "UPDATE locks SET details = ? WHERE name = ? AND owner = ?",
            (json.dumps(details), self.name, self.owner),
        )

    def release(self) -> None:
        self.store.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (self.name, self.owner))

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # cannot tell; rely on the lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(
    store: Store,
    name: str,
    owner: str | None = None,
    ttl: float = DEFAULT_TTL,
    details: dict[str, Any] | None = None,
) -> Lock:
    """Take lock ``name`` or raise :class:`LockHeld`. Re-entrant for the same owner."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    now = time.time()
    stolen_from = None
    with store.transaction():
        row = store.query_one("SELECT * FROM locks WHERE name = ?", (name,))
        if row is not None and row["owner"] != owner:
            if row["expires_at"] > now and _alive(row["pid"], row["host"]):
                raise LockHeld(name, row["owner"], row["acquired_at"], json.loads(row["details"]))
            stolen_from = row["owner"]
        store.execute(
            "INSERT OR REPLACE INTO locks (name, owner, pid, host, acquired_at, expires_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (name, owner, os.getpid(), socket.gethostname(), now, now + ttl, json.dumps(details or {})),
        )
    return Lock(store, name, owner, ttl, stolen_from)


def holder(store: Store, name: str) -> dict[str, Any] | None:
    """The current holder of ``name`` (or None), for status displays."""
    row = store.query_one("SELECT * FROM locks WHERE name = ?", (name,))
    if row is None:
        return None
    row["details"] = json.loads(row["details"])
    return row
