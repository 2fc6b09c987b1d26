"""Notifications: tell a human when something worth knowing happened, through apprise URLs.

``notify(config, event)`` hands a :class:`~smartplexd.model.Notification` to every ``smartplexd_notify``
hook. The built-in one (this module, registered as a default plugin) delivers it to each
``notifications[].url`` whose ``events`` list contains ``event.event``; a third-party plugin can add
other channels through the same hook.

A notification is a courtesy, never a precondition: delivery failures (unreachable server, bad URL, a
plugin that raises) are logged and swallowed, so a deletion or a sync never waits on, or fails because
of, a notification.

Event names (the ``events`` a notification URL can subscribe to): ``leaving_soon``, ``deletion.done``,
``deletion.partial``, ``deletion.failed``, ``integration.down``, ``plex.unauthorized``, ``sync.refused``.
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
