"""`GET /api/events` streams the event bus as Server-Sent Events.

A real aiohttp server on 127.0.0.1 and a real HTTP client: sync progress arrives with ids, heartbeats come
when nothing happens, a client that drops and reconnects with Last-Event-ID gets every event exactly once,
and a client that goes away is unsubscribed from the bus.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from status_seed import SECRETS, write_config

from smartplexd.config import AppConfig
from smartplexd.demo.serving import start_app
from smartplexd.events import Event, EventBus
from smartplexd.store import open_store
from smartplexd.web import BUS, CONFIG, DB_PATH, sse


class CountingBus(EventBus):
    """An EventBus that knows how many subscribers it has (to prove clients unsubscribe)."""

    def __init__(self, history: int = 1000) -> None:
        super().__init__(history)
        self.subscribers = 0

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        unsubscribe = super().subscribe(subscriber)
        self.subscribers += 1

        def counted() -> None:
            self.subscribers -= 1
            unsubscribe()

        return counted


@dataclass
class Site:
    url: str
    app: web.Application
    bus: CountingBus
    runner: web.AppRunner


@dataclass
class Frame:
    id: int | None = None
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


async def make_site(tmp_path: Path, heartbeat: float = 30.0, history: int = 1000) -> Site:
    config: AppConfig = write_config(tmp_path, heartbeat=heartbeat)
    open_store(config.database_path).close()
    bus = CountingBus(history)
    app = web.Application()
    app[CONFIG], app[DB_PATH], app[BUS] = config, str(config.database_path), bus
    sse.setup(app)
    runner, url = await start_app(app)
    return Site(url, app, bus, runner)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = await make_site(tmp_path, heartbeat=0.2)
    yield s
    await s.runner.cleanup()


async def frames(resp: aiohttp.ClientResponse) -> AsyncIterator[Frame]:
    """Parse the SSE wire format into frames (comment-only blocks become frames with comments)."""
    frame = Frame()
    while True:
        raw = await resp.content.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\n")
        if line == "":
            if frame.event or frame.comments or frame.data:
                yield frame
            frame = Frame()
        elif line.startswith(":"):
            frame.comments.append(line[1:].strip())
        else:
            key, _, value = line.partition(": ")
            if key == "id":
                frame.id = int(value)
            elif key == "event":
                frame.event = value
            elif key == "data":
                frame.data = json.loads(value)


async def read_events(resp: aiohttp.ClientResponse, n: int, timeout: float = 10) -> list[Frame]:
    out: list[Frame] = []

    async def collect() -> None:
        async for f in frames(resp):
            if f.event:
                out.append(f)
                if len(out) == n:
                    return

    await asyncio.wait_for(collect(), timeout)
    return out


async def wait_until(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_sync_progress_is_delivered_with_ids(site: Site) -> None:
    async with aiohttp.ClientSession() as http, http.get(site.url + "/api/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        await wait_until(lambda: site.bus.subscribers == 1)

        def publish() -> None:  # from another thread, as a sync worker does
            for done in (100, 200, 300):
                site.bus.publish("sync.progress", server="home", library="Movies", done=done, total=300, eta_s=1.5)
            site.bus.publish("sync.finished", server="home", status="ok")

        threading.Thread(target=publish).start()
        got = await read_events(resp, 4)

    assert [f.event for f in got] == ["sync.progress"] * 3 + ["sync.finished"]
    assert [f.id for f in got] == [1, 2, 3, 4]
    assert [f.data["data"]["done"] for f in got[:3]] == [100, 200, 300]
    assert got[0].data["type"] == "sync.progress" and got[0].data["data"]["eta_s"] == 1.5


async def test_heartbeat_comments_when_idle(site: Site) -> None:
    comments: list[str] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(site.url + "/api/events") as resp:

        async def collect() -> None:
            async for f in frames(resp):
                comments.extend(f.comments)
                if comments.count("heartbeat") >= 3:
                    return

        await asyncio.wait_for(collect(), 5)
    elapsed = time.monotonic() - started
    assert comments[0] == "connected"
    assert comments.count("heartbeat") == 3
    assert elapsed >= 0.55  # three intervals of 0.2 s, not a burst


async def test_a_busy_stream_sends_no_heartbeat(site: Site) -> None:
    async with aiohttp.ClientSession() as http, http.get(site.url + "/api/events") as resp:
        await wait_until(lambda: site.bus.subscribers == 1)
        stop = threading.Event()

        def publish() -> None:
            while not stop.is_set():
                site.bus.publish("sync.progress", server="home", done=1, total=2)
                time.sleep(0.05)

        threading.Thread(target=publish).start()
        seen: list[str] = []
        try:
            deadline = time.monotonic() + 0.8
            async for f in frames(resp):
                seen += f.comments
                if time.monotonic() > deadline:
                    break
        finally:
            stop.set()
    assert "heartbeat" not in seen


async def test_resume_after_a_dropped_connection_has_no_gaps_and_no_duplicates(site: Site) -> None:
    """A publisher keeps going while the client drops twice; the client ends with every id exactly once."""
    total = 300
    started = threading.Event()

    def publish() -> None:
        started.wait()
        for i in range(total):
            site.bus.publish("sync.progress", server="home", done=i + 1, total=total)
            time.sleep(0.002)

    threading.Thread(target=publish).start()
    received: list[int] = []
    last_id: int | None = None
    async with aiohttp.ClientSession() as http:
        for cut_after in (60, 150, None):
            headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
            async with http.get(site.url + "/api/events", headers=headers) as resp:
                started.set()
                want = (cut_after or total) - len(received)
                batch = await read_events(resp, want, timeout=15)
                received += [f.id for f in batch if f.id is not None]
                last_id = received[-1]
            # Leaving the block closes the connection mid-stream: the client "drops" while events keep coming.
    assert received == list(range(1, total + 1))


async def test_resume_with_query_parameter_and_after_idle_gap(site: Site) -> None:
    for i in range(5):
        site.bus.publish("deletion.done", deletion_id=i)
    async with aiohttp.ClientSession() as http, http.get(site.url + "/api/events?lastEventId=3") as resp:
        got = await read_events(resp, 2)
    assert [f.id for f in got] == [4, 5]
    assert got[0].event == "deletion.done" and got[0].data["data"] == {"deletion_id": 3}


async def test_resume_beyond_history_sends_a_reset_then_what_is_left(tmp_path: Path) -> None:
    s = await make_site(tmp_path, history=5)
    try:
        for i in range(20):
            s.bus.publish("sync.progress", server="home", done=i, total=20)
        async with aiohttp.ClientSession() as http:
            async with http.get(s.url + "/api/events", headers={"Last-Event-ID": "2"}) as resp:
                got = await read_events(resp, 6)
            assert got[0].event == "stream.reset" and got[0].id is None
            assert [f.id for f in got[1:]] == [16, 17, 18, 19, 20]
            # An id from an earlier daemon (bigger than anything this bus has): reset, then live events.
            async with http.get(s.url + "/api/events", headers={"Last-Event-ID": "999"}) as resp:
                first = (await read_events(resp, 1))[0]
                s.bus.publish("health.changed", name="radarr", status="down")
                second = (await read_events(resp, 1))[0]
            assert first.event == "stream.reset"
            assert (second.id, second.event) == (21, "health.changed")
    finally:
        await s.runner.cleanup()


async def test_disconnected_clients_are_unsubscribed(site: Site) -> None:
    async with aiohttp.ClientSession() as http:
        responses = [await http.get(site.url + "/api/events") for _ in range(3)]
        await wait_until(lambda: site.bus.subscribers == 3 and sse.active_streams(site.app) == 3)
        for resp in responses:
            resp.close()
        await wait_until(lambda: site.bus.subscribers == 0 and sse.active_streams(site.app) == 0, timeout=3)


async def test_shutdown_ends_open_streams(tmp_path: Path) -> None:
    s = await make_site(tmp_path, heartbeat=30)
    async with aiohttp.ClientSession() as http, http.get(s.url + "/api/events") as resp:
        await wait_until(lambda: s.bus.subscribers == 1)
        started = time.monotonic()
        await s.runner.cleanup()
        assert time.monotonic() - started < 5
        assert await asyncio.wait_for(resp.content.read(), 5) is not None
    assert s.bus.subscribers == 0


async def test_secrets_in_event_data_are_masked(site: Site) -> None:
    async with aiohttp.ClientSession() as http, http.get(site.url + "/api/events") as resp:
        await wait_until(lambda: site.bus.subscribers == 1)
        site.bus.publish("plex.unauthorized", server="home", message=f"token {SECRETS['plex_home']} rejected")
        (got,) = await read_events(resp, 1)
    assert SECRETS["plex_home"] not in json.dumps(got.data)
    assert got.data["data"]["message"] == "token ********** rejected"


async def test_a_client_too_slow_for_its_queue_is_cut_off() -> None:
    """The per-client queue is bounded: overflow ends that client's stream (it resumes by Last-Event-ID)."""
    bus = EventBus()
    stream = sse._Stream(bus, asyncio.get_running_loop(), maxsize=3)
    for i in range(10):
        bus.publish("sync.progress", done=i)
    await asyncio.sleep(0.05)  # let the hand-overs to this loop run
    assert stream.queue.qsize() == 3 and stream.overflowed and stream.closed.is_set()
    stream.unsubscribe()
