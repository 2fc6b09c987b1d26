"""A small hand-made library for the rules engine's tests: items and facts written like sync/enrich do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pluggy

from smartplexd.config import AppConfig, load_config
from smartplexd.plugins import create_plugin_manager
from smartplexd.rules.facts import FactRegistry, registry
from smartplexd.rules.models import Rule, parse_rule_text
from smartplexd.rules.seed import seed_plugins

NOW = 1_700_000_000.0
DAY = 86_400
GB = 10**9
API_KEY = "k" * 24


def seed_pm() -> pluggy.PluginManager:
    """Plugins declaring radarr/sonarr/overseerr/tautulli facts and config sections, nothing installed."""
    pm = create_plugin_manager(load_entry_points=False)
    for plugin in seed_plugins():
        pm.register(plugin)
    return pm


def seed_registry(pm: pluggy.PluginManager | None = None) -> FactRegistry:
    return registry(pm or seed_pm())


def write_config(
    tmp_path: Path,
    pm: pluggy.PluginManager,
    *,
    integrations: tuple[str, ...] = ("radarr", "sonarr", "overseerr", "tautulli"),
    extra: str = "",
    plex_url: str = "http://127.0.0.1:9",
    rules_dir: str = "./rules",
) -> AppConfig:
    """A config.yaml in ``tmp_path`` with the given integrations configured (fake URLs: never called)."""
    lines = ["integrations:"]
    for name in integrations:
        entry = f"{{name: {name}, url: 'http://127.0.0.1:9', api_key: {API_KEY}}}"
        lines.append(f"  {name}: [{entry}]" if name in ("radarr", "sonarr") else f"  {name}: {entry}")
    text = f"""
database: ./smartplexd.db
timezone: Europe/Berlin
rules: [{rules_dir}]
plex:
  servers:
    - {{name: home, url: "{plex_url}", token: plex-token-for-tests}}
{chr(10).join(lines) if integrations else ""}
{extra}
"""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    (tmp_path / "rules").mkdir(exist_ok=True)
    return load_config(path, pm=pm)


class Library:
    """Writes ``media_items`` and ``item_facts`` rows directly (shaped like sync and enrich output)."""

    def __init__(self, store: Any, server: str = "home") -> None:
        self.store = store
        self.server = server
        row = store.query_one("SELECT MAX(CAST(rating_key AS INTEGER)) AS k FROM media_items")
        self._key = max(100, int(row["k"] or 0)) if row else 100

    def _next(self) -> str:
        self._key += 1
        return str(self._key)

    def item(self, type: str, title: str, **kw: Any) -> int:
        row = {
            "server": self.server,
            "section_id": "1" if type == "movie" else "2",
            "section_title": "Movies" if type == "movie" else "TV Shows",
            "rating_key": kw.pop("rating_key", None) or self._next(),
            "type": type,
            "title": title,
            "added_at": int(NOW - 400 * DAY),
            "view_count": 0,
            "size_bytes": 0,
        }
        for key in ("labels", "collections", "files"):
            if key in kw:
                kw[key] = json.dumps(kw[key])
        row.update(kw)
        with self.store.transaction():
            return int(self.store.db["media_items"].insert(row).last_pk)

    def movie(self, title: str, size: int = 5 * GB, **kw: Any) -> int:
        kw.setdefault("files", [f"/data/movies/{title}.mkv"])
        return self.item("movie", title, size_bytes=size, **kw)

    def show(self, title: str, seasons: list[list[int]], **kw: Any) -> dict[str, Any]:
        """A show with seasons of episodes (sizes in bytes); returns ids: show, seasons[], episodes[][]."""
        show_key = self._next()
        show_id = self.item("show", title, rating_key=show_key, **kw)
        out: dict[str, Any] = {"show": show_id, "seasons": [], "episodes": []}
        for s, sizes in enumerate(seasons, start=1):
            season_key = self._next()
            out["seasons"].append(
                self.item("season", f"Season {s}", rating_key=season_key, parent_rating_key=show_key, season_index=s)
            )
            eps = []
            for e, size in enumerate(sizes, start=1):
                eps.append(
                    self.item(
                        "episode", f"Episode {e}", parent_rating_key=season_key, grandparent_rating_key=show_key,
                        season_index=s, episode_index=e, size_bytes=size,
                        files=[f"/data/tv/{title}/S{s:02d}E{e:02d}.mkv"],
                    )
                )  # fmt: skip
            out["episodes"].append(eps)
        return out

    def facts(
        self,
        item_id: int,
        plugin: str,
        values: dict[str, Any] | None,
        *,
        status: str | None = None,
        fetched_at: float = NOW,
        error: str | None = None,
    ) -> None:
        """``values`` None = absent (the service answered, it does not hold the item)."""
        status = status or ("known" if values is not None else "absent")
        with self.store.transaction():
            self.store.db["item_facts"].insert(
                {"item_id": item_id, "plugin": plugin, "status": status, "facts": json.dumps(values or {}),
                 "fetched_at": fetched_at, "error": error},
                replace=True,
            )  # fmt: skip


def rules(text: str, reg: FactRegistry) -> list[Rule]:
    return parse_rule_text(text, reg)
