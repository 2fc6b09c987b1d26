"""The fact registry: every name a rule can test, with its type, owner and description.

Core facts (``plex.*``) come from the ``media_items`` mirror and are always *known* (a NULL column, such as
``plex.last_viewed_at`` of a never-played item, is *absent*). Every plugin adds its own facts through the
``smartplexd_facts`` hook (``radarr.monitored``, ``tautulli.play_count`` ...); their values live in
``item_facts`` rows and may be known, absent or unknown (ARCHITECTURE §4).

``smartplexd facts`` prints the registry and ``docs/rules.md`` is generated from it
(``python -m smartplexd.rules.docs``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from smartplexd.model import FACT_TYPES, FactDef

CORE_SOURCE = "plex"

# fact name -> (type, SQL expression over media_items aliased ``m``, description, unit)
_PLEX_FACTS: dict[str, tuple[str, str, str, str | None]] = {
    "plex.title": ("str", "m.title", "Title as Plex shows it (episodes: the episode title).", None),
    "plex.year": ("int", "m.year", "Release year; absent when Plex has none.", None),
    "plex.type": ("str", "m.type", "movie, show, season or episode.", None),
    "plex.library": ("str", "m.section_title", "Title of the Plex library (section) holding the item.", None),
    "plex.server": ("str", "m.server", "Name of the Plex server in config.yaml.", None),
    "plex.rating_key": ("str", "m.rating_key", "Plex rating key of the item.", None),
    "plex.added_at": ("datetime", "m.added_at", "When the item was added to Plex.", "epoch seconds"),
    "plex.updated_at": ("datetime", "m.updated_at", "When Plex last changed the item's metadata.", "epoch seconds"),
    "plex.last_viewed_at": (
        "datetime",
        "m.last_viewed_at",
        "When the token owner last finished it; absent for never-viewed items (use `missing`).",
        "epoch seconds",
    ),
    "plex.view_count": ("int", "m.view_count", "Plays counted by Plex for the token owner; known 0 when none.", None),
    "plex.size": (
        "size",
        "COALESCE(NULLIF(m.size_bytes, 0), sz.bytes, 0)",
        "Bytes on disk (shows and seasons: the sum of their episodes).",
        "bytes",
    ),
    "plex.labels": ("list", "m.labels", "Plex labels (`contains: keep`); compared case-insensitively.", None),
    "plex.collections": ("list", "m.collections", "Titles of the Plex collections holding the item.", None),
    "plex.files": ("list", "m.files", "File paths of the item's media parts.", None),
    "plex.season_index": ("int", "m.season_index", "Season number (seasons and episodes).", None),
    "plex.episode_index": ("int", "m.episode_index", "Episode number within its season (episodes).", None),
    "plex.tmdb_id": ("int", "m.tmdb_id", "TMDB id from the Plex GUIDs; absent when Plex has none.", None),
    "plex.tvdb_id": ("int", "m.tvdb_id", "TVDB id from the Plex GUIDs; absent when Plex has none.", None),
    "plex.imdb_id": ("str", "m.imdb_id", "IMDb id (tt...) from the Plex GUIDs; absent when Plex has none.", None),
}

PLEX_SQL: dict[str, str] = {name: spec[1] for name, spec in _PLEX_FACTS.items()}
"""SQL over ``media_items m`` (and the per-show size aggregate ``sz``) for each core fact."""

NEVER_ABSENT = {"plex.title", "plex.type", "plex.library", "plex.server", "plex.rating_key", "plex.view_count"}
"""Core facts that are NOT NULL in ``media_items``: always known."""


def core_facts() -> list[FactDef]:
    """The ``plex.*`` facts every installation has."""
    return [FactDef(name, spec[0], spec[2], spec[3]) for name, spec in _PLEX_FACTS.items()]


class FactRegistry:
    """Every fact a rule may reference, by name."""

    def __init__(self, facts: Iterable[FactDef] = ()) -> None:
        self._facts: dict[str, FactDef] = {}
        for fact in facts:
            self.add(fact)

    def add(self, fact: FactDef) -> None:
        """Register ``fact``; a type outside :data:`smartplexd.model.FACT_TYPES` is a plugin bug."""
        if fact.type not in FACT_TYPES:
            raise ValueError(f"fact {fact.name} has unknown type {fact.type!r} (one of {', '.join(FACT_TYPES)})")
        if "." not in fact.name:
            raise ValueError(f"fact name {fact.name!r} must be '<source>.<name>'")
        self._facts[fact.name] = fact

    def get(self, name: str) -> FactDef | None:
        return self._facts.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._facts

    def __len__(self) -> int:
        return len(self._facts)

    def names(self) -> list[str]:
        return sorted(self._facts)

    def all(self) -> list[FactDef]:
        return [self._facts[n] for n in self.names()]

    def sources(self) -> list[str]:
        return sorted({f.source for f in self._facts.values()})

    def closest(self, name: str, n: int = 3) -> list[str]:
        """Up to ``n`` registered names that look like ``name`` (for "did you mean" messages)."""
        names = self.names()
        close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
        if len(close) < n:
            # "labels" alone should still find plex.labels; "radarr.size" should find radarr.size_on_disk.
            tail = name.rsplit(".", 1)[-1]
            for candidate in names:
                if candidate not in close and (candidate.rsplit(".", 1)[-1] == tail or candidate.startswith(name)):
                    close.append(candidate)
                if len(close) >= n:
                    break
        if len(close) < n:
            for candidate in difflib.get_close_matches(name, names, n=n, cutoff=0.4):
                if candidate not in close:
                    close.append(candidate)
                if len(close) >= n:
                    break
        return close[:n]


def registry(pm: Any = None) -> FactRegistry:
    """Core Plex facts plus every loaded plugin's ``smartplexd_facts()``."""
    from smartplexd.plugins import get_plugin_manager

    pm = pm or get_plugin_manager()
    reg = FactRegistry(core_facts())
    for result in pm.hook.smartplexd_facts():
        for fact in result or []:
            if fact.source == CORE_SOURCE:
                raise ValueError(f"plugin fact {fact.name} uses the reserved 'plex.' prefix")
            reg.add(fact)
    return reg
