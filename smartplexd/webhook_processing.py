"""Acting on stored webhooks: what a received event means for the mirrored library.

The web layer only stores webhooks (``webhook_events``, status ``received``); :func:`process_pending` turns
them into work, in the daemon's webhook worker thread:

1. the payload is normalized into :class:`~smartplexd.model.WebhookEvent` values by the plugins'
   ``smartplexd_webhook`` hooks, or by the built-in Plex parser (:mod:`smartplexd.plex.webhook`) for a
   Plex sender;
2. each event names an item (Plex rating key, or tmdb/tvdb/imdb ids matched against ``media_items``):
   ``item.watched`` → incremental sync of that item, then a pending "leaving soon" is cancelled if it was
   played; ``item.added`` / ``item.deleted_upstream`` → incremental sync; then the item's facts are
   refreshed; ``test``/``unknown``/``request.created`` are stored and ignored;
3. the row ends ``processed``, ``ignored``, ``retry`` (with ``next_attempt_at``) or ``failed``.

A webhook that arrives while a full sync of its server runs is *deferred*, not dropped and not applied
concurrently: the row goes back to ``retry`` a little later (the full sync will have picked up the same
change, and the later incremental sync is idempotent). Processing is at-least-once: a crash between the
side effect and the status update re-runs an idempotent sync of one item.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smartplexd.model import PluginContext, WebhookEvent
from smartplexd.store import locks
from smartplexd.store.db import Store
from smartplexd.store.locks import LockHeld

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
DEFER_SECONDS = 5.0
"""How long a webhook waits when a full sync of its server is running."""
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
ACTIONABLE = ("item.watched", "item.added", "item.deleted_upstream")


class Deferred(Exception):
    """Not now (a full sync holds the server): try again after ``DEFER_SECONDS``; not an attempt."""


@dataclass(slots=True)
class ProcessStats:
    processed: int = 0
    ignored: int = 0
    deferred: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.processed + self.ignored + self.deferred + self.failed


def full_sync_running(store: Store, server: str) -> bool:
    """Whether a full sync of ``server`` holds its lock (with a lease that has not run out)."""
    from smartplexd.plex.sync import lock_name

    held = locks.holder(store, lock_name(server))
    return held is not None and held["expires_at"] > time.time()


def due_events(store: Store, now: float, limit: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT * FROM webhook_events WHERE status IN ('received', 'retry') "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
        (now, limit),
    )


def pending_count(store: Store) -> int:
    row = store.query_one("SELECT COUNT(*) AS n FROM webhook_events WHERE status IN ('received', 'retry')")
    return int(row["n"]) if row else 0


def process_pending(
    config: Any,
    store: Store,
    *,
    limit: int = 200,
    now: float | None = None,
    pm: Any = None,
    stop: Callable[[], bool] | None = None,
) -> ProcessStats:
    """Process up to ``limit`` due webhook events, oldest first. Never raises for one bad event.

    ``stop`` is asked before each event; when it returns true the rest stays stored for the next start.
    """
    now = time.time() if now is None else now
    stats = ProcessStats()
    for row in due_events(store, now, limit):
        if stop is not None and stop():
            break
        outcome, error, kinds = _process_row(config, store, row, pm)
        _finish(store, row, outcome, error, kinds)
        if outcome == "processed":
            stats.processed += 1
        elif outcome == "ignored":
            stats.ignored += 1
        elif outcome == "retry":
            stats.deferred += 1
        else:
            stats.failed += 1
        if error and outcome in ("failed", "retry"):
            stats.errors.append(f"webhook {row['id']} ({row['source']}): {error}")
    return stats


def _process_row(config: Any, store: Store, row: dict[str, Any], pm: Any) -> tuple[str, str | None, str]:
    """Returns ``(outcome, error, event kinds)``; outcome is processed | ignored | retry | failed."""
    try:
        payload = json.loads(row["payload"])
        events = normalize(config, row["source"], payload, store, pm)
        kinds = ",".join(sorted({e.type for e in events})) or "none"
        applied = 0
        for event in events:
            applied += apply_event(config, store, event, actor=f"webhook:{row['source']}")
        return ("processed" if applied else "ignored"), None, kinds
    except (Deferred, LockHeld) as exc:
        return "retry", f"deferred: {exc}", ""
    except Exception as exc:  # a plugin or the sync failed: counted as an attempt, retried with backoff
        attempts = row["attempts"] + 1
        return ("failed" if attempts >= MAX_ATTEMPTS else "retry"), f"{type(exc).__name__}: {exc}", ""


def _finish(store: Store, row: dict[str, Any], outcome: str, error: str | None, kinds: str) -> None:
    now = time.time()
    if outcome == "retry" and error and error.startswith("deferred"):
        store.execute(
            "UPDATE webhook_events SET status = 'retry', next_attempt_at = ?, error = ? WHERE id = ?",
            (now + DEFER_SECONDS, error, row["id"]),
        )
        return
    attempts = row["attempts"] + 1
    if outcome == "retry":
        delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempts - 1))
        store.execute(
            "UPDATE webhook_events SET status = 'retry', attempts = ?, next_attempt_at = ?, error = ? WHERE id = ?",
            (attempts, now + delay, error, row["id"]),
        )
        return
    store.execute(
        "UPDATE webhook_events SET status = ?, attempts = ?, processed_at = ?, next_attempt_at = NULL, error = ?, "
        "event_type = COALESCE(event_type, ?) WHERE id = ?",
        (outcome, attempts, now, error, kinds or None, row["id"]),
    )


def normalize(config: Any, source: str, payload: dict[str, Any], store: Store, pm: Any = None) -> list[WebhookEvent]:
    """The events in one stored payload: plugin parsers first, the built-in Plex parser for Plex senders.

    Plugins get the source's name (the ``webhooks`` key) and decide themselves whether it is theirs (by
    name or ``webhooks.<source>.sender``). The sender kind is ``sender`` (default: the source's name), so a
    second Plex server posting to ``/hooks/plex2`` with ``sender: plex`` is parsed as Plex.
    """
    from smartplexd.plugins import get_plugin_manager

    source_cfg = config.webhooks.get(source)
    sender = (source_cfg.sender if source_cfg is not None else None) or source
    pm = pm or get_plugin_manager()
    ctx = PluginContext(config=config, store=store, now=time.time(), actor=f"webhook:{source}")
    events: list[WebhookEvent] = []
    answered = False
    for result in pm.hook.smartplexd_webhook(source=source, payload=payload, ctx=ctx):
        if result is None:
            continue
        answered = True
        events.extend(result)
    if not answered and sender == "plex":
        from smartplexd.plex import webhook as plex_webhook

        events = plex_webhook.parse(payload)
    return events


def targets(config: Any, store: Store, event: WebhookEvent) -> list[tuple[Any, str]]:
    """The ``(PlexServerConfig, rating_key)`` pairs an event is about.

    By rating key: the server whose name equals the Plex server title in the event, else the only
    configured server, else the servers that already mirror that key. By tmdb/tvdb/imdb id: every mirrored
    movie or show with that id.
    """
    servers = list(config.plex.servers)
    if event.rating_key:
        named = [s for s in servers if event.server and s.name == event.server]
        if named:
            return [(named[0], event.rating_key)]
        if len(servers) == 1:
            return [(servers[0], event.rating_key)]
        holders = {
            r["server"] for r in store.query("SELECT server FROM media_items WHERE rating_key = ?", (event.rating_key,))
        }
        return [(s, event.rating_key) for s in servers if s.name in holders]
    clauses, params = [], []
    for column, value in (("tmdb_id", event.tmdb_id), ("tvdb_id", event.tvdb_id), ("imdb_id", event.imdb_id)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if not clauses:
        return []
    rows = store.query(
        f"SELECT server, rating_key FROM media_items WHERE type IN ('movie', 'show') AND deleted_at IS NULL "
        f"AND ({' OR '.join(clauses)})",
        params,
    )
    by_name = {s.name: s for s in servers}
    return [(by_name[r["server"]], r["rating_key"]) for r in rows if r["server"] in by_name]


def apply_event(config: Any, store: Store, event: WebhookEvent, actor: str) -> int:
    """Carry out one event; returns how many items were touched (0 = nothing to do)."""
    if event.type not in ACTIONABLE:
        return 0
    pairs = targets(config, store, event)
    if not pairs:
        log.info("webhook %s %s: no mirrored item matches; ignored", event.source, event.type)
        return 0
    from smartplexd.enrich import enrich_items
    from smartplexd.plex.sync import sync_item
    from smartplexd.rules.planner import cancel_leaving_soon_if_played

    for server, _ in pairs:
        if full_sync_running(store, server.name):
            raise Deferred(f"a full sync of {server.name} is running")
    item_ids: list[int] = []
    for server, rating_key in pairs:
        sync_item(config, store, server, rating_key)
        row = store.query_one(
            "SELECT id FROM media_items WHERE server = ? AND rating_key = ?", (server.name, rating_key)
        )
        if row is not None:
            item_ids.append(row["id"])
    if event.type == "item.watched" and item_ids:
        for item_id in item_ids:
            if cancel_leaving_soon_if_played(config, store, item_id, played_at=event.at):
                log.info("item %s was played: its leaving-soon grace period is cancelled (%s)", item_id, actor)
    if item_ids and event.type != "item.deleted_upstream":
        enrich_items(config, store, item_ids)
    return len(pairs)
