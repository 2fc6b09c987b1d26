"""Talking to one Plex Media Server: paged listings over httpx, deletions and collections through plexapi.

The token travels only in the ``X-Plex-Token`` header, never in a URL, a log line or an error message.
Every request has the server's ``timeout``. Transient failures (5xx, timeouts, refused or dropped
connections) are retried with short exponential waits (:class:`RetryPolicy`); anything else is not:

* 401 → :class:`smartplexd.errors.PlexUnauthorized` (exit 5; the message says how to get a new token),
* still failing after the retries → :class:`PlexError` (exit 1; the message names the server and the path),
* a delete that Plex refuses with 400/403 → :class:`PlexDeletionDisabled` (exit 4).

Listings are paged directly (``/library/sections/{id}/all`` with ``X-Plex-Container-Start/Size``, JSON):
python-plexapi builds an object per item from XML, which is several times slower than the sync's whole
database work (see ``docs/plex-sync.md`` and ``bench/bench_sync.py``). plexapi is used where its object model
helps and volume is small: deleting an item and editing collections.

A :class:`PlexClient` is safe to share between threads (httpx's connection pool is); the sync fetches
``sync.pages_in_flight`` pages at once from worker threads.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import requests
import tenacity

try:  # 2x faster than json.loads on listing pages (docs/plex-sync.md); the stdlib parser is the fallback
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a declared dependency; this keeps a broken install working
    _loads = json.loads

from smartplexd import __version__
from smartplexd.config import PlexServerConfig
from smartplexd.errors import PlexUnauthorized, Refused, SmartplexdError

log = logging.getLogger(__name__)

TYPE_IDS = {"movie": 1, "show": 2, "season": 3, "episode": 4, "collection": 18}
"""Plex's numeric ``type`` filter values for ``/library/sections/{id}/all``."""

_CLIENT_ID = f"smartplexd-{uuid.uuid5(uuid.NAMESPACE_DNS, 'smartplexd')}"
_STATUS_IN_PLEXAPI_MESSAGE = re.compile(r"^\((\d{3})\)")

T = TypeVar("T")


class PlexError(SmartplexdError):
    """Plex could not be reached or kept failing (after retries). ``status`` is the last HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class PlexDeletionDisabled(Refused):
    """Plex refused to delete media (400/403): "Allow media deletion" is off on that server."""

    def __init__(self, server: str, rating_key: str, status: int) -> None:
        self.server, self.rating_key, self.status = server, rating_key, status
        super().__init__(
            f"Plex server '{server}' refused to delete item {rating_key} ({status}): "
            "Allow media deletion is off in Plex (Settings → Server → Library → "
            '"Allow media deletion"). Turn it on, then retry the deletion.'
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient failures are retried: ``attempts`` in total, waits doubling from ``initial_wait``."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0


@dataclass(slots=True)
class Page:
    """One page of a section listing: the items plus what Plex said about the whole listing."""

    offset: int
    total: int
    items: list[dict[str, Any]]


class _Transient(Exception):
    """A failure worth retrying (5xx, timeout, connection trouble); ``status`` when Plex answered."""

    def __init__(self, what: str, status: int | None = None) -> None:
        self.what, self.status = what, status
        super().__init__(what)


def _type_id(value: str | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return TYPE_IDS[value]
    except KeyError:
        raise ValueError(f"unknown Plex item type {value!r} (one of {', '.join(TYPE_IDS)})") from None


class PlexClient:
    """A connection to one configured Plex server. Use as a context manager or call :meth:`close`."""

    def __init__(self, server: PlexServerConfig, *, retry: RetryPolicy | None = None) -> None:
        self.server = server
        self.name = server.name
        self.retry = retry or RetryPolicy()
        self._token = server.token.get_secret_value()
        self._http = httpx.Client(
            base_url=server.url,
            timeout=server.timeout,
            headers={
                "Accept": "application/json",
                "X-Plex-Token": self._token,
                "X-Plex-Product": "smartplexd",
                "X-Plex-Version": __version__,
                "X-Plex-Client-Identifier": _CLIENT_ID,
            },
        )
        self._plexapi_server: Any = None
        self._plexapi_lock = threading.Lock()

    # ---- lifecycle

    def close(self) -> None:
        self._http.close()
        if self._plexapi_server is not None:
            self._plexapi_server._session.close()

    def __enter__(self) -> PlexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with the retry policy; turn a final transient failure into :class:`PlexError`."""
        policy = self.retry

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "Plex %s: %s failed (%s); retry %d of %d",
                self.name,
                what,
                exc,
                state.attempt_number,
                policy.attempts - 1,
            )

        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Transient),
                stop=tenacity.stop_after_attempt(policy.attempts),
                wait=tenacity.wait_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    return fn()
        except _Transient as exc:
            raise PlexError(
                f"Plex server '{self.name}' ({self.server.url}) failed: {what}: {exc.what} "
                f"(gave up after {policy.attempts} attempts)",
                exc.status,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, method: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, params=params)
        except httpx.TimeoutException:
            raise _Transient(f"no answer within {self.server.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code == 401:
            raise PlexUnauthorized(self.name)
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code} {response.reason_phrase}", response.status_code)
        return response

    def _get_raw(self, path: str, params: dict[str, Any] | None = None, *, allow_404: bool = False) -> bytes | None:
        """GET ``path``: the body of a 200 (``None`` for a 404 when ``allow_404``), with the retry policy."""

        def call() -> bytes | None:
            response = self._send("GET", path, params)
            if response.status_code == 404 and allow_404:
                return None
            if response.status_code != 200:
                raise PlexError(
                    f"Plex server '{self.name}' answered {response.status_code} {response.reason_phrase} to GET {path}",
                    response.status_code,
                )
            return response.content

        return self._retrying(f"GET {path}", call)

    def _container(self, body: bytes, path: str) -> Any:
        try:
            return _loads(body)["MediaContainer"]
        except (ValueError, KeyError, TypeError):
            raise PlexError(f"Plex server '{self.name}' sent something that is not Plex JSON for GET {path}") from None

    def _get_container(self, path: str, params: dict[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        """GET ``path`` as JSON and return its ``MediaContainer`` (``None`` for a 404 when ``allow_404``)."""
        body = self._get_raw(path, params, allow_404=allow_404)
        return None if body is None else self._container(body, path)

    # ---- reading

    def identity(self) -> dict[str, Any]:
        """``/identity``: ``machineIdentifier``, ``version``, ``claimed`` (no token needed, but it is sent)."""
        return self._get_container("/identity")

    def sections(self) -> list[dict[str, Any]]:
        """The libraries (``key``, ``type``, ``title``, ``uuid``, ...), as ``/library/sections`` lists them."""
        return list(self._get_container("/library/sections").get("Directory") or [])

    def fetch_page(self, section_id: str | int, type: str | int, start: int, size: int) -> Page:
        """One page of a section listing with GUIDs; ``size=0`` asks only for the total."""
        return self.parse_page(self.fetch_page_body(section_id, type, start, size), section_id, start)

    def fetch_page_body(self, section_id: str | int, type: str | int, start: int, size: int) -> bytes:
        """The raw JSON body of :meth:`fetch_page` (the sync digests it before deciding to parse it)."""
        params = {
            "type": _type_id(type),
            "includeGuids": 1,
            "X-Plex-Container-Start": start,
            "X-Plex-Container-Size": size,
        }
        body = self._get_raw(f"/library/sections/{section_id}/all", params)
        assert body is not None  # only a 404 with allow_404 gives None
        return body

    def parse_page(self, body: bytes, section_id: str | int, start: int) -> Page:
        """A :meth:`fetch_page_body` as a :class:`Page` (:class:`PlexError` when it is not Plex JSON)."""
        container = self._container(body, f"/library/sections/{section_id}/all")
        items = container.get("Metadata") or []
        total = container.get("totalSize")
        return Page(offset=start, total=int(total if total is not None else len(items)), items=items)

    def count(self, section_id: str | int, type: str | int) -> int:
        """How many items of ``type`` the section lists now (one request, no items)."""
        return self.fetch_page(section_id, type, 0, 0).total

    def iter_section(self, section_id: str | int, type: str | int, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every item of ``type`` in a section, one page at a time (sequential; the sync pipelines pages)."""
        start = 0
        while True:
            page = self.fetch_page(section_id, type, start, page_size)
            yield from page.items
            start += len(page.items)
            if not page.items or start >= page.total:
                return

    def fetch_item(self, rating_key: str | int) -> dict[str, Any] | None:
        """The item's full metadata (with ``librarySectionID``/``Title``), or ``None`` when Plex has no such item."""
        container = self._get_container(f"/library/metadata/{rating_key}", allow_404=True)
        if container is None:
            return None
        items = container.get("Metadata") or []
        return items[0] if items else None

    def children(self, rating_key: str | int) -> list[dict[str, Any]]:
        """A show's seasons or a season's episodes ([] when the parent is gone)."""
        container = self._get_container(f"/library/metadata/{rating_key}/children", {"includeGuids": 1}, allow_404=True)
        return list((container or {}).get("Metadata") or [])

    def all_leaves(self, rating_key: str | int) -> list[dict[str, Any]]:
        """Every episode of a show ([] when the show is gone)."""
        container = self._get_container(
            f"/library/metadata/{rating_key}/allLeaves", {"includeGuids": 1}, allow_404=True
        )
        return list((container or {}).get("Metadata") or [])

    # ---- changing things (plexapi)

    def _plexapi(self) -> Any:
        """The plexapi ``PlexServer`` for this server, connected on first use (it reads ``GET /``)."""
        from plexapi.server import PlexServer

        with self._plexapi_lock:
            if self._plexapi_server is None:
                session = requests.Session()
                self._plexapi_server = self._via_plexapi(
                    "connect",
                    lambda: PlexServer(self.server.url, self._token, session=session, timeout=self.server.timeout),
                )
            return self._plexapi_server

    def _via_plexapi(self, what: str, fn: Callable[[], T]) -> T:
        """Run a plexapi call with our error mapping and retries (5xx, timeouts, connection errors)."""
        from plexapi.exceptions import BadRequest, Unauthorized

        def call() -> T:
            try:
                return fn()
            except Unauthorized:
                raise PlexUnauthorized(self.name) from None
            except BadRequest as exc:
                status = plexapi_status(exc)
                if status is not None and status >= 500:
                    raise _Transient(f"HTTP {status}", status) from None
                raise
            except requests.Timeout:
                raise _Transient(f"no answer within {self.server.timeout:g} s") from None
            except requests.ConnectionError as exc:
                raise _Transient(f"connection failed ({type(exc).__name__})") from None

        return self._retrying(what, call)

    def delete_item(self, rating_key: str | int) -> bool:
        """Delete an item and its files in Plex. ``False`` when Plex no longer has it ("already gone").

        Raises :class:`PlexDeletionDisabled` when Plex refuses (400/403: "Allow media deletion" is off).
        """
        from plexapi.exceptions import BadRequest, NotFound

        server = self._plexapi()
        key = int(rating_key)

        def delete() -> bool:
            try:
                item = server.fetchItem(key)
                item.delete()
            except NotFound:
                return False
            except BadRequest as exc:
                status = plexapi_status(exc)
                if status in (400, 403):
                    raise PlexDeletionDisabled(self.name, str(rating_key), status) from None
                raise PlexError(
                    f"Plex server '{self.name}' could not delete item {rating_key}: {exc}", status
                ) from None
            return True

        return self._via_plexapi(f"DELETE /library/metadata/{key}", delete)

    def _collection(self, section: Any, title: str) -> Any:
        from plexapi.exceptions import NotFound

        try:
            return section.collection(title)
        except NotFound:
            return None

    def _items(self, rating_keys: list[str | int]) -> list[Any]:
        server = self._plexapi()
        keys = [int(k) for k in rating_keys]
        out: list[Any] = []
        for i in range(0, len(keys), 100):  # keep URLs short: /library/metadata/1,2,3,...
            out.extend(server.fetchItems(keys[i : i + 100]))
        return out

    def add_to_collection(self, section_id: str | int, title: str, rating_keys: list[str | int]) -> int:
        """Put items (movies or shows of that section) into a regular collection, creating it when missing.

        Returns how many of ``rating_keys`` Plex still has (those were added; the rest are gone).
        """
        if not rating_keys:
            return 0
        server = self._plexapi()

        def add() -> int:
            section = server.library.sectionByID(int(section_id))
            items = self._items(rating_keys)
            if not items:
                return 0
            collection = self._collection(section, title)
            if collection is None:
                server.createCollection(title, section, items=items)
            else:
                collection.addItems(items)
            return len(items)

        return self._via_plexapi(f"add {len(rating_keys)} item(s) to collection {title!r}", add)

    def remove_from_collection(self, section_id: str | int, title: str, rating_keys: list[str | int]) -> int:
        """Take items out of a collection. Returns how many were members (0 when the collection is missing)."""
        if not rating_keys:
            return 0
        server = self._plexapi()

        def remove() -> int:
            section = server.library.sectionByID(int(section_id))
            collection = self._collection(section, title)
            if collection is None:
                return 0
            wanted = {str(k) for k in rating_keys}
            members = [item for item in collection.items() if str(item.ratingKey) in wanted]
            if members:
                collection.removeItems(members)
            return len(members)

        return self._via_plexapi(f"remove {len(rating_keys)} item(s) from collection {title!r}", remove)


def plexapi_status(exc: Exception) -> int | None:
    """The HTTP status in a plexapi exception (its message starts with ``(400) bad_request; ...``)."""
    match = _STATUS_IN_PLEXAPI_MESSAGE.match(str(exc))
    return int(match.group(1)) if match else None


def measure_identity(client: PlexClient) -> tuple[dict[str, Any], float]:
    """``identity()`` and how long it took in milliseconds (for the health row)."""
    started = time.perf_counter()
    identity = client.identity()
    return identity, (time.perf_counter() - started) * 1000
