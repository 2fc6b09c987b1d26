"""How the built-in integrations find a Plex item in a service's catalogue.

Movies match by tmdb id, then imdb id; shows by tvdb id, then tmdb, then imdb. Seasons and episodes carry
no show GUID of their own in Plex (an episode's tvdb id is the *episode's*), so they match through their
show: the season's parent / the episode's grandparent rating key, looked up in the same batch or, for
shows outside the batch, in ``media_items`` (once per run, kept in ``ctx.cache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smartplexd.model import MediaItem, PluginContext


@dataclass(frozen=True, slots=True)
class Guids:
    tmdb: int | None
    tvdb: int | None
    imdb: str | None


_SHOWS_KEY = "matching:shows"


def show_guids(ctx: PluginContext) -> dict[tuple[str, str], Guids]:
    """``{(server, show rating key): Guids}`` of every show in the store (cached for the run)."""
    cached = ctx.cache.get(_SHOWS_KEY)
    if cached is None:
        cached = {}
        if ctx.store is not None:
            rows = ctx.store.execute(
                "SELECT server, rating_key, tmdb_id, tvdb_id, imdb_id FROM media_items "
                "WHERE type = 'show' AND removed_at IS NULL AND deleted_at IS NULL"
            )
            for server, key, tmdb, tvdb, imdb in rows:
                cached[(server, key)] = Guids(tmdb, tvdb, imdb)
        ctx.cache[_SHOWS_KEY] = cached
    return cached


def show_key(item: MediaItem) -> str | None:
    """The rating key of the show a show/season/episode belongs to (None for movies)."""
    if item.type == "show":
        return item.rating_key
    if item.type == "season":
        return item.parent_rating_key
    if item.type == "episode":
        return item.grandparent_rating_key
    return None


def guids_for(item: MediaItem, ctx: PluginContext, batch_shows: dict[tuple[str, str], Guids]) -> Guids | None:
    """The GUIDs to match ``item`` with: its own for movies and shows, its show's for seasons/episodes."""
    if item.type in ("movie", "show"):
        return Guids(item.tmdb_id, item.tvdb_id, item.imdb_id)
    key = show_key(item)
    if key is None:
        return None
    found = batch_shows.get((item.server, key))
    if found is None:
        found = show_guids(ctx).get((item.server, key))
    return found


def batch_show_guids(items: list[MediaItem]) -> dict[tuple[str, str], Guids]:
    return {(i.server, i.rating_key): Guids(i.tmdb_id, i.tvdb_id, i.imdb_id) for i in items if i.type == "show"}


def epoch(value: Any) -> int | None:
    """``2021-03-07T18:22:41Z`` (or with milliseconds) → epoch seconds; None for missing or year-1 dates."""
    if not value or not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def webhook_source_is(source: str, plugin: str, ctx: PluginContext) -> bool:
    """True when ``/hooks/{source}`` carries ``plugin``'s payloads: by name or ``webhooks.<source>.sender``."""
    if source == plugin:
        return True
    webhooks = getattr(ctx.config, "webhooks", None) or {}
    configured = webhooks.get(source)
    return configured is not None and getattr(configured, "sender", None) == plugin


def int_or_none(value: Any) -> int | None:
    """Webhook templates render every value as a string; ``""`` and unfilled ``{placeholders}`` are None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value or None
    text = str(value).strip()
    return int(text) if text.isdigit() and int(text) else None


def str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text or (text.startswith("{") and text.endswith("}")):
        return None
    return text
