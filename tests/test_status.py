"""`smartplexd status`, `GET /api/status` and the status page `GET /` show what the store knows.

Given a database a daemon filled over a few days (tests/status_seed.py), the status names the revoked Plex
token, the last sync, the items leaving soon with the rule's reasons and due dates, the deletions with their
cascade steps and bytes freed, the step waiting for a retry, the schedule, free space and AI spend — and
never a configured secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from status_seed import SECRETS, seed, write_config

from smartplexd import cli
from smartplexd.config import AppConfig
from smartplexd.events import EventBus
from smartplexd.status import gather, reason_text
from smartplexd.store import open_store
from smartplexd.web import BUS, CONFIG, DB_PATH
from smartplexd.web import sse as sse_web
from smartplexd.web import status as status_web


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return write_config(tmp_path)


@pytest.fixture
def seeded(config: AppConfig) -> dict[str, Any]:
    now = time.time()
    store = open_store(config.database_path)
    try:
        ids = seed(store, now)
    finally:
        store.close()
    return {"now": now, **ids}


def _status(config: AppConfig, bus: EventBus | None = None, now: float | None = None) -> dict[str, Any]:
    store = open_store(config.database_path)
    try:
        return gather(config, store, bus=bus, now=now)
    finally:
        store.close()


def test_status_reports_every_section(config: AppConfig, seeded: dict[str, Any]) -> None:
    status = _status(config, now=seeded["now"])

    assert status["overall"]["state"] == "error"
    problems = " | ".join(status["overall"]["problems"])
    assert "plex:office: credentials rejected" in problems
    assert "sonarr: down (connection refused)" in problems
    assert "1 cascade step(s) waiting for a retry" in problems

    home, office = status["servers"]
    assert (home["name"], home["health"], office["health"]) == ("home", "ok", "unauthorized")
    assert home["last_sync"]["items_seen"] == 3680 and home["running"] is None
    assert office["last_sync"] is None

    leaving = {item["display_title"]: item for item in status["leaving_soon"]}
    assert list(leaving) == [
        "Crimson Orbit 12 (2011)",  # due first
        "Silent Harbor 7 (1999)",
        "Velvet Machine Show — S02E03 Episode 3",
    ]
    assert leaving["Silent Harbor 7 (1999)"]["reasons"] == [
        "plex.view_count >= 1 (is 3)",
        "plex.last_viewed_at older than 90d (is 2023-01-04)",
    ]
    assert leaving["Crimson Orbit 12 (2011)"]["reasons"] == ["Never watched, added 3 years ago"]
    assert leaving["Crimson Orbit 12 (2011)"]["due_at"] == pytest.approx(seeded["due_b"])

    partial, done = status["deletions"]
    assert done["status"] == "done" and done["bytes_freed"] == 22 * 10**9
    assert [s["status"] for s in done["steps"]] == ["done", "done", "done"]
    assert [(s["plugin"], s["status"]) for s in partial["steps"]] == [
        ("overseerr", "done"),
        ("radarr", "failed"),
        ("plex", "pending"),
    ]

    (retry,) = status["retry_queue"]
    assert (retry["deletion_id"], retry["plugin"], retry["attempts"]) == (seeded["partial"], "radarr", 3)
    assert retry["next_attempt_at"] == pytest.approx(seeded["retry_at"])

    assert [j["job_id"] for j in status["schedule"]] == ["rule:watched-movies-90d", "sync:home"]
    disks = {d["path"]: d for d in status["disk"]}
    assert disks["/data/movies"]["free_percent"] == 15.0
    assert disks["/data/tv"]["free_bytes"] == 300 * 10**9
    assert status["ai"]["cost_usd"] == pytest.approx(0.42) and status["ai"]["budget_usd"] == 5


def test_running_sync_shows_progress_from_the_bus(config: AppConfig, seeded: dict[str, Any]) -> None:
    store = open_store(config.database_path)
    store.execute(
        "INSERT INTO sync_events (server, kind, started_at, status) VALUES ('home', 'full', ?, 'running')",
        (time.time(),),
    )
    store.close()
    bus = EventBus()
    bus.publish("sync.progress", server="office", done=1, total=2)
    bus.publish("sync.progress", server="home", done=250, total=1000, eta_s=12.5)

    home = _status(config, bus=bus)["servers"][0]

    assert home["running"]["done"] == 250 and home["running"]["total"] == 1000
    assert home["running"]["percent"] == 25.0 and home["running"]["eta_s"] == 12.5


def test_running_sync_progress_from_another_process(config: AppConfig, seeded: dict[str, Any]) -> None:
    """A CLI next to the daemon has no bus of its own: it reads the persisted events."""
    store = open_store(config.database_path)
    started = time.time()
    store.execute(
        "INSERT INTO sync_events (server, kind, started_at, status) VALUES ('home', 'full', ?, 'running')", (started,)
    )
    store.execute(
        "INSERT INTO events (ts, type, data) VALUES (?, 'sync.progress', ?)",
        (started + 1, json.dumps({"server": "home", "done": 40, "total": 80})),
    )
    store.close()

    assert _status(config)["servers"][0]["running"]["percent"] == 50.0


def test_empty_database_is_a_calm_status(config: AppConfig) -> None:
    status = _status(config)
    assert status["leaving_soon"] == status["deletions"] == status["retry_queue"] == []
    assert status["overall"] == {
        "state": "warning",
        "problems": ["home has not been synced yet", "office has not been synced yet"],
    }


def test_reason_text_handles_every_shape() -> None:
    assert reason_text("plain words") == "plain words"
    assert reason_text({"text": "rendered by the rules engine"}) == "rendered by the rules engine"
    assert reason_text({"fact": "plex.labels", "contains": "kids", "actual": ["kids"]}) == (
        "plex.labels contains kids (is ['kids'])"
    )
    assert reason_text({"fact": "radarr.size_on_disk", "op": ">", "value": "10GB"}) == "radarr.size_on_disk > 10GB"


# --- over HTTP ----------------------------------------------------------------------------------------


@pytest.fixture
async def site(config: AppConfig, seeded: dict[str, Any]) -> AsyncIterator[str]:
    from smartplexd.demo.serving import start_app

    app = web.Application()
    app[CONFIG] = config
    app[DB_PATH] = str(config.database_path)
    app[BUS] = EventBus()
    status_web.setup(app)
    sse_web.setup(app)
    runner, url = await start_app(app)
    yield url
    await runner.cleanup()


async def test_api_status_is_the_gathered_json(site: str, seeded: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{site}/api/status") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    assert body["overall"]["state"] == "error"
    assert [d["id"] for d in body["deletions"]] == [seeded["partial"], seeded["done"]]


async def test_page_shows_everything_and_is_read_only(site: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(site + "/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            html = await resp.text()
        for asset in ("/static/status.js", "/static/status.css"):
            async with http.get(site + asset) as resp:
                assert resp.status == 200, asset
    for text in (
        "Problem",
        "plex:office: credentials rejected",
        'data-server="home"',
        "Silent Harbor 7 (1999)",
        "plex.last_viewed_at older than 90d (is 2023-01-04)",
        "Velvet Machine Show — S02E03 Episode 3",
        "22.0 GB",  # bytes freed
        "radarr answered 503 Service Unavailable",
        "Plex sync home",
        "/data/movies",
        "$0.42 of $5.00",
    ):
        assert text in html, text
    assert "<form" not in html and 'method="post"' not in html.lower()
    assert "<script>" not in html  # only the external, same-origin script (CSP forbids inline)


async def test_no_configured_secret_appears_anywhere(site: str, config: AppConfig) -> None:
    secrets = set(SECRETS.values()) | set(config.secret_values())
    async with aiohttp.ClientSession() as http:
        bodies = []
        for path in ("/", "/api/status", "/static/status.js"):
            async with http.get(site + path) as resp:
                bodies.append(await resp.text())
    for body in bodies:
        for secret in secrets:
            assert secret not in body


async def test_titles_are_escaped(site: str, config: AppConfig) -> None:
    store = open_store(config.database_path)
    store.execute(
        "UPDATE media_items SET title = ? WHERE rating_key = '90001'", ('<img src=x onerror="alert(1)"> {{sections}}',)
    )
    store.close()
    async with aiohttp.ClientSession() as http, http.get(site + "/") as resp:
        html = await resp.text()
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; {{sections}}" in html


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_status_json_and_text(config: AppConfig, seeded: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["-c", config.source, "status", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["servers"][1]["health"] == "unauthorized"
    assert len(body["leaving_soon"]) == 3

    assert cli.main(["-c", config.source, "status"]) == 0
    out = capsys.readouterr().out
    for text in ("office", "unauthorized", "Silent Harbor 7 (1999)", "plex.view_count >= 1 (is 3)", "radarr"):
        assert text in out, text
    for secret in SECRETS.values():
        assert secret not in out
