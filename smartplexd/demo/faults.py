"""Fault knobs shared by every simulated server, so tests can make a service slow, flaky, down or hostile.

Each simulated app installs :func:`fault_middleware` and exposes its :class:`Faults` under
``app[FAULTS]``. In-process tests set the attributes directly; tests that run the server in another
process (the daemon, ``smartplexd demo``) change them over HTTP::

    POST /_sim/faults   {"latency": 0.5, "fail_next": 3, "error_status": 503}
    GET  /_sim/faults
    GET  /_sim/requests            the request log (method, path, query, headers without secrets)

``/_sim/*`` paths never clash with a real API and are exempt from the faults themselves.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Faults:
    latency: float = 0.0
    """Seconds added before every response."""
    error_rate: float = 0.0
    """Fraction (0..1) of requests answered with ``error_status``."""
    error_status: int = 503
    fail_next: int = 0
    """The next N requests fail with ``error_status`` (then the service recovers)."""
    hang: bool = False
    """Requests never get an answer within ``hang_seconds`` (client timeouts fire)."""
    hang_seconds: float = 60.0
    down: bool = False
    """The connection is dropped without an HTTP answer, like a crashed service behind a proxy."""
    revoke_auth: bool = False
    """Every credential is rejected (token revoked / API key changed)."""
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key.startswith("_") or not hasattr(self, key):
                raise KeyError(key)
            setattr(self, key, type(getattr(self, key))(value))
        self._rng.seed(self.seed)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


FAULTS = web.AppKey("faults", Faults)
REQUEST_LOG = web.AppKey("request_log", deque)

_SECRET_HEADERS = {"x-plex-token", "x-api-key", "authorization", "cookie"}


@web.middleware
async def fault_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    faults = request.app[FAULTS]
    if request.path.startswith("/_sim/"):
        return await handler(request)
    request.app[REQUEST_LOG].append(
        {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {k: v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS},
            "header_names": sorted(k.lower() for k in request.headers),
        }
    )
    if faults.down:
        assert request.transport is not None
        request.transport.close()
        raise web.HTTPServiceUnavailable()
    if faults.hang:
        await asyncio.sleep(faults.hang_seconds)
    if faults.latency:
        await asyncio.sleep(faults.latency)
    if faults.fail_next > 0:
        faults.fail_next -= 1
        return web.Response(status=faults.error_status, text=f"simulated error {faults.error_status}")
    if faults.error_rate and faults._rng.random() < faults.error_rate:
        return web.Response(status=faults.error_status, text=f"simulated error {faults.error_status}")
    return await handler(request)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].public())


async def _set_faults(request: web.Request) -> web.Response:
    try:
        request.app[FAULTS].update(await request.json())
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"unknown or invalid fault knob: {exc}"}, status=400)
    return web.json_response(request.app[FAULTS].public())


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[REQUEST_LOG]))


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[REQUEST_LOG].clear()
    return web.json_response({})


def install(app: web.Application, faults: Faults | None = None, log_size: int = 10_000) -> Faults:
    """Add the fault middleware and the ``/_sim`` control routes to ``app``; returns its Faults."""
    faults = faults or Faults()
    app[FAULTS] = faults
    app[REQUEST_LOG] = deque(maxlen=log_size)
    app.middlewares.append(fault_middleware)
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_post("/_sim/faults", _set_faults)
    app.router.add_get("/_sim/requests", _get_requests)
    app.router.add_delete("/_sim/requests", _clear_requests)
    return faults
