"""Tautulli integration: watch history facts per Plex item, health and webhooks (read-only: no deletion step).

Config::

    integrations:
      tautulli:
        url: http://tautulli:8181
        api_key: ${TAUTULLI_API_KEY}
        server: home          # the Plex server (plex.servers[].name) it watches; default: the first

Facts come from the whole history, fetched once per run with ``cmd=get_history`` in pages of
``page_size`` rows (oldest first, so plays recorded while paging land on later pages), and matched by Plex
rating key. A play of an episode counts for the episode, its season and its show. An item of the watched
server without any history gets ``tautulli.play_count`` 0, ``tautulli.users_watched`` 0 and
``tautulli.last_played`` null — *known*, because Tautulli answered; when Tautulli fails, every item's
facts are unknown, never 0. Items of other Plex servers get no Tautulli facts (absent).

Tautulli's API accepts the key only as the ``apikey`` query parameter; the client never puts a URL in an
error message and the key is a registered secret, masked in logs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from smartplexd.config import Name, ServiceConfig
from smartplexd.model import (
    EnrichResult,
    FactDef,
    Health,
    HealthResult,
    MediaItem,
    PluginContext,
    WebhookEvent,
)
from smartplexd.plugins import hookimpl
from smartplexd_plugins.matching import int_or_none, str_or_none, webhook_source_is
from smartplexd_plugins.servicehttp import ServiceClient, ServiceError, once_per_run

PLUGIN = "tautulli"


class TautulliConfig(ServiceConfig):
    """The Tautulli instance."""

    name: Name = Field("tautulli", description="Instance name shown in status.")
    server: Name | None = Field(None, description="The Plex server (plex.servers[].name) Tautulli watches.")
    page_size: int = Field(5000, ge=100, le=100_000, description="History rows per request.")
    pages_in_flight: int = Field(4, ge=1, le=16, description="History pages fetched at the same time.")


def _config(ctx: PluginContext) -> TautulliConfig | None:
    return ctx.section(PLUGIN)


def _client(config: TautulliConfig) -> ServiceClient:
    return ServiceClient(
        config.name,
        f"{config.url}/api",
        timeout=config.timeout,
        params={"apikey": config.api_key.get_secret_value()},
    )


async def _command(c: ServiceClient, cmd: str, **params: Any) -> Any:
    """One API command's ``data``; an error envelope (even with HTTP 200) raises ServiceError."""
    body = await c.get_json("/v2", {"cmd": cmd, **params})
    response = body.get("response") if isinstance(body, dict) else None
    if not isinstance(response, dict) or response.get("result") != "success":
        message = (response or {}).get("message") or "unexpected answer"
        raise ServiceError(c.service, f"{cmd}: {message}", 200)
    return response.get("data")


@hookimpl
def smartplexd_config_model() -> tuple[str, Any]:
    return PLUGIN, TautulliConfig


@hookimpl
def smartplexd_facts() -> list[FactDef]:
    return [
        FactDef("tautulli.play_count", "int", "Plays recorded by Tautulli (for a show or season: of its episodes)."),
        FactDef("tautulli.last_played", "datetime", "When the last play stopped; null when never played."),
        FactDef("tautulli.users_watched", "int", "Distinct users with at least one play."),
        FactDef("tautulli.watch_time", "duration", "Total time played, all users.", "seconds"),
        FactDef("tautulli.percent_complete_max", "int", "Furthest any single play got, in percent (0 when never)."),
    ]


# ----------------------------------------------------------------------------------------- enrich


@dataclass(slots=True)
class _Stats:
    plays: int = 0
    last: int | None = None
    seconds: int = 0
    percent: int = 0
    users: set[str] = field(default_factory=set)
    _facts: dict[str, Any] | None = None

    def add(self, stopped: int, seconds: int, percent: int, user: str) -> None:
        self.plays += 1
        self.last = stopped if self.last is None else max(self.last, stopped)
        self.seconds += seconds
        self.percent = max(self.percent, percent)
        self.users.add(user)
        self._facts = None

    def facts(self) -> dict[str, Any]:
        """The item's facts; one dict per stats object, shared by every batch (read-only)."""
        if self._facts is None:
            self._facts = self._compute()
        return self._facts

    def _compute(self) -> dict[str, Any]:
        return {
            "tautulli.play_count": self.plays,
            "tautulli.last_played": self.last,
            "tautulli.users_watched": len(self.users),
            "tautulli.watch_time": self.seconds,
            "tautulli.percent_complete_max": self.percent,
        }


_NEVER = _Stats().facts()
"""The facts of an item Tautulli has no history for (shared, read-only)."""


async def _history(c: ServiceClient, page_size: int, in_flight: int) -> list[dict[str, Any]]:
    params = {"order_column": "date", "order_dir": "asc", "length": page_size}
    first = await _command(c, "get_history", start=0, **params)
    rows = list(first.get("data") or [])
    total = int(first.get("recordsFiltered") or 0)
    limit = asyncio.Semaphore(in_flight)

    async def page(start: int) -> list[dict[str, Any]]:
        async with limit:
            return list((await _command(c, "get_history", start=start, **params)).get("data") or [])

    for chunk in await asyncio.gather(*(page(s) for s in range(page_size, total, page_size))):
        rows.extend(chunk)
    return rows


async def _stats(ctx: PluginContext, config: TautulliConfig) -> dict[str, _Stats]:
    """``{rating key: stats}`` for every movie, episode, season and show with history (once per run)."""

    async def fetch() -> dict[str, _Stats]:
        async with _client(config) as c:
            rows = await _history(c, config.page_size, config.pages_in_flight)
        stats: dict[str, _Stats] = {}
        seen: set[Any] = set()
        for row in rows:
            row_id = row.get("id") or row.get("row_id")
            if row_id is not None:
                if row_id in seen:
                    continue
                seen.add(row_id)
            play = (
                int(row.get("stopped") or row.get("date") or 0),
                int(row.get("play_duration") or row.get("duration") or 0),
                int(row.get("percent_complete") or 0),
                str(row.get("user_id") or row.get("user")),
            )
            for column in ("rating_key", "parent_rating_key", "grandparent_rating_key"):
                value = row.get(column)
                if value not in (None, ""):
                    rating_key = str(value)
                    found = stats.get(rating_key)
                    if found is None:
                        found = stats[rating_key] = _Stats()
                    found.add(*play)
        return stats

    return await once_per_run(ctx, f"{PLUGIN}:stats", fetch)


def _server(config: TautulliConfig, ctx: PluginContext) -> str | None:
    if config.server:
        return config.server
    servers = getattr(getattr(ctx.config, "plex", None), "servers", None) or []
    return servers[0].name if servers else None


@hookimpl
async def smartplexd_enrich(items: list[MediaItem], ctx: PluginContext) -> EnrichResult | None:
    config = _config(ctx)
    if config is None:
        return None
    try:
        stats = await _stats(ctx, config)
    except ServiceError as exc:
        return EnrichResult(PLUGIN, complete=False, error=str(exc))
    server = _server(config, ctx)
    facts: dict[int, dict[str, Any]] = {}
    for item in items:
        if server is not None and item.server != server:
            continue
        found = stats.get(item.rating_key)
        facts[item.id] = found.facts() if found is not None else _NEVER
    return EnrichResult(PLUGIN, facts)


# ----------------------------------------------------------------------------------------- health


@hookimpl
async def smartplexd_health(ctx: PluginContext) -> list[HealthResult]:
    """``cmd=status`` (reachable and authenticated: a bad key is a 401), then the Tautulli version."""
    config = _config(ctx)
    if config is None:
        return []
    async with _client(config) as c:
        try:
            _, latency = await c.timed("GET", "/v2", {"cmd": "status"})
            info = await _command(c, "get_tautulli_info")
        except ServiceError as exc:
            return [HealthResult(config.name, PLUGIN, exc.health, error=str(exc))]
    return [
        HealthResult(
            config.name,
            PLUGIN,
            Health.OK,
            version=(info or {}).get("tautulli_version"),
            latency_ms=round(latency, 1),
        )
    ]


# ---------------------------------------------------------------------------------------- webhook

_EVENTS = {"watched": "item.watched", "created": "item.added", "test": "test"}


@hookimpl
def smartplexd_webhook(source: str, payload: dict[str, Any], ctx: PluginContext) -> list[WebhookEvent] | None:
    """The body is the user's template (suggested: contracts/tautulli/webhook_example_body.json):
    ``event`` (Tautulli's ``{action}``) ``watched`` = item.watched, ``created`` = item.added, ``test`` =
    test; other actions (play, stop, pause...) are stored as unknown."""
    if not webhook_source_is(source, PLUGIN, ctx):
        return None
    action = str_or_none(payload.get("event") or payload.get("action")) or ""
    at = int_or_none(payload.get("unixtime"))
    return [
        WebhookEvent(
            _EVENTS.get(action.lower(), "unknown"),
            PLUGIN,
            rating_key=str_or_none(payload.get("rating_key")),
            tmdb_id=int_or_none(payload.get("tmdb_id")),
            tvdb_id=int_or_none(payload.get("tvdb_id")),
            imdb_id=str_or_none(payload.get("imdb_id")),
            user=str_or_none(payload.get("user")),
            at=float(at) if at else None,
            details={
                "action": action or None,
                "media_type": str_or_none(payload.get("media_type")),
                "title": str_or_none(payload.get("title")),
                "grandparent_rating_key": str_or_none(payload.get("grandparent_rating_key")),
                "progress_percent": int_or_none(payload.get("progress_percent")),
            },
        )
    ]
