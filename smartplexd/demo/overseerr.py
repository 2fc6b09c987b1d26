"""A simulated Overseerr (API v1) rendering the requests of a :class:`~smartplexd.demo.universe.Universe`.

Every universe item with a ``request`` becomes one Overseerr ``Media`` row (``ratingKey`` = its Plex rating
key, ``tmdbId``/``tvdbId`` from the universe) and one ``MediaRequest`` with the same id as the universe
request. Shapes, defaults and status codes follow ``tests/contracts/overseerr.md``:

- auth is the ``X-Api-Key`` header; a bad or missing key answers **403**
  ``{"status": 403, "error": "You do not have permission to access this endpoint"}``;
  ``GET /api/v1/status`` and ``/api/v1/settings/public`` need no key;
- other errors are ``{"message": "..."}`` (``DELETE /request/{id}`` of an unknown id → 404
  ``{"message": "Request not found."}``, ``DELETE /media/{id}`` → 404 ``{"message": "Media not found"}``);
- lists are paged with ``take``/``skip`` and answer
  ``{"pageInfo": {pages, pageSize, results, page}, "results": [...]}``.

Request status 5 (COMPLETED) and media status 6 (DELETED) are Jellyseerr additions the universe uses; the
default ``filter=all`` includes status-5 requests and ``filter=completed`` selects only them. Clients that
know only statuses 1-3 (python-overseerr 0.8) should ask with ``filter=pending`` or ``filter=approved``.

Tests and the demo inspect and change the state through ``app[OVERSEERR_STATE]`` (Python) or, from another
process, through routes that need no key and ignore faults::

    GET  /_sim/overseerr/requests     every request, as the API renders it
    POST /_sim/overseerr/requests     {"rating_key": 1001, "user": "alice", "status": 1} → the new request
    GET  /_sim/overseerr/deletions    [{"kind": "request"|"media", "id": .., "rating_key": .., ...}, ...]

Run one on its own: ``python -m smartplexd.demo.overseerr --port 5055 --movies 200 --seed 1``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from smartplexd.demo import faults as faults_mod
from smartplexd.demo.universe import DAY, USERS, Movie, Show, Universe

DEFAULT_API_KEY = "demo-overseerr-key"
VERSION = "1.33.2"
COMMIT_TAG = "a98f36563e420cf0eed51d5028e608b5fbdfdce8"

# MediaRequestStatus
PENDING, APPROVED, DECLINED, FAILED, COMPLETED = 1, 2, 3, 4, 5
# MediaStatus
M_UNKNOWN, M_PENDING, M_PROCESSING, M_PARTIAL, M_AVAILABLE, M_DELETED = 1, 2, 3, 4, 5, 6

_REQUEST_FILTERS: dict[str, tuple[set[int], set[int] | None]] = {
    # filter → (request statuses, media statuses or None for any); SRC routes/request.ts
    "approved": ({APPROVED}, None),
    "processing": ({APPROVED}, {M_UNKNOWN, M_PENDING, M_PROCESSING, M_PARTIAL}),
    "available": ({APPROVED, COMPLETED}, {M_AVAILABLE}),
    "pending": ({PENDING}, None),
    "unavailable": ({PENDING, APPROVED}, {M_UNKNOWN, M_PENDING, M_PROCESSING, M_PARTIAL}),
    "failed": ({FAILED}, None),
    "completed": ({COMPLETED}, None),
    "declined": ({DECLINED}, None),
}
_ALL_REQUESTS = {PENDING, APPROVED, DECLINED, FAILED, COMPLETED}

_MEDIA_FILTERS: dict[str, set[int]] = {
    "available": {M_AVAILABLE},
    "partial": {M_PARTIAL},
    "allavailable": {M_PARTIAL, M_AVAILABLE},
    "processing": {M_PROCESSING},
    "pending": {M_PENDING},
}

_MEDIA_STATUS_NAMES = {
    "unknown": M_UNKNOWN,
    "pending": M_PENDING,
    "processing": M_PROCESSING,
    "partial": M_PARTIAL,
    "available": M_AVAILABLE,
    "deleted": M_DELETED,
}

# What Overseerr would show for an item that Plex already holds, given the request's fate.
_MEDIA_STATUS_FOR_REQUEST = {
    PENDING: M_PENDING,
    APPROVED: M_AVAILABLE,
    DECLINED: M_UNKNOWN,
    FAILED: M_PROCESSING,
    COMPLETED: M_AVAILABLE,
}


def iso(epoch: int) -> str:
    """Overseerr's date format: ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class OMedia:
    id: int
    media_type: str  # "movie" | "tv"
    tmdb_id: int
    tvdb_id: int | None
    imdb_id: str | None
    status: int
    created_at: int
    updated_at: int
    media_added_at: int
    rating_key: str
    external_service_id: int | None
    external_service_slug: str | None
    season_numbers: list[int] = field(default_factory=list)


@dataclass
class ORequest:
    id: int
    status: int
    type: str
    media_id: int
    user_id: int
    created_at: int
    updated_at: int
    season_numbers: list[int] = field(default_factory=list)
    is4k: bool = False


@dataclass
class OUser:
    id: int
    name: str
    plex_id: int
    created_at: int


class NotFound(LookupError):
    """The id names no row (the API answers 404)."""


class OverseerrState:
    """The rows one simulated Overseerr holds, with the operations the API and tests perform on them."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self.now = universe.now
        # plexId = the simulated Plex's account id, so a user is one number in every simulated service.
        self.users: dict[int, OUser] = {
            i: OUser(i, name, i, universe.now - 900 * DAY) for i, name in enumerate(USERS, start=1)
        }
        self.user_ids = {u.name: u.id for u in self.users.values()}
        self.media: dict[int, OMedia] = {}
        self.requests: dict[int, ORequest] = {}
        self.deletions: list[dict[str, Any]] = []
        self._media_by_key: dict[str, int] = {}
        self._items: dict[int, Movie | Show] = {}
        self._next_media_id = 1
        self._next_request_id = 1
        self._external_ids = _external_ids(universe)

        for movie in universe.movies:
            self._items[movie.rating_key] = movie
        for show in universe.shows:
            self._items[show.rating_key] = show
        for item in [*universe.movies, *universe.shows]:
            if item.request is not None:
                r = item.request
                self._add(item, self.user_ids[r.user], r.status, r.created_at, request_id=r.id)

    # --- mutations -------------------------------------------------------------------------------------

    def _media_for(self, item: Movie | Show, status: int, created_at: int) -> OMedia:
        key = str(item.rating_key)
        if key in self._media_by_key:
            return self.media[self._media_by_key[key]]
        is_movie = isinstance(item, Movie)
        instance = item.radarr if isinstance(item, Movie) else item.sonarr
        media = OMedia(
            id=self._next_media_id,
            media_type="movie" if is_movie else "tv",
            tmdb_id=item.tmdb,
            tvdb_id=None if isinstance(item, Movie) else item.tvdb,
            imdb_id=item.imdb if is_movie else None,
            status=status,
            created_at=created_at,
            updated_at=max(created_at, item.added_at),
            media_added_at=item.added_at,
            rating_key=key,
            external_service_id=self._external_ids.get(item.rating_key) if instance else None,
            external_service_slug=(str(item.tmdb) if is_movie else _slug(item.title)) if instance else None,
            season_numbers=[] if isinstance(item, Movie) else [s.index for s in item.seasons],
        )
        self.media[media.id] = media
        self._media_by_key[key] = media.id
        self._next_media_id += 1
        return media

    def _add(
        self, item: Movie | Show, user_id: int, status: int, created_at: int, request_id: int | None = None
    ) -> ORequest:
        media = self._media_for(item, _MEDIA_STATUS_FOR_REQUEST[status], created_at)
        rid = request_id if request_id is not None else self._next_request_id
        self._next_request_id = max(self._next_request_id, rid + 1)
        request = ORequest(
            id=rid,
            status=status,
            type=media.media_type,
            media_id=media.id,
            user_id=user_id,
            created_at=created_at,
            updated_at=created_at if status == PENDING else created_at + 300,
            season_numbers=list(media.season_numbers),
        )
        self.requests[rid] = request
        return request

    def add_request(
        self, rating_key: int, user: str = "alice", status: int = PENDING, created_at: int | None = None
    ) -> ORequest:
        """Record a new request for the universe item with Plex ``rating_key`` (a movie or a show).

        Reuses the item's media row when one exists; raises :class:`NotFound` for an unknown rating key and
        ``ValueError`` for an unknown user or status.
        """
        item = self._items.get(int(rating_key))
        if item is None:
            raise NotFound(f"no movie or show with rating key {rating_key}")
        if user not in self.user_ids:
            raise ValueError(f"unknown user {user!r}; known: {', '.join(USERS)}")
        if status not in _ALL_REQUESTS:
            raise ValueError(f"request status must be 1-5, got {status}")
        return self._add(item, self.user_ids[user], status, created_at if created_at is not None else self.now)

    def delete_request(self, request_id: int) -> None:
        """Remove one request (its media row stays, as in Overseerr). Raises :class:`NotFound`."""
        request = self.requests.pop(request_id, None)
        if request is None:
            raise NotFound("Request not found.")
        media = self.media.get(request.media_id)
        self.deletions.append(
            {
                "kind": "request",
                "id": request_id,
                "media_id": request.media_id,
                "rating_key": media.rating_key if media else None,
                "tmdb_id": media.tmdb_id if media else None,
            }
        )

    def delete_media(self, media_id: int) -> None:
        """Remove a media row and, by cascade, all its requests. Raises :class:`NotFound`."""
        media = self.media.pop(media_id, None)
        if media is None:
            raise NotFound("Media not found")
        self._media_by_key.pop(media.rating_key, None)
        cascaded = sorted(r.id for r in self.requests.values() if r.media_id == media_id)
        for rid in cascaded:
            del self.requests[rid]
        self.deletions.append(
            {
                "kind": "media",
                "id": media_id,
                "media_id": media_id,
                "rating_key": media.rating_key,
                "tmdb_id": media.tmdb_id,
                "requests": cascaded,
            }
        )

    def set_media_status(self, media_id: int, status: int) -> OMedia:
        """Set a media row's status (what ``POST /media/{id}/{status}`` does). Raises :class:`NotFound`."""
        media = self.media.get(media_id)
        if media is None:
            raise NotFound("Media not found")
        media.status = status
        media.updated_at = self.now
        return media

    # --- queries ---------------------------------------------------------------------------------------

    def find_requests(
        self, filter_: str = "all", sort: str = "added", requested_by: int | None = None
    ) -> list[ORequest]:
        """Requests matching an API ``filter``, newest id first (``sort=modified``: newest update first)."""
        statuses, media_statuses = _REQUEST_FILTERS.get(filter_, (_ALL_REQUESTS, None))
        out = [
            r
            for r in self.requests.values()
            if r.status in statuses
            and (media_statuses is None or self.media[r.media_id].status in media_statuses)
            and (requested_by is None or r.user_id == requested_by)
        ]
        if sort == "modified":
            out.sort(key=lambda r: (r.updated_at, r.id), reverse=True)
        else:
            out.sort(key=lambda r: r.id, reverse=True)
        return out

    def find_media(self, filter_: str = "all", sort: str = "added") -> list[OMedia]:
        """Media rows matching an API ``filter``; ``sort`` is ``added`` | ``modified`` | ``mediaAdded``."""
        statuses = _MEDIA_FILTERS.get(filter_)
        out = [m for m in self.media.values() if statuses is None or m.status in statuses]
        if sort == "modified":
            out.sort(key=lambda m: (m.updated_at, m.id), reverse=True)
        elif sort == "mediaAdded":
            out.sort(key=lambda m: (m.media_added_at, m.id), reverse=True)
        else:
            out.sort(key=lambda m: m.id, reverse=True)
        return out

    # --- rendering -------------------------------------------------------------------------------------

    def _request_counts(self) -> dict[int, int]:
        # Counted once per change of the request set, not once per rendered request (that was quadratic).
        key = len(self.requests), self._next_request_id
        if getattr(self, "_counts_key", None) != key:
            counts: dict[int, int] = {}
            for r in self.requests.values():
                counts[r.user_id] = counts.get(r.user_id, 0) + 1
            self._counts, self._counts_key = counts, key
        return self._counts

    def user_json(self, user_id: int) -> dict[str, Any]:
        u = self.users[user_id]
        return {
            "permissions": 2 if u.id == 1 else 32,
            "id": u.id,
            "email": f"{u.name}@example.com",
            "plexUsername": u.name,
            "username": None,
            "recoveryLinkExpirationDate": None,
            "userType": 1,
            "plexId": u.plex_id,
            "avatar": f"https://plex.tv/users/{u.plex_id:x}/avatar?c=1",
            "movieQuotaLimit": None,
            "movieQuotaDays": None,
            "tvQuotaLimit": None,
            "tvQuotaDays": None,
            "createdAt": iso(u.created_at),
            "updatedAt": iso(u.created_at),
            "requestCount": self._request_counts().get(u.id, 0),
            "displayName": u.name,
        }

    def media_json(self, media: OMedia) -> dict[str, Any]:
        key = media.rating_key
        machine = self.universe.machine_identifier
        out: dict[str, Any] = {
            "downloadStatus": [],
            "downloadStatus4k": [],
            "id": media.id,
            "mediaType": media.media_type,
            "tmdbId": media.tmdb_id,
            "tvdbId": media.tvdb_id,
            "imdbId": media.imdb_id,
            "status": media.status,
            "status4k": M_UNKNOWN,
            "createdAt": iso(media.created_at),
            "updatedAt": iso(media.updated_at),
            "lastSeasonChange": iso(media.created_at),
            "mediaAddedAt": iso(media.media_added_at),
            "serviceId": 0 if media.external_service_id is not None else None,
            "serviceId4k": None,
            "externalServiceId": media.external_service_id,
            "externalServiceId4k": None,
            "externalServiceSlug": media.external_service_slug,
            "externalServiceSlug4k": None,
            "ratingKey": key,
            "ratingKey4k": None,
            "seasons": [
                {
                    "id": media.id * 100 + n,
                    "seasonNumber": n,
                    "status": media.status,
                    "status4k": M_UNKNOWN,
                    "createdAt": iso(media.created_at),
                    "updatedAt": iso(media.updated_at),
                }
                for n in media.season_numbers
            ],
        }
        if key:
            out["plexUrl"] = f"https://app.plex.tv/desktop#!/server/{machine}/details?key=%2Flibrary%2Fmetadata%2F{key}"
            out["iOSPlexUrl"] = f"plex://preplay/?metadataKey=%2Flibrary%2Fmetadata%2F{key}&server={machine}"
        return out

    def request_json(self, request: ORequest) -> dict[str, Any]:
        requested_by = self.user_json(request.user_id)
        return {
            "id": request.id,
            "status": request.status,
            "createdAt": iso(request.created_at),
            "updatedAt": iso(request.updated_at),
            "type": request.type,
            "is4k": request.is4k,
            "serverId": None if request.status == PENDING else 0,
            "profileId": None if request.status == PENDING else 4,
            "rootFolder": None if request.status == PENDING else ("/movies" if request.type == "movie" else "/tv"),
            "languageProfileId": None,
            "tags": None if request.status == PENDING else [],
            "isAutoRequest": False,
            "media": self.media_json(self.media[request.media_id]),
            "seasons": [
                {
                    "id": request.id * 100 + n,
                    "seasonNumber": n,
                    "status": request.status,
                    "createdAt": iso(request.created_at),
                    "updatedAt": iso(request.updated_at),
                }
                for n in request.season_numbers
            ],
            "modifiedBy": None if request.status == PENDING else self.user_json(1),
            "requestedBy": requested_by,
            "seasonCount": len(request.season_numbers),
        }

    def request_count(self) -> dict[str, int]:
        rs = list(self.requests.values())

        def available(r: ORequest) -> bool:
            return self.media[r.media_id].status == M_AVAILABLE

        return {
            "total": len(rs),
            "movie": sum(1 for r in rs if r.type == "movie"),
            "tv": sum(1 for r in rs if r.type == "tv"),
            "pending": sum(1 for r in rs if r.status == PENDING),
            "approved": sum(1 for r in rs if r.status == APPROVED),
            "declined": sum(1 for r in rs if r.status == DECLINED),
            "processing": sum(1 for r in rs if r.status == APPROVED and not available(r)),
            "available": sum(1 for r in rs if r.status == APPROVED and available(r)),
        }


def _slug(title: str) -> str:
    return "-".join(title.lower().split())


def _external_ids(universe: Universe) -> dict[int, int]:
    """Radarr movie id / Sonarr series id per Plex rating key: 1-based position within its instance."""
    out: dict[int, int] = {}
    counters: dict[str, int] = {}
    for movie in universe.movies:
        if movie.radarr:
            counters[movie.radarr] = counters.get(movie.radarr, 0) + 1
            out[movie.rating_key] = counters[movie.radarr]
    for show in universe.shows:
        if show.sonarr:
            counters[show.sonarr] = counters.get(show.sonarr, 0) + 1
            out[show.rating_key] = counters[show.sonarr]
    return out


OVERSEERR_STATE = web.AppKey("overseerr_state", OverseerrState)
_API_KEY = web.AppKey("overseerr_api_key", str)

_JSON = "application/json"
_PUBLIC_PATHS = {"/api/v1/status", "/api/v1/settings/public"}
_FORBIDDEN = {"status": 403, "error": "You do not have permission to access this endpoint"}


def _message(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/api/v1/") and request.path not in _PUBLIC_PATHS:
        faults = request.app[faults_mod.FAULTS]
        if faults.revoke_auth or request.headers.get("X-Api-Key") != request.app[_API_KEY]:
            return web.json_response(_FORBIDDEN, status=403)
    return await handler(request)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"message": f"{name} must be a number"}), content_type=_JSON) from None
    if value < 0 or (name == "take" and value == 0):
        raise web.HTTPBadRequest(text=json.dumps({"message": f"{name} must be positive"}), content_type=_JSON)
    return value


def _page(rows: list[Any], take: int, skip: int) -> tuple[dict[str, int], list[Any]]:
    total = len(rows)
    info = {
        "pages": math.ceil(total / take),
        "pageSize": take,
        "results": total,
        "page": math.ceil(skip / take) + 1,
    }
    return info, rows[skip : skip + take]


async def _status(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "version": VERSION,
            "commitTag": COMMIT_TAG,
            "updateAvailable": False,
            "commitsBehind": 0,
            "restartRequired": False,
        }
    )


async def _settings_public(request: web.Request) -> web.Response:
    return web.json_response({"initialized": True, "applicationTitle": "Overseerr", "localLogin": True})


async def _settings_about(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    return web.json_response(
        {
            "version": VERSION,
            "totalRequests": len(state.requests),
            "totalMediaItems": len(state.media),
            "tz": "Etc/UTC",
            "appDataPath": "/app/config",
        }
    )


async def _list_requests(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    take = _int_param(request, "take", 10)
    skip = _int_param(request, "skip", 0)
    requested_by = request.query.get("requestedBy")
    rows = state.find_requests(
        request.query.get("filter", "all"),
        request.query.get("sort", "added"),
        int(requested_by) if requested_by and requested_by.isdigit() else None,
    )
    info, page = _page(rows, take, skip)
    return web.json_response({"pageInfo": info, "results": [state.request_json(r) for r in page]})


async def _request_count(request: web.Request) -> web.Response:
    return web.json_response(request.app[OVERSEERR_STATE].request_count())


def _id(request: web.Request, name: str) -> int | None:
    raw = request.match_info[name]
    return int(raw) if raw.isdigit() else None


async def _get_request(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    rid = _id(request, "request_id")
    if rid is None or rid not in state.requests:
        return _message(404, "Request not found.")
    return web.json_response(state.request_json(state.requests[rid]))


async def _delete_request(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    rid = _id(request, "request_id")
    try:
        if rid is None:
            raise NotFound("Request not found.")
        state.delete_request(rid)
    except NotFound as exc:
        return _message(404, str(exc))
    return web.Response(status=204)


async def _list_media(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    take = _int_param(request, "take", 20)
    skip = _int_param(request, "skip", 0)
    rows = state.find_media(request.query.get("filter", "all"), request.query.get("sort", "added"))
    info, page = _page(rows, take, skip)
    return web.json_response({"pageInfo": info, "results": [state.media_json(m) for m in page]})


async def _delete_media(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    mid = _id(request, "media_id")
    try:
        if mid is None:
            raise NotFound("Media not found")
        state.delete_media(mid)
    except NotFound as exc:
        return _message(404, str(exc))
    return web.Response(status=204)


async def _set_media_status(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    mid = _id(request, "media_id")
    status = _MEDIA_STATUS_NAMES.get(request.match_info["status"])
    if status is None:
        return _message(400, "Invalid status")
    try:
        if mid is None:
            raise NotFound("Media not found")
        media = state.set_media_status(mid, status)
    except NotFound as exc:
        return _message(404, str(exc))
    return web.json_response(state.media_json(media))


async def _list_users(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    take = _int_param(request, "take", 10)
    skip = _int_param(request, "skip", 0)
    users = sorted(state.users)
    info, page = _page(users, take, skip)
    return web.json_response({"pageInfo": info, "results": [state.user_json(uid) for uid in page]})


async def _get_user(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    uid = _id(request, "user_id")
    if uid is None or uid not in state.users:
        return _message(404, "User not found.")
    return web.json_response(state.user_json(uid))


async def _sim_requests(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    return web.json_response([state.request_json(r) for r in state.find_requests("all")])


async def _sim_add_request(request: web.Request) -> web.Response:
    state = request.app[OVERSEERR_STATE]
    try:
        body = await request.json()
        created = state.add_request(
            int(body["rating_key"]),
            user=str(body.get("user", "alice")),
            status=int(body.get("status", PENDING)),
            created_at=int(body["created_at"]) if "created_at" in body else None,
        )
    except NotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"expected {{rating_key, user?, status?}}: {exc}"}, status=400)
    return web.json_response(state.request_json(created), status=201)


async def _sim_deletions(request: web.Request) -> web.Response:
    return web.json_response(request.app[OVERSEERR_STATE].deletions)


def create_app(
    universe: Universe, *, api_key: str = DEFAULT_API_KEY, faults: faults_mod.Faults | None = None
) -> web.Application:
    """Build the simulated Overseerr for ``universe``; its state is ``app[OVERSEERR_STATE]``."""
    app = web.Application()
    faults_mod.install(app, faults)
    # After the fault middleware, so a service that is down or failing answers that before checking keys.
    app.middlewares.append(_auth_middleware)
    app[OVERSEERR_STATE] = OverseerrState(universe)
    app[_API_KEY] = api_key
    r = app.router
    r.add_get("/api/v1/status", _status)
    r.add_get("/api/v1/settings/public", _settings_public)
    r.add_get("/api/v1/settings/about", _settings_about)
    r.add_get("/api/v1/request", _list_requests)
    r.add_get("/api/v1/request/count", _request_count)
    r.add_get("/api/v1/request/{request_id}", _get_request)
    r.add_delete("/api/v1/request/{request_id}", _delete_request)
    r.add_get("/api/v1/media", _list_media)
    r.add_delete("/api/v1/media/{media_id}", _delete_media)
    r.add_post("/api/v1/media/{media_id}/{status}", _set_media_status)
    r.add_get("/api/v1/user", _list_users)
    r.add_get("/api/v1/user/{user_id}", _get_user)
    r.add_get("/_sim/overseerr/requests", _sim_requests)
    r.add_post("/_sim/overseerr/requests", _sim_add_request)
    r.add_get("/_sim/overseerr/deletions", _sim_deletions)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated Overseerr on 127.0.0.1 until interrupted."""
    from smartplexd.demo.universe import generate

    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.overseerr", description=main.__doc__)
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--movies", type=int, default=200)
    parser.add_argument("--shows", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    universe = generate(seed=args.seed, movies=args.movies, shows=args.shows)
    app = create_app(universe, api_key=args.api_key)
    print(f"simulated Overseerr on http://127.0.0.1:{args.port} (X-Api-Key: {args.api_key})", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
