"""The plain dataclasses that cross module and plugin boundaries.

Pydantic lives at the edges (config, rules, HTTP payloads); inside, the core and the plugins exchange these
small, typed values. Everything a plugin receives or returns through a hook is defined here, so a
third-party plugin needs nothing but this module and :mod:`smartplexd.hookspecs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FACT_TYPES = ("int", "float", "bool", "str", "datetime", "size", "duration", "list")
"""``datetime`` = epoch seconds; ``size`` = bytes; ``duration`` = seconds; ``list`` = list of strings."""


@dataclass(frozen=True, slots=True)
class FactDef:
    """One fact a rule can test, e.g. ``radarr.monitored``. Its owner is the part before the dot."""

    name: str
    type: str
    description: str
    unit: str | None = None

    @property
    def source(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass(slots=True)
class MediaItem:
    """One row of ``media_items`` as plugins see it (read-only for them)."""

    id: int
    server: str
    section_id: str
    section_title: str
    rating_key: str
    type: str  # movie | show | season | episode
    title: str
    year: int | None = None
    tmdb_id: int | None = None
    tvdb_id: int | None = None
    imdb_id: str | None = None
    parent_rating_key: str | None = None
    grandparent_rating_key: str | None = None
    season_index: int | None = None
    episode_index: int | None = None
    added_at: int | None = None
    last_viewed_at: int | None = None
    view_count: int = 0
    size_bytes: int = 0
    files: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MediaItem:
        import json

        names = cls.__dataclass_fields__
        values = {k: row[k] for k in names if k in row}
        for key in ("files", "labels", "collections"):
            if isinstance(values.get(key), str):
                values[key] = json.loads(values[key])
        return cls(**values)


@dataclass(slots=True)
class EnrichResult:
    """What one plugin learned about a batch of items.

    ``facts`` maps ``MediaItem.id`` to ``{fact name: value}`` for the items the service holds. Items of the
    batch that are not in ``facts`` are *absent* when ``complete`` is true (the service answered and does
    not hold them) and *unknown* otherwise (an instance failed; ``error`` says why). Unknown never selects
    an item for deletion.
    """

    plugin: str
    facts: dict[int, dict[str, Any]] = field(default_factory=dict)
    complete: bool = True
    error: str | None = None


class Health(StrEnum):
    OK = "ok"
    DOWN = "down"
    UNAUTHORIZED = "unauthorized"
    ERROR = "error"


@dataclass(slots=True)
class HealthResult:
    """The outcome of one health check of one configured instance (``name`` = ``radarr4k``, ``plex:home``)."""

    name: str
    plugin: str
    status: Health
    version: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CascadeTarget:
    """One side effect of a deletion, written as a ``deletion_steps`` row before anything runs.

    ``order`` follows the safety model: requests (10) before the *arrs (20) before Plex (30) before the
    local tombstone (40), so nothing can be re-downloaded between steps. ``data`` carries what the step
    needs (ids resolved at intent time) and is stored with the step, so a retry after a crash needs no
    lookups that could now fail.
    """

    plugin: str
    target: str
    order: int
    action: str
    data: dict[str, Any] = field(default_factory=dict)


class StepStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(slots=True)
class StepResult:
    """What running one cascade step did. ``already_gone`` = the target no longer held it (counts as done)."""

    status: StepStatus
    message: str = ""
    already_gone: bool = False
    retryable: bool = True
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RestoreResult:
    target: str
    ok: bool
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class WebhookEvent:
    """A received webhook, normalized.

    ``type`` is one of ``item.added``, ``item.watched``, ``item.deleted_upstream``, ``request.created``,
    ``test`` or ``unknown``; the ids say which item it is about (whatever the sender knows).
    """

    type: str
    source: str
    rating_key: str | None = None
    server: str | None = None
    tmdb_id: int | None = None
    tvdb_id: int | None = None
    imdb_id: str | None = None
    user: str | None = None
    at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Notification:
    """An event worth telling a human about (``deletion.done``, ``leaving_soon``, ``plex.unauthorized``...)."""

    event: str
    title: str
    body: str
    severity: str = "info"  # info | warning | failure
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PluginContext:
    """What every hook receives as ``ctx``.

    ``config`` is the whole validated :class:`smartplexd.config.AppConfig`; a plugin reads its own section
    with :meth:`section`. ``cache`` lives for one run (one plan, one enrichment pass, one apply) so a plugin
    fetches its catalogue once per run, not once per batch. ``store`` is the open
    :class:`smartplexd.store.db.Store` (read it; the core writes what hooks return).
    """

    config: Any
    store: Any = None
    now: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    rule_action: str | None = None

    def section(self, name: str) -> Any:
        """The validated ``integrations.<name>`` section, or None when it is not configured."""
        return self.config.integrations.get(name)
