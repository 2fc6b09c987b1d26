"""Overseerr (and Jellyseerr) integration: who requested an item, request and media status, clearing
requests on deletion, health and webhooks.

Config::

    integrations:
      overseerr:
        url: http://overseerr:5055
        api_key: ${OVERSEERR_API_KEY}
        delete_requests: [pending, declined]     # default; approved requests are kept for history

Facts come from two paged lists per run (``GET /api/v1/request`` and ``GET /api/v1/media``, ``take`` =
``page_size``), matched by tmdb id (movies) or tvdb/tmdb id (shows), then by Plex rating key. Seasons and
episodes carry their show's facts. When an item has several requests, the newest one gives
``requested_by``, ``request_status`` and ``requested_at``.

Deletion (order 10, before the *arrs): requests in a ``delete_requests`` status are deleted; then the
media entry is cleared so the item can be requested again — ``DELETE /api/v1/media/{id}`` when no request
is kept, or, when a kept request exists (Overseerr's media delete would cascade to it), the media status
is reset to *unknown* instead (``POST /api/v1/media/{id}/unknown``).

This client uses httpx directly: python-overseerr 0.8 cannot parse request statuses 4 and 5.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from smartplexd.config import Name, ServiceConfig
from smartplexd.model import (
    CascadeTarget,
    EnrichResult,
    FactDef,
    Health,
    HealthResult,
    MediaItem,
    PluginContext,
    StepResult,
    StepStatus,
    WebhookEvent,
)
from smartplexd.plugins import hookimpl
from smartplexd_plugins import matching
from smartplexd_plugins.matching import epoch, int_or_none, str_or_none, webhook_source_is
from smartplexd_plugins.servicehttp import ServiceClient, ServiceError, once_per_run

PLUGIN = "overseerr"
ORDER = 10

REQUEST_STATUS = {1: "pending", 2: "approved", 3: "declined", 4: "failed", 5: "completed"}
MEDIA_STATUS = {1: "unknown", 2: "pending", 3: "processing", 4: "partially_available", 5: "available", 6: "deleted"}
RequestStatus = Literal["pending", "approved", "declined", "failed", "completed"]


class OverseerrConfig(ServiceConfig):
    """The Overseerr (or Jellyseerr) instance."""

    name: Name = Field("overseerr", description="Instance name shown in status.")
    delete_requests: list[RequestStatus] = Field(
        default_factory=lambda: ["pending", "declined"],
        description="Request statuses deleted with an item; others (approved) are kept for history.",
    )
    page_size: int = Field(500, ge=1, le=10_000, description="Rows per page when listing requests and media.")
    pages_in_flight: int = Field(4, ge=1, le=16, description="Pages fetched at the same time.")


def _config(ctx: PluginContext) -> OverseerrConfig | None:
    return ctx.section(PLUGIN)


def _client(config: OverseerrConfig) -> ServiceClient:
    return ServiceClient(
        config.name,
        f"{config.url}/api/v1",
        timeout=config.timeout,
        headers={"X-Api-Key": config.api_key.get_secret_value()},
    )


@hookimpl
def smartplexd_config_model() -> tuple[str, Any]:
    return PLUGIN, OverseerrConfig


@hookimpl
def smartplexd_facts() -> list[FactDef]:
    return [
        FactDef("overseerr.requested_by", "str", "Username of whoever made the newest request for the item."),
        FactDef(
            "overseerr.request_status",
            "str",
            "Status of the newest request: pending, approved, declined, failed or completed.",
        ),
        FactDef("overseerr.requested_at", "datetime", "When the newest request was made."),
        FactDef("overseerr.request_count", "int", "How many requests Overseerr holds for the item."),
        FactDef(
            "overseerr.media_status",
            "str",
            "Overseerr's media status: unknown, pending, processing, partially_available, available or deleted.",
        ),
    ]


# -------------------------------------------------------------------------------------- catalogue


class Catalogue:
    """Every media row and request, indexed for matching."""

    def __init__(self, media: list[dict[str, Any]], requests: list[dict[str, Any]]) -> None:
        self.media: dict[int, dict[str, Any]] = {m["id"]: m for m in media if isinstance(m, dict) and "id" in m}
        self.requests: dict[int, list[dict[str, Any]]] = {}
        for request in requests:
            media_row = request.get("media") or {}
            if "id" not in media_row:
                continue
            # A media row created after the media list was read still counts.
            self.media.setdefault(media_row["id"], media_row)
            self.requests.setdefault(media_row["id"], []).append(request)
        self.index: dict[tuple[str, Any], int] = {}
        for m in self.media.values():
            kind = m.get("mediaType")
            for key in ("tmdbId", "tvdbId"):
                if m.get(key):
                    self.index.setdefault((f"{kind}:{key}", m[key]), m["id"])
            if m.get("ratingKey"):
                self.index.setdefault(("ratingKey", str(m["ratingKey"])), m["id"])

    def find(self, item: MediaItem, guids: matching.Guids | None) -> dict[str, Any] | None:
        if guids is None:
            return None
        if item.type == "movie":
            keys = [("movie:tmdbId", guids.tmdb)]
        else:
            keys = [("tv:tvdbId", guids.tvdb), ("tv:tmdbId", guids.tmdb)]
        keys.append(("ratingKey", matching.show_key(item) if item.type != "movie" else item.rating_key))
        for key in keys:
            if key[1] and key in self.index:
                return self.media[self.index[key]]
        return None


async def _paged(c: ServiceClient, path: str, page_size: int, in_flight: int) -> list[dict[str, Any]]:
    """Every row of a paged Overseerr list (``take``/``skip``), pages fetched ``in_flight`` at a time."""
    params = {"take": page_size, "skip": 0, "sort": "added"}
    if path == "/request":
        params["filter"] = "all"
    first = await c.get_json(path, params)
    rows = list(first.get("results") or [])
    pages = int((first.get("pageInfo") or {}).get("pages") or 1)
    if pages <= 1:
        return rows
    limit = asyncio.Semaphore(in_flight)

    async def page(n: int) -> list[dict[str, Any]]:
        async with limit:
            body = await c.get_json(path, {**params, "skip": n * page_size})
            return list(body.get("results") or [])

    for chunk in await asyncio.gather(*(page(n) for n in range(1, pages))):
        rows.extend(chunk)
    # Rows added while paging shift later pages (newest first): drop the duplicates that causes.
    seen: set[int] = set()
    unique = []
    for row in rows:
        if row.get("id") not in seen:
            seen.add(row.get("id"))
            unique.append(row)
    return unique


async def _catalogue(ctx: PluginContext, config: OverseerrConfig) -> Catalogue:
    """The run's catalogue (fetched once, failures cached too); raises ServiceError."""

    async def fetch() -> Catalogue:
        async with _client(config) as c:
            media, requests = await asyncio.gather(
                _paged(c, "/media", config.page_size, config.pages_in_flight),
                _paged(c, "/request", config.page_size, config.pages_in_flight),
            )
        return Catalogue(media, requests)

    return await once_per_run(ctx, f"{PLUGIN}:catalogue", fetch)


def _username(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    return user.get("plexUsername") or user.get("username") or user.get("displayName") or user.get("email")


def _facts(catalogue: Catalogue, media: dict[str, Any]) -> dict[str, Any]:
    requests = catalogue.requests.get(media["id"], [])
    facts: dict[str, Any] = {
        "overseerr.media_status": MEDIA_STATUS.get(media.get("status"), str(media.get("status"))),
        "overseerr.request_count": len(requests),
    }
    if requests:
        newest = max(requests, key=lambda r: (epoch(r.get("createdAt")) or 0, r.get("id") or 0))
        facts["overseerr.requested_by"] = _username(newest.get("requestedBy"))
        facts["overseerr.request_status"] = REQUEST_STATUS.get(newest.get("status"), str(newest.get("status")))
        facts["overseerr.requested_at"] = epoch(newest.get("createdAt"))
    return facts


@hookimpl
async def smartplexd_enrich(items: list[MediaItem], ctx: PluginContext) -> EnrichResult | None:
    config = _config(ctx)
    if config is None:
        return None
    try:
        catalogue = await _catalogue(ctx, config)
    except ServiceError as exc:
        return EnrichResult(PLUGIN, complete=False, error=str(exc))
    batch_shows = matching.batch_show_guids(items)
    facts: dict[int, dict[str, Any]] = {}
    for item in items:
        media = catalogue.find(item, matching.guids_for(item, ctx, batch_shows))
        if media is not None:
            facts[item.id] = _facts(catalogue, media)
    return EnrichResult(PLUGIN, facts)


# ---------------------------------------------------------------------------------------- cascade


@hookimpl
async def smartplexd_cascade_targets(item: MediaItem, facts: dict[str, Any], ctx: PluginContext) -> list[CascadeTarget]:
    """One step for a movie or show Overseerr knows (requests are per movie or show, so deleting a
    season or an episode leaves them alone). Raises ServiceError when Overseerr cannot be asked: the
    intent must not be written without knowing which requests would be left to re-download the item.

    Only a deletion touches Overseerr: an ``unmonitor`` action keeps the files, so the item must still read
    as available there (resetting it would invite a request for something that is still in the library)."""
    config = _config(ctx)
    if config is None or item.type not in ("movie", "show") or ctx.rule_action not in (None, "delete"):
        return []
    catalogue = await _catalogue(ctx, config)
    media = catalogue.find(item, matching.guids_for(item, ctx, {}))
    if media is None:
        return []
    requests = [
        {
            "id": r["id"],
            "status": REQUEST_STATUS.get(r.get("status"), str(r.get("status"))),
            "user": _username(r.get("requestedBy")),
        }
        for r in catalogue.requests.get(media["id"], [])
    ]
    return [
        CascadeTarget(
            PLUGIN,
            config.name,
            ORDER,
            "clear_requests",
            {
                "media_id": media["id"],
                "media_type": media.get("mediaType"),
                "tmdb_id": media.get("tmdbId"),
                "tvdb_id": media.get("tvdbId"),
                "title": item.title,
                "requests": requests,
                "delete_statuses": list(config.delete_requests),
            },
        )
    ]


async def _gone_or_done(c: ServiceClient, method: str, path: str) -> bool:
    """Send; True when done, False when Overseerr answers 404 (already gone)."""
    try:
        await c.request(method, path)
    except ServiceError as exc:
        if exc.not_found:
            return False
        raise
    return True


@hookimpl
async def smartplexd_cascade_step(item: MediaItem, target: CascadeTarget, ctx: PluginContext) -> StepResult | None:
    if target.plugin != PLUGIN:
        return None
    config = _config(ctx)
    if config is None:
        return StepResult(StepStatus.FAILED, "overseerr is no longer configured", retryable=False)
    data = target.data
    statuses = set(data.get("delete_statuses") or config.delete_requests)
    delete = [r for r in data.get("requests") or [] if r["status"] in statuses]
    keep = [r for r in data.get("requests") or [] if r["status"] not in statuses]
    changed = 0
    try:
        async with _client(config) as c:
            for request in delete:
                changed += await _gone_or_done(c, "DELETE", f"/request/{request['id']}")
            if keep:
                # Deleting the media row would cascade to the kept requests; reset its status instead.
                changed += await _gone_or_done(c, "POST", f"/media/{data['media_id']}/unknown")
                cleared = "reset the media status to unknown"
            else:
                changed += await _gone_or_done(c, "DELETE", f"/media/{data['media_id']}")
                cleared = "cleared the media entry"
    except ServiceError as exc:
        return StepResult(StepStatus.FAILED, str(exc), retryable=exc.retryable, details={"status": exc.status})
    kept = f", kept {len(keep)} ({', '.join(sorted({r['status'] for r in keep}))})" if keep else ""
    message = f"{data.get('title')}: deleted {len(delete)} request(s){kept}, {cleared}"
    return StepResult(
        StepStatus.DONE,
        message if changed else f"{data.get('title')}: Overseerr no longer had its requests or media entry",
        already_gone=not changed,
        details={"deleted_requests": [r["id"] for r in delete], "kept_requests": [r["id"] for r in keep]},
    )


# ----------------------------------------------------------------------------------------- health


@hookimpl
async def smartplexd_health(ctx: PluginContext) -> list[HealthResult]:
    """``/api/v1/status`` (public: reachability, version, latency), then one authenticated request
    (Overseerr answers a bad key with 403)."""
    config = _config(ctx)
    if config is None:
        return []
    async with _client(config) as c:
        try:
            status, latency = await c.timed("GET", "/status")
            await c.timed("GET", "/request", {"take": 1, "skip": 0})
        except ServiceError as exc:
            return [HealthResult(config.name, PLUGIN, exc.health, error=str(exc))]
    return [
        HealthResult(
            config.name, PLUGIN, Health.OK, version=(status or {}).get("version"), latency_ms=round(latency, 1)
        )
    ]


# ---------------------------------------------------------------------------------------- webhook

_REQUESTED = {"MEDIA_PENDING", "MEDIA_AUTO_APPROVED", "MEDIA_AUTO_REQUESTED"}


@hookimpl
def smartplexd_webhook(source: str, payload: dict[str, Any], ctx: PluginContext) -> list[WebhookEvent] | None:
    """The webhook agent's default template: a new request (pending or auto-approved) = request.created,
    MEDIA_AVAILABLE = item.added, TEST_NOTIFICATION = test; others (approved, declined, issues) unknown.
    Every templated value arrives as a string; empty and unfilled ones are None."""
    if not webhook_source_is(source, PLUGIN, ctx):
        return None
    kind = str(payload.get("notification_type") or "")
    media = payload.get("media") if isinstance(payload.get("media"), dict) else {}
    request = payload.get("request") if isinstance(payload.get("request"), dict) else {}
    if kind == "TEST_NOTIFICATION":
        etype = "test"
    elif kind in _REQUESTED:
        etype = "request.created"
    elif kind == "MEDIA_AVAILABLE":
        etype = "item.added"
    else:
        etype = "unknown"
    return [
        WebhookEvent(
            etype,
            PLUGIN,
            tmdb_id=int_or_none(media.get("tmdbId")),
            tvdb_id=int_or_none(media.get("tvdbId")),
            user=str_or_none(request.get("requestedBy_username")),
            details={
                "notification_type": kind,
                "event": str_or_none(payload.get("event")),
                "subject": str_or_none(payload.get("subject")),
                "media_type": str_or_none(media.get("media_type")),
                "media_status": str_or_none(media.get("status")),
                "request_id": int_or_none(request.get("request_id")),
            },
        )
    ]
