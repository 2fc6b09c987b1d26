"""Seed a store with a library shaped like sync and enrichment output, without running any server.

The rules engine's tests and benchmark need a known library: :func:`seed_universe` writes a
:class:`~smartplexd.demo.universe.Universe` into ``media_items`` the way a Plex sync mirrors it (movies,
shows, seasons, episodes; the token owner's counted plays; shows without a size of their own) and, with
``facts=True``, ``item_facts`` rows the way the integration plugins report them (known for items a service
holds, absent for the rest; seasons and episodes get Tautulli rows of their own and read the other
services' rows from their show). :class:`SeedFacts` is a plugin declaring those facts (and config sections for
the four services) so a test can build a registry that does not depend on which plugins are installed.
"""

from __future__ import annotations

import json
from typing import Any

from smartplexd.config import ServiceConfig
from smartplexd.demo.plex import counted_plays
from smartplexd.demo.universe import Movie, Show, Universe
from smartplexd.model import FactDef
from smartplexd.plugins import hookimpl

MOVIES_SECTION = ("1", "Movies")
SHOWS_SECTION = ("2", "TV Shows")
REQUEST_STATUS = {1: "pending", 2: "approved", 3: "declined", 4: "failed", 5: "completed"}

SEED_FACTS = [
    FactDef("radarr.monitored", "bool", "Radarr monitors the movie."),
    FactDef("radarr.size_on_disk", "size", "Bytes of the movie's files in Radarr.", "bytes"),
    FactDef("radarr.tags", "list", "Radarr tags."),
    FactDef("radarr.instance", "str", "Radarr instance holding the movie."),
    FactDef("sonarr.status", "str", "Series status in Sonarr: continuing or ended."),
    FactDef("sonarr.monitored", "bool", "Sonarr monitors the series."),
    FactDef("overseerr.request_status", "str", "Status of the Overseerr request."),
    FactDef("overseerr.requested_by", "str", "Who requested it in Overseerr."),
    FactDef("tautulli.play_count", "int", "Plays by any user in Tautulli."),
    FactDef("tautulli.last_played", "datetime", "Last play by any user in Tautulli.", "epoch seconds"),
    FactDef("tautulli.users_watched", "int", "Distinct users who played it."),
    FactDef("tautulli.watch_time", "duration", "Total time played.", "seconds"),
]


class SeedFacts:
    """A plugin object declaring :data:`SEED_FACTS` and the services' config sections."""

    @hookimpl
    def smartplexd_facts(self) -> list[FactDef]:
        return list(SEED_FACTS)


class _Section:
    def __init__(self, name: str, many: bool) -> None:
        self.name, self.many = name, many

    @hookimpl
    def smartplexd_config_model(self) -> tuple[str, Any]:
        return (self.name, list[ServiceConfig] if self.many else ServiceConfig)


def seed_plugins() -> list[Any]:
    """Plugins to register on a fresh PluginManager: the seed facts and sections for the four services."""
    return [SeedFacts(), _Section("radarr", True), _Section("sonarr", True), _Section("overseerr", False),
            _Section("tautulli", False)]  # fmt: skip


def _plays(views: list[Any]) -> tuple[int, int | None]:
    plays = counted_plays(views)
    return len(plays), max((v.at for v in plays), default=None)


def seed_universe(
    store: Any,
    universe: Universe,
    *,
    server: str = "home",
    facts: bool = True,
    fetched_at: float | None = None,
    sources: tuple[str, ...] = ("radarr", "sonarr", "overseerr", "tautulli"),
) -> dict[str, int]:
    """Write ``universe`` into ``media_items`` (and ``item_facts``); return ``{rating_key: item id}`` as str keys."""
    fetched = float(universe.now if fetched_at is None else fetched_at)
    items: list[dict[str, Any]] = []
    fact_rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        base = {
            "server": server, "year": None, "guid": None, "tmdb_id": None, "tvdb_id": None, "imdb_id": None,
            "parent_rating_key": None, "grandparent_rating_key": None, "season_index": None, "episode_index": None,
            "updated_at": row.get("added_at"), "last_viewed_at": None, "view_count": 0, "size_bytes": 0,
            "files": "[]", "labels": "[]", "collections": "[]", "sources": "{}", "seen_in_sync": 1,
        }  # fmt: skip
        base.update(row)
        items.append(base)

    def enrich(rating_key: int, plugin: str, values: dict[str, Any] | None) -> None:
        if not facts or plugin not in sources:
            return
        fact_rows.append(
            {
                "rating_key": str(rating_key),
                "plugin": plugin,
                "status": "known" if values is not None else "absent",
                "facts": json.dumps(values or {}),
                "fetched_at": fetched,
            }
        )

    def enrich_common(obj: Movie | Show, rating_key: int, views: list[Any]) -> None:
        req = obj.request
        enrich(
            rating_key,
            "overseerr",
            {"overseerr.request_status": REQUEST_STATUS[req.status], "overseerr.requested_by": req.user}
            if req
            else None,
        )
        if views:
            enrich(
                rating_key,
                "tautulli",
                {
                    "tautulli.play_count": len(views),
                    "tautulli.last_played": max(v.at for v in views),
                    "tautulli.users_watched": len({v.user for v in views}),
                    "tautulli.watch_time": sum(v.duration for v in views),
                },
            )
        else:
            enrich(rating_key, "tautulli", None)

    for movie in universe.movies:
        count, last = _plays(movie.views)
        add(
            {
                "section_id": MOVIES_SECTION[0], "section_title": MOVIES_SECTION[1],
                "rating_key": str(movie.rating_key), "type": "movie", "title": movie.title, "year": movie.year,
                "tmdb_id": movie.tmdb, "imdb_id": movie.imdb, "added_at": movie.added_at,
                "last_viewed_at": last, "view_count": count,
                "size_bytes": movie.size, "files": json.dumps([movie.file]), "labels": json.dumps(movie.labels),
                "collections": json.dumps(movie.collections),
            }
        )  # fmt: skip
        radarr = None
        if movie.radarr:
            radarr = {
                "radarr.monitored": movie.monitored,
                "radarr.size_on_disk": movie.size,
                "radarr.tags": movie.tags,
                "radarr.instance": movie.radarr,
            }
        enrich(movie.rating_key, "radarr", radarr)
        enrich(movie.rating_key, "sonarr", None)
        enrich_common(movie, movie.rating_key, movie.views)

    for show in universe.shows:
        count, last = _plays([v for e in show.episodes for v in e.views])
        add(
            {
                "section_id": SHOWS_SECTION[0], "section_title": SHOWS_SECTION[1], "rating_key": str(show.rating_key),
                "type": "show", "title": show.title, "year": show.year, "tmdb_id": show.tmdb, "tvdb_id": show.tvdb,
                "imdb_id": show.imdb, "added_at": show.added_at, "last_viewed_at": last, "view_count": count,
                "labels": json.dumps(show.labels), "collections": json.dumps(show.collections),
            }
        )  # fmt: skip
        enrich(
            show.rating_key,
            "sonarr",
            {"sonarr.status": show.status, "sonarr.monitored": show.monitored} if show.sonarr else None,
        )
        enrich(show.rating_key, "radarr", None)
        enrich_common(show, show.rating_key, [v for e in show.episodes for v in e.views])
        for season in show.seasons:
            count, last = _plays([v for e in season.episodes for v in e.views])
            add(
                {
                    "section_id": SHOWS_SECTION[0], "section_title": SHOWS_SECTION[1],
                    "rating_key": str(season.rating_key), "type": "season", "title": f"Season {season.index}",
                    "parent_rating_key": str(show.rating_key), "season_index": season.index,
                    "added_at": min((e.added_at for e in season.episodes), default=show.added_at),
                    "last_viewed_at": last, "view_count": count,
                }
            )  # fmt: skip
            for ep in season.episodes:
                count, last = _plays(ep.views)
                add(
                    {
                        "section_id": SHOWS_SECTION[0], "section_title": SHOWS_SECTION[1],
                        "rating_key": str(ep.rating_key), "type": "episode", "title": ep.title,
                        "parent_rating_key": str(season.rating_key), "grandparent_rating_key": str(show.rating_key),
                        "season_index": season.index, "episode_index": ep.index, "added_at": ep.added_at,
                        "last_viewed_at": last, "view_count": count, "size_bytes": ep.size,
                        "files": json.dumps([ep.file]),
                    }
                )  # fmt: skip
                if ep.views:
                    enrich(
                        ep.rating_key,
                        "tautulli",
                        {
                            "tautulli.play_count": len(ep.views),
                            "tautulli.last_played": max(v.at for v in ep.views),
                            "tautulli.users_watched": len({v.user for v in ep.views}),
                            "tautulli.watch_time": sum(v.duration for v in ep.views),
                        },
                    )
                else:
                    enrich(ep.rating_key, "tautulli", None)

    with store.transaction():
        store.db["media_items"].insert_all(items, batch_size=2000)
        ids = {
            r["rating_key"]: r["id"]
            for r in store.query("SELECT id, rating_key FROM media_items WHERE server = ?", (server,))
        }
        for row in fact_rows:
            row["item_id"] = ids[row.pop("rating_key")]
        store.db["item_facts"].insert_all(fact_rows, batch_size=2000, replace=True)
    return ids
