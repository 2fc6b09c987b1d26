"""The aiohttp application: routes of ARCHITECTURE §7, middlewares, shared state.

:func:`create_app` puts the daemon's shared state on the app (keys in :mod:`smartplexd.web`) and mounts
every part: webhooks, the admin API, ``/metrics`` and ``/healthz``, ``/openapi.yaml``, and the status page
and SSE stream (``smartplexd.web.status`` / ``smartplexd.web.sse``, each ``setup(app)``).

Middlewares:

- every response carries ``X-Request-Id``; an unexpected exception is logged with that id and answered
  ``500 {"error": ..., "request_id": ...}``: never a traceback on the wire (handlers are still written to
  answer 4xx for every bad input themselves: this is the last guard, not the validation);
- CORS: only origins listed in ``server.cors_origins`` get ``Access-Control-Allow-Origin`` (and
  preflights answered); any other origin gets no CORS headers, and its preflight is refused with 403.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from importlib import resources
from typing import Any

from aiohttp import web

from smartplexd.web import BUS, CONFIG, DAEMON, DB_PATH

log = logging.getLogger(__name__)

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"
CLIENT_MAX_SIZE = 1_048_576
"""Largest API request body (webhooks have their own limit, ``server.max_webhook_bytes``)."""


@web.middleware
async def request_ids(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Request-Id"] = request_id
        raise
    except Exception:
        log.exception("unexpected error in %s %s (request %s)", request.method, request.path, request_id)
        return web.json_response(
            {"error": "internal error; the daemon log has the details", "request_id": request_id},
            status=500,
            headers={"X-Request-Id": request_id},
        )
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if not origin:
        return None
    allowed = request.app[CONFIG].server.cors_origins
    return origin if origin in allowed else None


@web.middleware
async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
    origin = _allowed_origin(request)
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        if origin is None:
            return web.json_response({"error": "origin not allowed (server.cors_origins)"}, status=403)
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if origin is not None:
            exc.headers["Access-Control-Allow-Origin"] = origin
            exc.headers["Vary"] = "Origin"
        raise
    if origin is not None and not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def openapi_text() -> str:
    return (resources.files("smartplexd.web") / "openapi.yaml").read_text(encoding="utf-8")


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.yaml``: the API description."""
    return web.Response(text=openapi_text(), content_type="application/yaml")


def create_app(daemon: Any) -> web.Application:
    """The application for ``daemon`` (a :class:`smartplexd.daemon.Daemon`)."""
    from smartplexd.web import api, metrics, webhooks

    app = web.Application(middlewares=[request_ids, cors], client_max_size=CLIENT_MAX_SIZE)
    app[CONFIG] = daemon.config
    app[DB_PATH] = str(daemon.db_path)
    app[BUS] = daemon.bus
    app[DAEMON] = daemon
    webhooks.setup(app)
    api.setup(app)
    metrics.setup(app)
    app.router.add_get("/openapi.yaml", openapi)
    for module in ("smartplexd.web.status", "smartplexd.web.sse"):
        try:
            part = importlib.import_module(module)
        except ImportError as exc:
            log.warning("%s is not available (%s); its routes are not served", module, exc)
            continue
        part.setup(app)
    return app
