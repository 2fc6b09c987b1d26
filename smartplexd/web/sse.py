"""``GET /api/events``: the event bus as Server-Sent Events (sync progress, deletions, health changes).

Each event is written as::

    id: 42
    event: sync.progress
    data: {"type": "sync.progress", "ts": 1700000000.0, "data": {"server": "home", "done": 500, ...}}

The ``id`` is the bus's event id, so a client that reconnects with ``Last-Event-ID`` (header, or the
``lastEventId`` query parameter for clients that cannot set headers) gets exactly the events it missed from
the bus history, then the live ones: no gap, no duplicate. If the events it missed have already left the
history, it gets one ``stream.reset`` event (reload your view) before the live ones.

A ``: heartbeat`` comment goes out after ``server.sse_heartbeat`` seconds without an event, so proxies
keep the connection open and dead clients are noticed. Each client has a bounded queue; a client too slow
to drain it is disconnected (it resumes from ``Last-Event-ID``) rather than holding memory or slowing the
publisher. A client that goes away is unsubscribed from the bus within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref

from aiohttp import web

from smartplexd.events import Event, EventBus
from smartplexd.log import mask
from smartplexd.web import BUS, CONFIG

QUEUE_SIZE = 1000
"""Events buffered per client before it counts as too slow and is disconnected."""
RETRY_MS = 3000
"""Reconnect delay suggested to EventSource clients."""
_POLL = 1.0  # how often an idle stream checks that its client is still connected

_STREAMS = web.AppKey("sse_streams", weakref.WeakSet)


def setup(app: web.Application) -> None:
    """Add ``GET /api/events`` (needs the BUS and CONFIG keys); open streams end on app shutdown."""
    app[_STREAMS] = weakref.WeakSet()
    app.router.add_get("/api/events", events)
    app.on_shutdown.append(_close_streams)


def active_streams(app: web.Application) -> int:
    """How many clients are connected to ``/api/events`` right now."""
    return len(app[_STREAMS])


class _Stream:
    """One client's subscription: a bounded queue filled from the publisher's thread."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop, maxsize: int = QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.loop = loop
        self.overflowed = False
        self.closed = asyncio.Event()
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        # Called in the publisher's thread: hand over to our loop, never block the publisher.
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to deliver to
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.closed.set()

    def unsubscribe(self) -> None:
        self._unsubscribe()


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def format_event(event: Event) -> bytes:
    """One event in SSE wire format (secrets masked, data on one line)."""
    payload = mask(json.dumps({"type": event.type, "ts": event.ts, "data": event.data}, default=str))
    return f"id: {event.id}\nevent: {event.type}\ndata: {payload}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    bus: EventBus = request.app[BUS]
    heartbeat = float(request.app[CONFIG].server.sse_heartbeat)
    last_id = _last_event_id(request)
    # Subscribe before reading the history: an event published in between is then in the queue (and is
    # skipped there if the history had it too), so nothing falls between the two.
    stream = _Stream(bus, asyncio.get_running_loop())
    request.app[_STREAMS].add(stream)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
        sent = await _send_backlog(response, bus, last_id)
        await _pump(request, response, stream, sent, heartbeat)
        return response
    except ConnectionError:
        # The client went away mid-write: nothing to answer any more.
        return web.StreamResponse()
    finally:
        stream.unsubscribe()
        request.app[_STREAMS].discard(stream)


async def _send_backlog(response: web.StreamResponse, bus: EventBus, last_id: int | None) -> int:
    """Replay what a resuming client missed; returns the id of the last event it has."""
    if last_id is None:
        history = bus.since(0)
        return history[-1].id if history else 0
    missed = bus.since(last_id)
    history = missed or bus.since(0)
    # Ids within one bus are consecutive: a jump means the history dropped events the client never saw; an
    # id beyond everything we have means the client knew an earlier daemon (ids started again).
    lost = bool(missed and missed[0].id > last_id + 1) or (not missed and (not history or history[-1].id < last_id))
    if lost:
        payload = {"type": "stream.reset", "data": {"reason": "events after your Last-Event-ID are no longer kept"}}
        await response.write(f"event: stream.reset\ndata: {json.dumps(payload)}\n\n".encode())
    for event in missed:
        await response.write(format_event(event))
    if missed:
        return missed[-1].id
    if lost:
        return history[-1].id if history else 0
    return last_id


async def _pump(
    request: web.Request, response: web.StreamResponse, stream: _Stream, sent: int, heartbeat: float
) -> None:
    last_write = time.monotonic()
    closed = asyncio.ensure_future(stream.closed.wait())
    try:
        while not stream.closed.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            timeout = min(_POLL, max(0.0, last_write + heartbeat - time.monotonic()))
            getter = asyncio.ensure_future(stream.queue.get())
            done, _ = await asyncio.wait({getter, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if time.monotonic() - last_write >= heartbeat:
                    await response.write(b": heartbeat\n\n")
                    last_write = time.monotonic()
                continue
            event = getter.result()
            if event.id <= sent:
                continue
            await response.write(format_event(event))
            sent = event.id
            last_write = time.monotonic()
    finally:
        closed.cancel()


async def _close_streams(app: web.Application) -> None:
    for stream in list(app[_STREAMS]):
        stream.closed.set()
