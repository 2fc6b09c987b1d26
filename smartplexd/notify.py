"""Notifications: tell a human when something worth knowing happened, through apprise URLs.

``notify(config, event)`` hands a :class:`~smartplexd.model.Notification` to every ``smartplexd_notify``
hook. The built-in one (this module, registered as a default plugin) delivers it to each
``notifications[].url`` whose ``events`` list contains ``event.event``; a third-party plugin can add
other channels through the same hook.

A notification is a courtesy, never a precondition: delivery failures (unreachable server, bad URL, a
plugin that raises) are logged and swallowed, so a deletion or a sync never waits on, or fails because
of, a notification.

Event names (the ``events`` a notification URL can subscribe to): ``leaving_soon``, ``deletion.done``,
``deletion.partial``, ``deletion.failed``, ``integration.down``, ``plex.unauthorized``, ``sync.refused``,
``rule.report`` (what a ``notify`` rule selected when the daemon evaluated it).
The builders below make the ones other modules send, so wording stays consistent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Iterable
from typing import Any

import apprise

from smartplexd.log import mask
from smartplexd.model import HealthResult, Notification, PluginContext
from smartplexd.plugins import hookimpl
from smartplexd.units import format_size

log = logging.getLogger(__name__)

_NOTIFY_TYPES = {
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


def notify(config: Any, event: Notification, *, store: Any = None, pm: Any = None) -> None:
    """Deliver ``event`` through every ``smartplexd_notify`` hook. Never raises; failures are logged."""
    from smartplexd.plugins import get_plugin_manager

    try:
        pm = pm or get_plugin_manager()
        ctx = PluginContext(config=config, store=store, now=time.time())
        impls = pm.hook.smartplexd_notify.get_hookimpls()
    except Exception as exc:  # a broken plugin set-up must not stop the caller either
        log.warning("notification %s not sent: %s", event.event, mask(str(exc)))
        return
    for impl in impls:
        try:
            result = impl.function(event=event, ctx=ctx)
            if inspect.isawaitable(result):
                _run_awaitable(result)
        except Exception as exc:
            log.warning("notification %s: plugin %s failed: %s", event.event, impl.plugin_name, mask(str(exc)))


def _run_awaitable(result: Any) -> None:
    """Run an async hook's coroutine to completion from synchronous code (its own short-lived loop)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(result)
    finally:
        loop.close()


@hookimpl
def smartplexd_notify(event: Notification, ctx: PluginContext) -> None:
    """The built-in channel: every apprise URL in ``notifications`` subscribed to ``event.event``."""
    deliver(ctx.config, event)


def deliver(config: Any, event: Notification) -> int:
    """Send ``event`` to the configured apprise URLs that subscribe to it; returns how many accepted it.

    Each URL is tried on its own, so one broken channel does not silence the others.
    """
    delivered = 0
    for index, target in enumerate(getattr(config, "notifications", None) or []):
        if event.event not in target.events:
            continue
        channel = apprise.Apprise()
        # The URL carries credentials: it is revealed only to apprise, never logged (index identifies it).
        if not channel.add(target.url.get_secret_value()):
            log.warning("notifications[%d]: apprise does not understand this URL; %s not sent", index, event.event)
            continue
        try:
            ok = bool(
                channel.notify(
                    body=event.body,
                    title=event.title,
                    notify_type=_NOTIFY_TYPES.get(event.severity, apprise.NotifyType.INFO),
                )
            )
        except Exception as exc:
            log.warning("notifications[%d]: %s not sent: %s", index, event.event, mask(str(exc)))
            continue
        if ok:
            delivered += 1
        else:
            log.warning("notifications[%d]: %s was not accepted by the receiver", index, event.event)
    return delivered


# --- the notifications other modules send ---------------------------------------------------------------


def leaving_soon_digest(items: Iterable[dict[str, Any]]) -> Notification:
    """``leaving_soon``: items that entered their grace period. Each dict: title, due_at (epoch), size_bytes, rule."""
    rows = list(items)
    lines = []
    for item in rows:
        due = f"on {time.strftime('%Y-%m-%d', time.localtime(item['due_at']))}" if item.get("due_at") else "soon"
        size = format_size(item.get("size_bytes") or 0)
        rule = f" [{item['rule']}]" if item.get("rule") else ""
        lines.append(f"- {item['title']} ({size}) leaves {due}{rule}")
    total = sum(item.get("size_bytes") or 0 for item in rows)
    return Notification(
        event="leaving_soon",
        title=f"Leaving soon: {len(rows)} item{'s' if len(rows) != 1 else ''} ({format_size(total)})",
        body="Play an item or label it to keep it.\n" + "\n".join(lines),
        severity="info",
        details={"count": len(rows), "bytes": total},
    )


def integration_down(result: HealthResult) -> Notification:
    """``integration.down``: a health check failed (deletions that need this integration are skipped)."""
    return Notification(
        event="integration.down",
        title=f"{result.name} is {result.status}",
        body=f"{result.plugin} instance {result.name}: {result.error or result.status}. "
        "Items that depend on it are skipped until it is healthy again.",
        severity="warning",
        details={"name": result.name, "plugin": result.plugin, "status": str(result.status)},
    )


def plex_unauthorized(server: str, detail: str = "") -> Notification:
    """``plex.unauthorized``: Plex rejected the token; syncs and deletions on that server stop."""
    from smartplexd.errors import PlexUnauthorized

    return Notification(
        event="plex.unauthorized",
        title=f"Plex server {server} rejected the token",
        body=str(PlexUnauthorized(server, detail)) + " Syncs and deletions on this server are stopped until then.",
        severity="failure",
        details={"server": server},
    )


def sync_refused(server: str, message: str) -> Notification:
    """``sync.refused``: a sync would have removed too much of a library (Plex offline, disk unmounted)."""
    return Notification(
        event="sync.refused",
        title=f"Sync of {server} refused: the library shrank too much",
        body=f"{message}. Nothing was removed from the mirror. If the items really are gone, run "
        f"`smartplexd sync --server {server} --allow-shrink`; otherwise check Plex's disks and mounts.",
        severity="warning",
        details={"server": server},
    )


def rule_report(rule: str, description: str, entries: Iterable[Any]) -> Notification:
    """``rule.report``: what a ``notify`` rule selected (it never deletes anything)."""
    rows = [e for e in entries if e.status == "selected"]
    lines = [f"- {e.title} ({format_size(e.size)})" for e in rows[:50]]
    if len(rows) > 50:
        lines.append(f"... and {len(rows) - 50} more (smartplexd plan --rule {rule})")
    total = sum(e.size for e in rows)
    return Notification(
        event="rule.report",
        title=f"{rule}: {len(rows)} item{'s' if len(rows) != 1 else ''} ({format_size(total)})",
        body=(description + "\n" if description else "") + "\n".join(lines),
        details={"rule": rule, "count": len(rows), "bytes": total},
    )


# --- events on the bus → notifications ------------------------------------------------------------------


class BusNotifier:
    """Turns bus events from the daemon's work into notifications, delivered on a worker thread.

    Subscribed by the daemon: ``health.changed`` to down/unauthorized → ``integration.down``;
    ``plex.unauthorized`` → ``plex.unauthorized`` (at most once an hour per server, as syncs retry);
    ``sync.refused`` → ``sync.refused``; ``leaving_soon`` (a plan started grace periods) → the digest of the
    items that entered. Deletion results are notified by the executor itself. Publishers never wait: events
    are queued and a single thread delivers them.
    """

    REPEAT_AFTER = 3600.0

    def __init__(self, config_getter: Any, db_path: str | None = None) -> None:
        import queue
        import threading

        self._config = config_getter
        self._db_path = db_path
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1000)
        self._last_sent: dict[tuple[str, str], float] = {}
        self._thread = threading.Thread(target=self._work, name="notifier", daemon=True)
        self._thread.start()

    def __call__(self, event: Any) -> None:
        if event.type in ("health.changed", "plex.unauthorized", "sync.refused", "leaving_soon"):
            try:
                self._queue.put_nowait(event)
            except Exception:
                log.warning("notification queue full; %s dropped", event.type)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                note = self._translate(event)
                if note is not None:
                    notify(self._config(), note)
            except Exception as exc:  # a notification is a courtesy: log and go on
                log.warning("notification for %s failed: %s", event.type, mask(str(exc)))

    def _once_per_hour(self, kind: str, key: str) -> bool:
        now = time.monotonic()
        last = self._last_sent.get((kind, key))
        if last is not None and now - last < self.REPEAT_AFTER:
            return False
        self._last_sent[(kind, key)] = now
        return True

    def _translate(self, event: Any) -> Notification | None:
        from smartplexd.model import Health

        data = event.data
        if event.type == "health.changed":
            if data.get("plugin") == "plex" or data.get("status") == Health.OK:
                return None  # Plex's token problems arrive as plex.unauthorized; recoveries are not news
            result = HealthResult(
                name=data["name"], plugin=data["plugin"], status=Health(data["status"]), error=data.get("error")
            )
            return integration_down(result)
        if event.type == "plex.unauthorized":
            server = data.get("server", "?")
            return plex_unauthorized(server) if self._once_per_hour("plex.unauthorized", server) else None
        if event.type == "sync.refused":
            return sync_refused(data.get("server", "?"), data.get("message") or data.get("note") or "sweep refused")
        if event.type == "leaving_soon" and self._db_path:
            return self._digest(int(data["plan_id"]))
        return None

    def _digest(self, plan_id: int) -> Notification | None:
        from smartplexd.store import open_store

        store = open_store(self._db_path)
        try:
            rows = store.query(
                "SELECT m.title, m.size_bytes, l.due_at, l.rule FROM leaving_soon l "
                "JOIN media_items m ON m.id = l.item_id WHERE l.plan_id = ? AND l.status = 'pending' "
                "ORDER BY l.due_at",
                (plan_id,),
            )
        finally:
            store.close()
        return leaving_soon_digest(rows) if rows else None
