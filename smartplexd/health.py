"""Integration health: run every plugin's ``smartplexd_health`` hook, store and announce the results.

Each :class:`~smartplexd.model.HealthResult` becomes (or replaces) the ``integration_health`` row named
after its instance (``radarr4k``). When an instance's status differs from the stored one (including the
first check), ``health.changed`` is published on the event bus with ``name``, ``plugin``, ``status``,
``previous`` (None the first time) and ``error``. ``details`` keeps what a plugin adds, e.g. the *arrs'
``{"disk": [{"path", "free", "total"}], "warnings": [...]}`` that storage-pressure rules read.

A plugin that raises is recorded as one ``error`` row named after the plugin, never as a crash of the
caller. Both entry points are synchronous-or-async twins; the scheduler and ``smartplexd status`` use them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import Any

import pluggy

from smartplexd import events
from smartplexd.model import Health, HealthResult, PluginContext
from smartplexd.plugins import get_plugin_manager

log = logging.getLogger(__name__)


def check_health(
    config: Any, store: Any, *, pm: pluggy.PluginManager | None = None, bus: events.EventBus = events.bus
) -> list[HealthResult]:
    """Check every configured instance now; store the results and publish changes."""
    return asyncio.run(check_health_async(config, store, pm=pm, bus=bus))


async def check_health_async(
    config: Any, store: Any, *, pm: pluggy.PluginManager | None = None, bus: events.EventBus = events.bus
) -> list[HealthResult]:
    pm = pm or get_plugin_manager()
    ctx = PluginContext(config=config, store=store, now=time.time())
    results = await _call_plugins(pm, ctx)
    record(store, results, bus=bus)
    return results


async def _call_plugins(pm: pluggy.PluginManager, ctx: PluginContext) -> list[HealthResult]:
    async def one(impl: Any) -> list[HealthResult]:
        try:
            result = impl.function(*[{"ctx": ctx}[name] for name in impl.argnames])
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.exception("health: plugin %s failed", impl.plugin_name)
            return [HealthResult(impl.plugin_name, impl.plugin_name, Health.ERROR, error=f"plugin error: {exc!r}")]
        return list(result or [])

    out: list[HealthResult] = []
    for results in await asyncio.gather(*(one(i) for i in pm.hook.smartplexd_health.get_hookimpls())):
        out.extend(results)
    return out


def record(store: Any, results: list[HealthResult], *, bus: events.EventBus = events.bus) -> list[HealthResult]:
    """Upsert ``results`` into ``integration_health``; publish ``health.changed`` for each status change.

    Returns the results whose status changed. Other health sources (the Plex client) may call this too.
    """
    now = time.time()
    changed = []
    with store.transaction() as conn:
        for r in results:
            row = conn.execute("SELECT status FROM integration_health WHERE name = ?", (r.name,)).fetchone()
            previous = row[0] if row is not None else None
            conn.execute(
                "INSERT INTO integration_health (name, plugin, status, version, latency_ms, checked_at, error, details)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET plugin = excluded.plugin,"
                " status = excluded.status, version = excluded.version, latency_ms = excluded.latency_ms,"
                " checked_at = excluded.checked_at, error = excluded.error, details = excluded.details",
                (
                    r.name,
                    r.plugin,
                    str(r.status),
                    r.version,
                    r.latency_ms,
                    now,
                    r.error,
                    json.dumps(r.details, default=str),
                ),
            )
            if previous != str(r.status):
                changed.append((r, previous))
    for r, previous in changed:
        bus.publish(
            "health.changed", name=r.name, plugin=r.plugin, status=str(r.status), previous=previous, error=r.error
        )
    return [r for r, _ in changed]


def stored(store: Any) -> list[dict[str, Any]]:
    """Every ``integration_health`` row, ``details`` decoded, by name."""
    rows = store.query("SELECT * FROM integration_health ORDER BY name")
    for row in rows:
        row["details"] = json.loads(row["details"] or "{}")
    return rows
