"""Shared by the integration-plugin tests: a config file pointing at simulated servers, a store holding
media_items rows shaped like the Plex sync's output (migration 0002), and small readers of item_facts."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

from smartplexd.config import AppConfig, load_config
from smartplexd.demo.universe import Universe
from smartplexd.events import EventBus
from smartplexd.model import MediaItem, PluginContext
from smartplexd.store.db import Store, open_store

SERVER = "home"


def write_config(tmp_path: Path, integrations: str, extra: str = "") -> AppConfig:
    """A config.yaml with one Plex server ``home`` and the given ``integrations:`` block (YAML text)."""
    text = (
        "database: ./db.sqlite\n"
        "plex:\n"
        "  servers:\n"
        f"    - {{name: {SERVER}, url: 'http://127.0.0.1:9', token: abcdefghijklmnopqrstuvwx}}\n"
        "integrations:\n" + textwrap.indent(textwrap.dedent(integrations).strip("\n"), "  ") + "\n" + extra
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "db.sqlite")


def insert(store: Store, **row: Any) -> int:
    """One media_items row; defaults make it a live movie of server ``home``."""
    row = {
        "server": SERVER,
        "section_id": "1",
        "section_title": "Movies",
        "type": "movie",
        "title": "Untitled",
        **row,
    }
    for key in ("files", "labels", "collections"):
        if isinstance(row.get(key), list):
            row[key] = json.dumps(row[key])
    cols = ", ".join(row)
    marks = ", ".join("?" * len(row))
    with store.transaction() as conn:
        cur = conn.execute(f"INSERT INTO media_items ({cols}) VALUES ({marks})", tuple(row.values()))
    return int(cur.lastrowid)


def insert_universe(store: Store, universe: Universe, server: str = SERVER) -> dict[int, int]:
    """Every movie, show, season and episode of ``universe`` as the sync would write them.

    Returns ``{plex rating key: media_items.id}``. Seasons and episodes carry no show GUIDs (as in Plex);
    an episode's tvdb id is the episode's own.
    """
    ids: dict[int, int] = {}
    for m in universe.movies:
        ids[m.rating_key] = insert(
            store,
            server=server,
            rating_key=str(m.rating_key),
            title=m.title,
            year=m.year,
            tmdb_id=m.tmdb,
            imdb_id=m.imdb,
            guid=f"plex://movie/{m.rating_key}",
            size_bytes=m.size,
            files=[m.file],
        )
    for s in universe.shows:
        show_key = str(s.rating_key)
        ids[s.rating_key] = insert(
            store,
            server=server,
            section_id="2",
            section_title="TV Shows",
            type="show",
            rating_key=show_key,
            title=s.title,
            year=s.year,
            tvdb_id=s.tvdb,
            tmdb_id=s.tmdb,
            imdb_id=s.imdb,
        )
        for season in s.seasons:
            ids[season.rating_key] = insert(
                store,
                server=server,
                section_id="2",
                section_title="TV Shows",
                type="season",
                rating_key=str(season.rating_key),
                parent_rating_key=show_key,
                title=f"Season {season.index}",
                season_index=season.index,
            )
            for ep in season.episodes:
                ids[ep.rating_key] = insert(
                    store,
                    server=server,
                    section_id="2",
                    section_title="TV Shows",
                    type="episode",
                    rating_key=str(ep.rating_key),
                    parent_rating_key=str(season.rating_key),
                    grandparent_rating_key=show_key,
                    title=ep.title,
                    season_index=season.index,
                    episode_index=ep.index,
                    tvdb_id=10_000_000 + ep.rating_key,
                    size_bytes=ep.size,
                    files=[ep.file],
                )
    return ids


def facts(store: Store, item_id: int, plugin: str) -> tuple[str, dict[str, Any], str | None]:
    """``(status, facts, error)`` of one item_facts row."""
    row = store.query_one(
        "SELECT status, facts, error FROM item_facts WHERE item_id = ? AND plugin = ?", (item_id, plugin)
    )
    assert row is not None, f"no {plugin} facts row for item {item_id}"
    return row["status"], json.loads(row["facts"]), row["error"]


def statuses(store: Store, plugin: str) -> dict[int, str]:
    return {
        r["item_id"]: r["status"]
        for r in store.query("SELECT item_id, status FROM item_facts WHERE plugin = ?", (plugin,))
    }


def item(store: Store, item_id: int) -> MediaItem:
    row = store.query_one("SELECT * FROM media_items WHERE id = ?", (item_id,))
    assert row is not None
    return MediaItem.from_row(row)


def ctx(config: AppConfig, store: Store | None = None, rule_action: str | None = None) -> PluginContext:
    return PluginContext(config=config, store=store, rule_action=rule_action)


def run(awaitable: Any) -> Any:
    return asyncio.run(awaitable) if asyncio.iscoroutine(awaitable) else awaitable


def catalogue_requests(srv: Any, path: str) -> int:
    """How many GETs of ``path`` the simulated server logged."""
    from smartplexd.demo.faults import REQUEST_LOG

    return sum(1 for r in list(srv.app[REQUEST_LOG]) if r["method"] == "GET" and r["path"] == path)


class Recorder:
    """Collects bus events of some types."""

    def __init__(self, bus: EventBus, *types: str) -> None:
        self.events: list[Any] = []
        bus.subscribe(lambda e: self.events.append(e) if e.type in types else None)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == type_]


def stopped_url() -> str:
    """A loopback URL where nothing listens (a stopped service)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
