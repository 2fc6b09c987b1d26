"""Enrichment: ask every integration plugin for facts about the mirrored items and store them.

``enrich_all`` reads every live item (``removed_at`` and ``deleted_at`` NULL) in batches of ``batch_size``,
calls each plugin's ``smartplexd_enrich`` hook with the batch, and writes one ``item_facts`` row per item
and plugin:

- ``known``: the plugin returned facts for the item;
- ``absent``: the plugin answered completely and does not hold the item (facts ``{}``);
- ``unknown``: the plugin failed (``error`` says why). The previous facts and ``fetched_at`` stay in the
  row for display, but the status says they cannot be trusted; rules treat unknown as "don't select".

One :class:`~smartplexd.model.PluginContext` (and so one ``ctx.cache``) lives for the whole run, so each
plugin fetches its catalogue once per run, not once per batch. Plugins of one batch run concurrently.
Progress is published on the event bus: ``enrich.started``, ``enrich.progress`` (after each batch) and
``enrich.finished`` (with the per-plugin summaries).

``enrich_items`` does the same for a few items (a webhook said they changed). Both are synchronous and
run their own event loop; code already inside a loop awaits :func:`enrich_async`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pluggy

from smartplexd import events
from smartplexd.model import EnrichResult, MediaItem, PluginContext
from smartplexd.plugins import get_plugin_manager

log = logging.getLogger(__name__)

ITEM_COLUMNS = (
    "id, server, section_id, section_title, rating_key, type, title, year, tmdb_id, tvdb_id, imdb_id, "
    "parent_rating_key, grandparent_rating_key, season_index, episode_index, added_at, last_viewed_at, "
    "view_count, size_bytes, files, labels, collections"
)
_LIVE = "removed_at IS NULL AND deleted_at IS NULL"

_UPSERT_KNOWN = (
    "INSERT INTO item_facts (item_id, plugin, status, facts, fetched_at, error) VALUES (?, ?, ?, ?, ?, NULL) "
    "ON CONFLICT (item_id, plugin) DO UPDATE SET status = excluded.status, facts = excluded.facts, "
    "fetched_at = excluded.fetched_at, error = NULL"
)
# An unknown keeps the last facts and their fetched_at (what we knew, and when); only status and error change.
_UPSERT_UNKNOWN = (
    "INSERT INTO item_facts (item_id, plugin, status, facts, fetched_at, error) "
    "VALUES (?, ?, 'unknown', '{}', ?, ?) "
    "ON CONFLICT (item_id, plugin) DO UPDATE SET status = 'unknown', error = excluded.error"
)


@dataclass(slots=True)
class EnrichSummary:
    """What one plugin contributed to a run."""

    plugin: str
    known: int = 0
    absent: int = 0
    unknown: int = 0
    error: str | None = None
    seconds: float = 0.0

    @property
    def items(self) -> int:
        return self.known + self.absent + self.unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"items": self.items}


def enrich_all(
    config: Any,
    store: Any,
    *,
    pm: pluggy.PluginManager | None = None,
    bus: events.EventBus = events.bus,
    batch_size: int = 2000,
) -> dict[str, EnrichSummary]:
    """Enrich every live item; returns ``{plugin: summary}`` (plugins not configured are left out)."""
    return asyncio.run(enrich_async(config, store, pm=pm, bus=bus, batch_size=batch_size))


def enrich_items(
    config: Any,
    store: Any,
    item_ids: Iterable[int],
    *,
    pm: pluggy.PluginManager | None = None,
    bus: events.EventBus = events.bus,
) -> dict[str, EnrichSummary]:
    """Enrich just these items (e.g. after a webhook); removed or deleted ids are skipped."""
    return asyncio.run(enrich_async(config, store, item_ids=list(item_ids), pm=pm, bus=bus))


async def enrich_async(
    config: Any,
    store: Any,
    *,
    item_ids: list[int] | None = None,
    pm: pluggy.PluginManager | None = None,
    bus: events.EventBus = events.bus,
    batch_size: int = 2000,
) -> dict[str, EnrichSummary]:
    """The enrichment run itself (``item_ids`` None = every live item). Uses ``store`` in this thread."""
    pm = pm or get_plugin_manager()
    ctx = PluginContext(config=config, store=store, now=time.time())
    total = _count(store, item_ids)
    summaries: dict[str, EnrichSummary] = {}
    bus.publish("enrich.started", total=total)
    done = 0
    started = time.perf_counter()
    for batch in _batches(store, item_ids, batch_size):
        results = await _call_plugins(pm, batch, ctx)
        _write(store, batch, results, summaries, time.time())
        done += len(batch)
        bus.publish(
            "enrich.progress",
            done=done,
            total=total,
            plugins={name: s.to_dict() for name, s in summaries.items()},
        )
    elapsed = time.perf_counter() - started
    for summary in summaries.values():
        summary.seconds = round(elapsed, 3)
        if summary.unknown:
            log.warning("enrich: %s facts unknown for %d items: %s", summary.plugin, summary.unknown, summary.error)
    bus.publish("enrich.finished", total=total, plugins={name: s.to_dict() for name, s in summaries.items()})
    return summaries


# --------------------------------------------------------------------------------------------- reading


def _count(store: Any, item_ids: list[int] | None) -> int:
    if item_ids is None:
        return int(store.query_one(f"SELECT COUNT(*) AS n FROM media_items WHERE {_LIVE}")["n"])
    return len(set(item_ids))


def _batches(store: Any, item_ids: list[int] | None, batch_size: int) -> Iterator[list[MediaItem]]:
    """Live items in id order, ``batch_size`` at a time (keyset paging: no cursor stays open across
    the writes between batches)."""
    if item_ids is not None:
        ids = sorted(set(item_ids))
        # SQLite's default limit on host parameters is 999 on old builds; stay under it.
        step = min(batch_size, 900)
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            marks = ",".join("?" * len(chunk))
            rows = store.query(f"SELECT {ITEM_COLUMNS} FROM media_items WHERE id IN ({marks}) AND {_LIVE}", chunk)
            if rows:
                yield [_item(r) for r in rows]
        return
    last = -1
    while True:
        rows = store.query(
            f"SELECT {ITEM_COLUMNS} FROM media_items WHERE id > ? AND {_LIVE} ORDER BY id LIMIT ?", (last, batch_size)
        )
        if not rows:
            return
        last = rows[-1]["id"]
        yield [_item(r) for r in rows]


def _item(row: dict[str, Any]) -> MediaItem:
    # MediaItem.from_row, minus three json.loads per row for the usual empty lists (100,000 rows a run).
    for key in ("files", "labels", "collections"):
        value = row[key]
        row[key] = [] if value == "[]" or not value else json.loads(value)
    return MediaItem(**row)


# --------------------------------------------------------------------------------------------- plugins


async def _call_plugins(
    pm: pluggy.PluginManager, batch: list[MediaItem], ctx: PluginContext
) -> list[tuple[str, EnrichResult]]:
    """Every plugin's result for the batch, run concurrently. A plugin that raises (a bug, not a service
    failure: those come back as ``complete=False``) makes its facts unknown, with the exception as error."""
    impls = pm.hook.smartplexd_enrich.get_hookimpls()
    kwargs = {"items": batch, "ctx": ctx}

    async def one(impl: Any) -> tuple[str, EnrichResult | None]:
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            log.exception("enrich: plugin %s failed", impl.plugin_name)
            return impl.plugin_name, EnrichResult(impl.plugin_name, complete=False, error=f"plugin error: {exc!r}")
        return impl.plugin_name, result

    out = []
    for name, result in await asyncio.gather(*(one(i) for i in impls)):
        if result is not None:
            out.append((result.plugin or name, result))
    return out


# --------------------------------------------------------------------------------------------- writing


def _write(
    store: Any,
    batch: list[MediaItem],
    results: list[tuple[str, EnrichResult]],
    summaries: dict[str, EnrichSummary],
    now: float,
) -> None:
    encode = json.JSONEncoder(separators=(",", ":"), default=str).encode
    # Plugins may hand the same facts dict to many items (every episode of a season): encode it once.
    # The memo holds the dicts themselves, so an id cannot be reused by another dict meanwhile.
    encoded: dict[int, tuple[dict[str, Any], str]] = {}

    def dumps(facts: dict[str, Any]) -> str:
        hit = encoded.get(id(facts))
        if hit is None:
            hit = encoded[id(facts)] = (facts, encode(facts))
        return hit[1]

    for plugin, result in results:
        summary = summaries.setdefault(plugin, EnrichSummary(plugin))
        known: list[tuple[Any, ...]] = []
        unknown: list[tuple[Any, ...]] = []
        for item in batch:
            facts = result.facts.get(item.id)
            if facts is not None:
                known.append((item.id, plugin, "known", dumps(facts), now))
            elif result.complete:
                known.append((item.id, plugin, "absent", "{}", now))
            else:
                unknown.append((item.id, plugin, now, result.error or "unknown error"))
        n_known = sum(1 for row in known if row[2] == "known")
        summary.known += n_known
        summary.absent += len(known) - n_known
        summary.unknown += len(unknown)
        if result.error:
            summary.error = result.error
        with store.transaction() as conn:
            if known:
                conn.executemany(_UPSERT_KNOWN, known)
            if unknown:
                conn.executemany(_UPSERT_UNKNOWN, unknown)
