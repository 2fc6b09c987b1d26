"""The admin API of ARCHITECTURE §7 (``/api/...``), bearer tokens with roles.

Roles (``server.tokens``): ``viewer`` reads; ``requester`` also files deletion requests; ``admin`` does
everything. A missing or unknown token is 401, a known token without the role 403. Every write is recorded
in the audit log with actor ``api:<token name>``. Handlers validate their input and call the same functions
the CLI calls (:mod:`smartplexd.rules.planner`, :mod:`smartplexd.deletion`, :mod:`smartplexd.plex.sync`,
:mod:`smartplexd.assistant`); blocking work runs in a thread with its own store.

``POST /api/sync`` is rate limited per token (``server.sync_rate_limit_per_hour``, sliding hour): every
authorized request counts, whatever its answer; past the limit → 429 with ``Retry-After`` (seconds).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import deque
from dataclasses import asdict, is_dataclass
from typing import Any

from aiohttp import web

from smartplexd import audit
from smartplexd.errors import Refused, SmartplexdError, UsageError
from smartplexd.store.db import Store
from smartplexd.store.locks import LockHeld
from smartplexd.web import CONFIG, DAEMON
from smartplexd.web.auth import Caller, bearer_caller

DELETION_STATUSES = ("pending", "running", "done", "partial", "failed", "skipped")
MAX_LIST = 1000

RATE_HITS = web.AppKey("sync_rate_hits", dict)  # token name -> deque of request times (POST /api/sync)


class ApiError(web.HTTPException):
    """An error answer with a JSON body ``{"error": message, ...}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        self.status_code = status
        super().__init__(
            text=json.dumps({"error": message, **extra}, default=str),
            content_type="application/json",
            headers=headers,
        )


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, default=_jsonable))


def require(request: web.Request, role: str) -> Caller:
    """The caller, if its token has ``role`` (or a stronger one); else 401/403."""
    tokens = request.app[CONFIG].server.tokens
    caller = bearer_caller(request.headers.get("Authorization"), tokens)
    if caller is None:
        hint = "" if tokens else " (no API tokens are configured: server.tokens)"
        raise ApiError(
            401,
            f"missing or invalid bearer token{hint}",
            headers={"WWW-Authenticate": 'Bearer realm="smartplexd"'},
        )
    if not caller.can(role):
        raise ApiError(403, f"token {caller.name!r} has role {caller.role}; this needs {role}")
    return caller


async def _body(request: web.Request, required: bool = False) -> dict[str, Any]:
    """The JSON object in the request body ({} when there is none and it is optional)."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object body is required")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _int_param(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not 0 < number < 2**63:
        raise ApiError(400, f"{name} must be a positive integer")
    return number


def _decode(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if isinstance(row.get(key), str):
            with contextlib.suppress(ValueError):
                row[key] = json.loads(row[key])
    return row


async def _audit(request: web.Request, caller: Caller, action: str, target: str | None, details: dict) -> None:
    await request.app[DAEMON].db_call(lambda store: audit.record(store, caller.actor, action, target, details))


# --- reads ---------------------------------------------------------------------------------------------


async def integrations_health(request: web.Request) -> web.Response:
    """``GET /api/integrations/health``: the last health check of every integration."""
    require(request, "viewer")
    rows = await request.app[DAEMON].db_call(
        lambda store: store.query(
            "SELECT name, plugin, status, version, latency_ms, checked_at, error, details "
            "FROM integration_health ORDER BY name"
        )
    )
    return _json({"integrations": [_decode(r, "details") for r in rows]})


async def deletions(request: web.Request) -> web.Response:
    """``GET /api/deletions?status=&limit=``: newest first, with their cascade steps."""
    require(request, "viewer")
    status = request.query.get("status") or None
    if status is not None and status not in DELETION_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(DELETION_STATUSES)}")
    limit = _int_param(request.query.get("limit", "100"), "limit")
    limit = min(limit, MAX_LIST)
    from smartplexd.deletion import history_summaries

    rows = await request.app[DAEMON].db_call(lambda store: history_summaries(store, status, limit))
    return _json({"deletions": rows})


def plan_document(store: Store, plan_id: int) -> dict[str, Any] | None:
    """A plan with its items (and each item's title, server and rating key), as the API returns it."""
    plan = store.query_one("SELECT * FROM plans WHERE id = ?", (plan_id,))
    if plan is None:
        return None
    _decode(plan, "rules", "unknown_sources", "summary")
    items = store.query(
        "SELECT p.id, p.item_id, p.rule, p.action, p.status, p.reasons, p.skip_reason, p.bytes, p.rank, "
        "m.server, m.rating_key, m.title, m.type, m.year FROM plan_items p "
        "LEFT JOIN media_items m ON m.id = p.item_id WHERE p.plan_id = ? ORDER BY p.rank IS NULL, p.rank, p.id",
        (plan_id,),
    )
    plan["items"] = [_decode(i, "reasons") for i in items]
    return plan


async def plan_get(request: web.Request) -> web.Response:
    """``GET /api/plans/{id}``."""
    require(request, "viewer")
    plan_id = _int_param(request.match_info["id"], "plan id")
    plan = await request.app[DAEMON].db_call(lambda store: plan_document(store, plan_id))
    if plan is None:
        raise ApiError(404, f"no plan {plan_id}")
    return _json(plan)


# --- writes --------------------------------------------------------------------------------------------


def _rate_limit(request: web.Request, caller: Caller) -> None:
    limit = request.app[CONFIG].server.sync_rate_limit_per_hour
    now = time.monotonic()
    hits: deque[float] = request.app[RATE_HITS].setdefault(caller.name, deque())
    while hits and hits[0] <= now - 3600:
        hits.popleft()
    if len(hits) >= limit:
        retry_after = max(1, math.ceil(hits[0] + 3600 - now))
        raise ApiError(
            429,
            f"sync rate limit reached: {limit} per hour for token {caller.name!r}",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )
    hits.append(now)


async def sync(request: web.Request) -> web.Response:
    """``POST /api/sync`` ``{"server": name}`` (optional; default every server): start in the background."""
    caller = require(request, "admin")
    body = await _body(request)
    config = request.app[CONFIG]
    daemon = request.app[DAEMON]
    names = [s.name for s in config.plex.servers]
    wanted = body.get("server")
    if wanted is not None and (not isinstance(wanted, str) or wanted not in names):
        raise ApiError(400, f"unknown server {wanted!r}; configured: {', '.join(names) or '(none)'}")
    servers = [wanted] if wanted else names
    if not servers:
        raise ApiError(400, "no Plex servers are configured (plex.servers)")
    _rate_limit(request, caller)
    try:
        started = await daemon.start_sync(servers, actor=caller.actor)
    except LockHeld as exc:
        await _audit(request, caller, "sync.refused", ",".join(servers), {"reason": str(exc)})
        raise ApiError(409, str(exc), **exc.details) from None
    await _audit(request, caller, "sync.requested", ",".join(servers), {"syncs": started})
    first = next((s["sync_id"] for s in started if s.get("sync_id") is not None), None)
    return _json({"status": "started", "sync_id": first, "syncs": started}, status=202)


async def plan_create(request: web.Request) -> web.Response:
    """``POST /api/plans`` ``{"rules": [names], "include_requests": bool}`` (both optional): a dry-run plan."""
    caller = require(request, "admin")
    body = await _body(request)
    daemon = request.app[DAEMON]
    from smartplexd.rules.planner import make_plan

    wanted = body.get("rules")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted)):
        raise ApiError(400, "rules must be a list of rule names")
    include_requests = body.get("include_requests", False)
    if not isinstance(include_requests, bool):
        raise ApiError(400, "include_requests must be true or false")
    config, rules = daemon.config, list(daemon.rules)

    def work(store: Store) -> dict[str, Any] | None:
        plan = make_plan(
            config, store, rules, actor=caller.actor, rule_names=wanted or None, include_requests=include_requests
        )
        return plan_document(store, int(plan.id)) if plan.id is not None else None

    try:
        plan = await daemon.run_blocking(work)
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    except SmartplexdError as exc:
        raise ApiError(409, str(exc)) from None
    if plan is None:
        raise ApiError(409, "the planner returned no stored plan")
    await _audit(request, caller, "api.plan", str(plan["id"]), {"rules": wanted, "include_requests": include_requests})
    return _json(plan, status=201)


async def plan_apply(request: web.Request) -> web.Response:
    """``POST /api/plans/{id}/apply`` ``{"confirm": "DELETE"}``."""
    caller = require(request, "admin")
    plan_id = _int_param(request.match_info["id"], "plan id")
    body = await _body(request)
    if body.get("confirm") != "DELETE":
        raise ApiError(400, 'applying a plan deletes media: send {"confirm": "DELETE"} to confirm')
    daemon = request.app[DAEMON]
    exists = await daemon.db_call(lambda store: store.query_one("SELECT id FROM plans WHERE id = ?", (plan_id,)))
    if exists is None:
        raise ApiError(404, f"no plan {plan_id}")
    from smartplexd.deletion import apply_plan

    config = daemon.config
    try:
        result = await daemon.run_blocking(
            lambda store: apply_plan(config, store, plan_id, actor=caller.actor, confirm="DELETE")
        )
    except Refused as exc:
        await _audit(request, caller, "api.apply.refused", str(plan_id), {"reason": str(exc)})
        raise ApiError(403, str(exc)) from None
    except LockHeld as exc:
        raise ApiError(409, str(exc)) from None
    except SmartplexdError as exc:
        await _audit(request, caller, "api.apply.failed", str(plan_id), {"reason": str(exc)})
        raise ApiError(409, str(exc)) from None
    await _audit(request, caller, "api.apply", str(plan_id), {})
    return _json({"plan_id": plan_id, "result": result})


async def deletion_retry(request: web.Request) -> web.Response:
    """``POST /api/deletions/{id}/retry``: run the failed steps of one deletion again now."""
    caller = require(request, "admin")
    deletion_id = _int_param(request.match_info["id"], "deletion id")
    daemon = request.app[DAEMON]
    row = await daemon.db_call(
        lambda store: store.query_one("SELECT id, status FROM deletion_events WHERE id = ?", (deletion_id,))
    )
    if row is None:
        raise ApiError(404, f"no deletion {deletion_id}")
    from smartplexd.deletion import retry

    config = daemon.config
    try:
        result = await daemon.run_blocking(lambda store: retry(config, store, deletion_id, actor=caller.actor))
    except (Refused, LockHeld, SmartplexdError) as exc:
        raise ApiError(409, str(exc)) from None
    await _audit(request, caller, "api.retry", str(deletion_id), {})
    return _json({"deletion_id": deletion_id, "result": result})


def file_request(
    store: Store, server: str, rating_key: str, reason: str | None, actor: str
) -> tuple[dict[str, Any], bool] | None:
    """File (or find the open) deletion request for an item; None when the item is not mirrored."""
    item = store.query_one(
        "SELECT id, title FROM media_items WHERE server = ? AND rating_key = ? AND deleted_at IS NULL",
        (server, rating_key),
    )
    if item is None:
        return None
    with store.transaction():
        existing = store.query_one(
            "SELECT * FROM deletion_requests WHERE item_id = ? AND status = 'open'", (item["id"],)
        )
        if existing is not None:
            return existing, False
        cur = store.execute(
            "INSERT INTO deletion_requests (item_id, server, rating_key, requested_by, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (item["id"], server, rating_key, actor, reason, time.time()),
        )
        row = store.query_one("SELECT * FROM deletion_requests WHERE id = ?", (cur.lastrowid,))
        assert row is not None
        audit.record(store, actor, "request.filed", f"{server}/{rating_key}", {"title": item["title"], "id": row["id"]})
    return row, True


async def request_create(request: web.Request) -> web.Response:
    """``POST /api/requests`` ``{"rating_key": "...", "server": "home", "reason": "..."}``."""
    caller = require(request, "requester")
    body = await _body(request, required=True)
    config = request.app[CONFIG]
    rating_key = body.get("rating_key")
    if isinstance(rating_key, int) and not isinstance(rating_key, bool):
        rating_key = str(rating_key)
    if not isinstance(rating_key, str) or not rating_key.strip() or len(rating_key) > 64:
        raise ApiError(400, "rating_key (the Plex item's ratingKey) is required")
    names = [s.name for s in config.plex.servers]
    server = body.get("server")
    if server is None and len(names) == 1:
        server = names[0]
    if not isinstance(server, str) or server not in names:
        raise ApiError(400, f"server must be one of: {', '.join(names) or '(none configured)'}")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        raise ApiError(400, "reason must be a string of at most 1000 characters")
    result = await request.app[DAEMON].db_call(
        lambda store: file_request(store, server, rating_key, reason, caller.actor)
    )
    if result is None:
        raise ApiError(404, f"no item {rating_key} on server {server} (run a sync first?)")
    row, created = result
    return _json(row, status=201 if created else 200)


async def ask(request: web.Request) -> web.Response:
    """``POST /api/ask`` ``{"question": "..."}``: the AI assistant (read-only tools, rule drafts)."""
    caller = require(request, "admin")
    body = await _body(request, required=True)
    question = body.get("question")
    if not isinstance(question, str) or not question.strip() or len(question) > 4000:
        raise ApiError(400, "question must be a non-empty string of at most 4000 characters")
    daemon = request.app[DAEMON]
    if daemon.config.assistant is None:
        raise ApiError(409, "the assistant is not configured (assistant: in config.yaml)")
    from smartplexd.assistant import AssistantUnavailable
    from smartplexd.assistant import ask as assistant_ask

    config = daemon.config
    try:
        answer = await daemon.run_blocking(lambda store: assistant_ask(config, store, question, actor=caller.actor))
    except AssistantUnavailable as exc:
        raise ApiError(502, str(exc)) from None
    except SmartplexdError as exc:
        raise ApiError(409, str(exc)) from None
    await _audit(request, caller, "api.ask", None, {"question": question[:200]})
    return _json({"answer": answer.to_dict() if hasattr(answer, "to_dict") else answer})


def setup(app: web.Application) -> None:
    app[RATE_HITS] = {}
    app.router.add_get("/api/integrations/health", integrations_health)
    app.router.add_get("/api/deletions", deletions)
    app.router.add_get("/api/plans/{id}", plan_get)
    app.router.add_post("/api/sync", sync)
    app.router.add_post("/api/plans", plan_create)
    app.router.add_post("/api/plans/{id}/apply", plan_apply)
    app.router.add_post("/api/deletions/{id}/retry", deletion_retry)
    app.router.add_post("/api/requests", request_create)
    app.router.add_post("/api/ask", ask)
