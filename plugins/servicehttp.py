"""The HTTP client every built-in integration uses: one error type, retries only where they are safe.

:class:`ServiceClient` is a thin wrapper over ``httpx.AsyncClient`` that

- sends the API key the way the service wants it (``X-Api-Key`` header for Sonarr, Radarr and Overseerr;
  Tautulli's API only takes ``apikey`` in the query, so that plugin passes it as a default query
  parameter) and never puts a URL into an error message, so a key in a query string cannot leak into
  logs or the database;
- retries (tenacity, exponential backoff) only on timeouts and 5xx answers; a 4xx answer or a refused
  connection fails at once;
- turns every failure into :class:`ServiceError` whose message is the service's own words, e.g.
  ``radarr4k: HTTP 400: This movie has already been added``, and whose ``health`` is what it means
  for a health check (unauthorized, down or error).

:func:`once_per_run` keeps a fetched catalogue (or the failure) in ``ctx.cache`` for the rest of the run.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from smartplexd.log import mask
from smartplexd.model import Health, PluginContext

T = TypeVar("T")


class ServiceError(Exception):
    """A request to an integration failed. ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, service: str, message: str, status: int | None = None, *, timeout: bool = False) -> None:
        self.service = service
        self.status = status
        self.timeout = timeout
        self.detail = mask(message)
        where = f"HTTP {status}" if status is not None else ("timed out" if timeout else "unreachable")
        super().__init__(f"{service}: {where}: {self.detail}")

    @property
    def unauthorized(self) -> bool:
        """The service rejected our credentials (Servarr and Tautulli answer 401, Overseerr 403)."""
        return self.status in (401, 403)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def unreachable(self) -> bool:
        """No HTTP answer: connection refused or dropped, DNS failure, or a timeout."""
        return self.status is None

    @property
    def retryable(self) -> bool:
        """Worth trying again later: a timeout, no answer, or a 5xx. A 4xx will not change by itself."""
        return self.status is None or self.status >= 500 or self.status == 429

    @property
    def health(self) -> Health:
        """What this failure says about the service: unauthorized, down (no answer) or in error."""
        if self.unauthorized:
            return Health.UNAUTHORIZED
        if self.unreachable:
            return Health.DOWN
        return Health.ERROR


async def once_per_run(ctx: PluginContext, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
    """``await fetch()`` the first time ``key`` is asked for in this run (``ctx.cache``); later calls get
    the same value, or the same ServiceError raised again, so a dead service costs one timeout per run."""
    if key not in ctx.cache:
        try:
            ctx.cache[key] = await fetch()
        except ServiceError as exc:
            ctx.cache[key] = exc
    cached = ctx.cache[key]
    if isinstance(cached, ServiceError):
        raise cached
    return cached


def _retry_now(exc: BaseException) -> bool:
    # Within one call only timeouts and 5xx are retried: a refused connection means the service is down
    # and retrying inside the call only delays the error (the executor's own backoff handles that).
    return isinstance(exc, ServiceError) and (exc.timeout or (exc.status is not None and exc.status >= 500))


def service_message(response: httpx.Response) -> str:
    """The service's own explanation of a failed response, in one line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text.splitlines()[0][:300] if text else (response.reason_phrase or "no body")
    if isinstance(body, list):
        # Servarr validation failures: a list of {propertyName, errorMessage, ...}.
        parts = [str(e.get("errorMessage") or e) for e in body if isinstance(e, dict)]
        return "; ".join(parts) or str(body)[:300]
    if isinstance(body, dict):
        if isinstance(body.get("response"), dict):  # Tautulli's envelope
            return str(body["response"].get("message") or "error")
        for key in ("message", "error", "errorMessage"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300] or (response.reason_phrase or "error")


class ServiceClient:
    """An async HTTP client for one configured instance; use as ``async with ServiceClient(...) as c``."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        attempts: int = 3,
        max_connections: int = 8,
    ) -> None:
        self.service = service
        self.attempts = attempts
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            params=dict(params or {}),
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
        )
        self.requests = 0
        """Requests sent (retries included), for tests and benchmarks."""

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send one request (retried on timeouts and 5xx); return the 2xx response or raise ServiceError."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.25, max=2),
            retry=retry_if_exception(_retry_now),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._send(method, path, params, json)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity either returns or raises

    async def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any) -> httpx.Response:
        self.requests += 1
        try:
            response = await self._client.request(method, path, params=params, json=json)
        except httpx.TimeoutException:
            raise ServiceError(self.service, f"no answer within {self._client.timeout.read}s", timeout=True) from None
        except httpx.TransportError as exc:
            # str(exc) of a transport error never contains the URL, but mask it anyway.
            raise ServiceError(
                self.service, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from None
        if response.is_success:
            return response
        raise ServiceError(self.service, service_message(response), response.status_code)

    async def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = await self.request("GET", path, params=params)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(self.service, f"answered {path} with something that is not JSON", 200) from None

    async def timed(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, float]:
        """One request without retries, for health checks: ``(json or None, latency in ms)``."""
        start = time.perf_counter()
        response = await self._send(method, path, params, None)
        latency = (time.perf_counter() - start) * 1000
        try:
            return response.json(), latency
        except ValueError:
            return None, latency
