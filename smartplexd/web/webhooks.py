"""``POST /hooks/{source}``: authenticate, store durably, answer; processing happens later.

The order of checks is the contract of ARCHITECTURE §7:

1. unknown source → 404;
2. a declared ``Content-Length`` above ``server.max_webhook_bytes`` → 413 before reading anything, and a
   chunked body is read only up to the limit;
3. wrong or missing credentials → 401 and an audit entry (actor ``webhook:<source>``);
4. a body that is not the sender's format (JSON, or Plex's multipart with a ``payload`` field) → 400;
5. the event is written to ``webhook_events`` and committed with fsync → 202; the same ``(source,
   event_id)`` again → 200 ``duplicate`` and ignored. ``event_id`` is the Standard Webhooks
   ``webhook-id``, else the sha256 of the payload (senders without ids resend identical bodies).

Nothing is answered 2xx before its row is durable: :class:`WebhookIntake` is a group-commit writer (one
thread, one transaction per batch of concurrent webhooks, ``synchronous=FULL``), so throughput does not
cost one fsync per request. When the database cannot take the write, the sender gets 503 + Retry-After and
retries; nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger

from smartplexd import audit
from smartplexd.store.db import Store
from smartplexd.store.group_commit import take_queued
from smartplexd.web import CONFIG, DAEMON
from smartplexd.web.auth import (
    WebhookAuthError,
    hmac_key,
    verify_basic,
    verify_header,
    verify_standard_webhook,
    verify_url_token,
)

log = logging.getLogger(__name__)

BATCH_MAX = 512
"""Most webhooks committed in one transaction."""
AUTH_AUDIT_PER_MINUTE = 30
"""Failed-auth audit entries per source per minute; beyond that they are counted and logged, so a flood of
forged requests cannot grow the audit log without bound."""

RESULTS = ("accepted", "duplicate", "unauthorized", "too_large", "malformed", "unavailable")


# --- durable intake ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    source: str
    event_id: str
    event_type: str | None
    payload: str
    future: asyncio.Future[bool]


class IntakeUnavailable(Exception):
    """The database did not take the write (locked too long, disk full); the sender should retry."""


class WebhookIntake:
    """Group-commit writer of ``webhook_events``: :meth:`store` returns once the row is fsynced.

    One thread owns one connection with ``PRAGMA synchronous = FULL``. Requests arriving while a batch
    commits wait in a queue and go into the next transaction together; every caller's future resolves
    only after its transaction's COMMIT returned. ``on_stored`` is called (on the event loop) after each
    batch that added rows, to wake the processing worker.
    """

    def __init__(self, db_path: str, on_stored: Callable[[], None] | None = None) -> None:
        self.db_path = db_path
        self.on_stored = on_stored
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="webhook-intake", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    def start(self) -> WebhookIntake:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._start_error is not None:
            raise self._start_error
        return self

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    async def store(self, source: str, event_id: str, event_type: str | None, payload: str) -> bool:
        """Write one event durably; True if new, False if ``(source, event_id)`` was already stored."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put(_Pending(source, event_id, event_type, payload, future))
        return await future

    def _run(self) -> None:
        try:
            store = Store(self.db_path)
            store.execute("PRAGMA synchronous = FULL")
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, stopping = take_queued(self._queue, first, BATCH_MAX)
            self._commit(store, batch)
        store.close()

    def _commit(self, store: Store, batch: list[_Pending]) -> None:
        now = time.time()
        results: list[bool] | None = None
        error: BaseException | None = None
        try:
            with store.transaction():
                results = []
                for p in batch:
                    cur = store.execute(
                        "INSERT OR IGNORE INTO webhook_events (source, event_id, received_at, event_type, payload) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (p.source, p.event_id, now, p.event_type, p.payload),
                    )
                    results.append(cur.rowcount == 1)
        except Exception as exc:  # sqlite3.Error, OSError: the batch is not stored; every sender is told so
            log.error("could not store %d webhook(s): %s", len(batch), exc)
            error = exc
        loop = batch[0].future.get_loop()
        # RuntimeError: the loop is closed (shutdown), so nobody waits for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._resolve, batch, results, error)

    def _resolve(self, batch: list[_Pending], results: list[bool] | None, error: BaseException | None) -> None:
        for i, p in enumerate(batch):
            if p.future.done():
                continue
            if results is None:
                p.future.set_exception(IntakeUnavailable(str(error)))
            else:
                p.future.set_result(results[i])
        if results and any(results) and self.on_stored is not None:
            self.on_stored()


# --- request handling --------------------------------------------------------------------------------


class WebhookStats:
    """In-process counters for ``/metrics``: answers by source and result, since the daemon started."""

    def __init__(self) -> None:
        self.results: Counter[tuple[str, str]] = Counter()
        self._audit_window: dict[str, tuple[int, int]] = {}  # source -> (minute, entries written)

    def may_audit(self, source: str, now: float) -> bool:
        minute = int(now // 60)
        current, count = self._audit_window.get(source, (minute, 0))
        if current != minute:
            count = 0
        self._audit_window[source] = (minute, count + 1)
        return count < AUTH_AUDIT_PER_MINUTE


def _json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.read(65_536)
        except (ClientPayloadError, ConnectionResetError) as exc:
            raise MalformedWebhook(f"the body ended early: {exc}") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _too_large(limit: int) -> web.Response:
    response = _json_error(413, f"webhook body larger than {limit} bytes (server.max_webhook_bytes)")
    # The unread rest of the body makes the connection unusable for another request.
    response.force_close()
    return response


class MalformedWebhook(ValueError):
    """The body is not in the sender's format; the message says what was expected."""


def extract_payload(body: bytes, content_type: str) -> str:
    """The JSON document of a webhook body, as text.

    Plex sends ``multipart/form-data`` with the JSON in the ``payload`` field (plus an optional ``thumb``
    JPEG, ignored); everyone else sends JSON. The returned text must parse as a JSON object.
    """
    if content_type.lower().startswith("multipart/form-data"):
        head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise MalformedWebhook("multipart body without parts (bad boundary?)")
        text = None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "payload":
                raw = part.get_payload(decode=True) or b""
                text = raw.decode("utf-8", errors="strict") if isinstance(raw, bytes) else str(raw)
                break
        if text is None:
            raise MalformedWebhook("multipart body without a 'payload' field")
    elif content_type.lower().startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qs

        fields = parse_qs(body.decode("utf-8", errors="strict"))
        if "payload" not in fields:
            raise MalformedWebhook("form body without a 'payload' field")
        text = fields["payload"][0]
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedWebhook("body is not UTF-8 JSON") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MalformedWebhook(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedWebhook("the JSON body must be an object")
    return text


def event_type_of(document: dict[str, Any]) -> str | None:
    """The sender's own name for the event (Plex ``event``, *arr ``eventType``, Overseerr
    ``notification_type``, Standard Webhooks ``type``), for the stored row and the logs."""
    for key in ("event", "eventType", "notification_type", "type"):
        value = document.get(key)
        if isinstance(value, str):
            return value[:100]
    return None


def _authenticate(source_cfg: Any, request: web.Request, body: bytes | None) -> str | None:
    """Raise WebhookAuthError or return the sender's message id (hmac only)."""
    auth = source_cfg.auth
    if auth == "basic":
        # ``secrets`` lists extra passwords accepted during a rotation.
        passwords = [source_cfg.password.get_secret_value(), *(s.get_secret_value() for s in source_cfg.secrets)]
        verify_basic(request.headers.get("Authorization"), source_cfg.username, passwords)
    elif auth == "header":
        verify_header(request.headers.get(source_cfg.header), source_cfg.header, source_cfg.all_secrets())
    elif auth == "url_token":
        verify_url_token(request.query.get("token"), source_cfg.all_secrets())
    elif auth == "hmac":
        assert body is not None
        keys = [hmac_key(s) for s in source_cfg.all_secrets()]
        return verify_standard_webhook(body, request.headers, keys, source_cfg.tolerance)
    return None


async def receive(request: web.Request) -> web.Response:
    """``POST /hooks/{source}``."""
    daemon = request.app[DAEMON]
    config = request.app[CONFIG]
    name = request.match_info["source"]
    source_cfg = config.webhooks.get(name)
    if source_cfg is None:
        return _json_error(404, f"no webhook source named {name!r} is configured (config: webhooks)")
    stats: WebhookStats = daemon.webhook_stats
    limit = config.server.max_webhook_bytes
    if request.content_length is not None and request.content_length > limit:
        stats.results[(name, "too_large")] += 1
        return _too_large(limit)

    body: bytes | None = None
    try:
        if source_cfg.auth != "hmac":
            # Senders that authenticate by header or URL are rejected before their body is read.
            _authenticate(source_cfg, request, None)
        try:
            body = await _read_limited(request, limit)
        except MalformedWebhook as exc:
            stats.results[(name, "malformed")] += 1
            return _json_error(400, f"malformed webhook: {exc}")
        if body is None:
            stats.results[(name, "too_large")] += 1
            return _too_large(limit)
        msg_id = _authenticate(source_cfg, request, body) if source_cfg.auth == "hmac" else None
    except WebhookAuthError as exc:
        stats.results[(name, "unauthorized")] += 1
        await _audit_rejected(daemon, stats, name, request, str(exc))
        return _json_error(401, f"webhook authentication failed: {exc}")

    try:
        text = extract_payload(body, request.headers.get("Content-Type", "application/json"))
    except MalformedWebhook as exc:
        stats.results[(name, "malformed")] += 1
        return _json_error(400, f"malformed webhook: {exc}")
    document = json.loads(text)
    event_id = msg_id or "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    try:
        new = await daemon.intake.store(name, event_id, event_type_of(document), text)
    except IntakeUnavailable:
        stats.results[(name, "unavailable")] += 1
        return web.json_response(
            {"error": "the database is busy; the webhook was not stored, retry later"},
            status=503,
            headers={"Retry-After": "5"},
        )
    if not new:
        stats.results[(name, "duplicate")] += 1
        return web.json_response({"status": "duplicate", "event_id": event_id}, status=200)
    stats.results[(name, "accepted")] += 1
    return web.json_response({"status": "accepted", "event_id": event_id}, status=202)


async def _audit_rejected(daemon: Any, stats: WebhookStats, source: str, request: web.Request, why: str) -> None:
    log.warning("webhook %s rejected from %s: %s", source, request.remote, why)
    if not stats.may_audit(source, time.time()):
        return
    details = {"reason": why, "remote": request.remote}
    await daemon.db_call(lambda store: audit.record(store, f"webhook:{source}", "webhook.rejected", source, details))


def setup(app: web.Application) -> None:
    """Add ``POST /hooks/{source}`` to ``app``."""
    app.router.add_post("/hooks/{source}", receive)


# --- access log --------------------------------------------------------------------------------------

_TOKEN_IN_QUERY = re.compile(r"(?i)((?:^|[?&])(?:token|x-plex-token|apikey|api_key)=)[^&\s]*")


def redact_url(path_qs: str) -> str:
    """``path_qs`` with the values of token-like query parameters replaced by ``REDACTED``."""
    return _TOKEN_IN_QUERY.sub(r"\1REDACTED", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    """The access log, with ``?token=`` (Plex webhooks) and friends redacted from every logged URL."""

    def log(self, request: Any, response: Any, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.1fms',
            request.remote,
            request.method,
            redact_url(request.path_qs),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
