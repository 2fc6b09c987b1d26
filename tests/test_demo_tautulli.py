"""The simulated Tautulli keeps the API v2 contract (tests/contracts/tautulli.md).

Proved with pytautulli (a client nobody here wrote) and raw httpx against a real server on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pytautulli import PyTautulli
from pytautulli.exceptions import PyTautulliAuthenticationException, PyTautulliConnectionException

from smartplexd.demo import tautulli
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import DAY, USERS, Universe, generate

KEY = "demo-tautulli-key"


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=3, movies=120, shows=6, seasons_per_show=2, episodes_per_season=5, now=1_700_000_000)


@pytest.fixture
def server(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(tautulli.create_app(universe)) as srv:
        yield srv


@pytest.fixture
def call(server: ThreadedServer) -> Iterator[Any]:
    """``call(cmd, **params)`` → the parsed ``response`` of a successful command."""
    with httpx.Client(base_url=server.url) as client:

        def _call(cmd: str, **params: Any) -> Any:
            r = client.get("/api/v2", params={"apikey": KEY, "cmd": cmd, **params})
            assert r.status_code == 200, r.text
            body = r.json()["response"]
            assert body["result"] == "success"
            return body

        yield _call


def every_view(universe: Universe) -> list[tuple[int, Any]]:
    out = [(m.rating_key, v) for m in universe.movies for v in m.views]
    out += [(e.rating_key, v) for s in universe.shows for e in s.episodes for v in e.views]
    return out


def walk_history(call: Any, length: int, **params: Any) -> list[dict]:
    rows: list[dict] = []
    start = 0
    while True:
        data = call("get_history", start=start, length=length, **params)["data"]
        rows += data["data"]
        start += length
        if start >= data["recordsFiltered"]:
            return rows


async def test_pytautulli_reads_server_users_activity_and_stats(server: ThreadedServer, universe: Universe) -> None:
    async with PyTautulli(api_token=KEY, url=server.url) as client:
        info = await client.async_get_server_info()
        users = await client.async_get_users()
        activity = await client.async_get_activity()
        stats = await client.async_get_home_stats()
        raw = await client.async_command("status")

    assert info.pms_identifier == universe.machine_identifier and info.pms_is_remote is False
    assert [u.username for u in users] == list(USERS)
    assert users[0].is_admin is True and users[1].is_admin is False
    assert {u.user_id for u in users} == set(tautulli.USER_IDS.values())
    assert activity.stream_count == "0" and activity.sessions == []
    assert [s.stat_id for s in stats] == ["top_movies", "top_tv", "top_users"]
    for row in stats[0].rows:
        views = next(m.views for m in universe.movies if m.rating_key == row.rating_key)
        assert row.total_plays == sum(1 for v in views if v.at >= universe.now - 30 * DAY)
    assert raw == {"response": {"result": "success", "message": "Ok", "data": {}}}


async def test_pytautulli_reports_wrong_key_and_failing_service(server: ThreadedServer) -> None:
    async with PyTautulli(api_token="wrong", url=server.url) as client:
        with pytest.raises(PyTautulliAuthenticationException, match="Invalid apikey"):
            await client.async_get_users()
    server.app[FAULTS].fail_next = 1
    async with PyTautulli(api_token=KEY, url=server.url) as client:
        with pytest.raises(PyTautulliConnectionException):
            await client.async_get_server_info()
        assert (await client.async_get_server_info()).pms_name


def test_envelope_errors_use_tautulli_status_codes(server: ThreadedServer) -> None:
    def get(**params: str) -> httpx.Response:
        return httpx.get(server.url + "/api/v2", params=params)

    r = get(cmd="status")
    assert r.status_code == 401
    assert r.json() == {"response": {"result": "error", "message": "Parameter apikey is required", "data": {}}}
    r = get(apikey="nope", cmd="status")
    assert r.status_code == 401
    assert r.json() == {"response": {"result": "error", "message": "Invalid apikey", "data": {}}}
    r = get(apikey=KEY, cmd="foo")
    assert r.status_code == 400
    message = r.json()["response"]["message"]
    assert message.startswith("Unknown command: foo. Possible commands are: ") and "get_history" in message
    r = get(apikey=KEY)
    assert r.status_code == 400 and r.json()["response"]["message"].startswith("Parameter cmd is required")
    r = get(apikey=KEY, cmd="get_history", rating_key="abc")
    assert r.status_code == 500
    assert r.json() == {"response": {"result": "error", "message": "Check the logs for errors", "data": {}}}
    assert r.headers["Content-Type"].startswith("application/json")


def test_status_and_arnold(call: Any) -> None:
    assert call("status") == {"result": "success", "message": "Ok", "data": {}}
    arnold = call("arnold")
    assert arnold["message"] is None and isinstance(arnold["data"], str) and arnold["data"]


def test_history_pages_cover_every_view_once_newest_first(call: Any, universe: Universe) -> None:
    first = call("get_history")["data"]
    total = len(every_view(universe))
    assert first["recordsTotal"] == first["recordsFiltered"] == total
    assert len(first["data"]) == 25 and first["draw"] == 1
    assert isinstance(first["total_duration"], str)

    rows = walk_history(call, length=11)
    assert len(rows) == total and len({r["id"] for r in rows}) == total
    assert [r["date"] for r in rows] == sorted((r["date"] for r in rows), reverse=True)
    assert sorted((r["rating_key"], r["user"], r["stopped"]) for r in rows) == sorted(
        (key, v.user, v.at) for key, v in every_view(universe)
    )
    assert call("get_history", start=total + 3, length=10)["data"]["data"] == []


def test_history_rows_have_tautulli_fields(call: Any, universe: Universe) -> None:
    rows = walk_history(call, length=500)
    movie = next(r for r in rows if r["media_type"] == "movie")
    episode = next(r for r in rows if r["media_type"] == "episode")
    assert movie["parent_rating_key"] == "" and movie["grandparent_rating_key"] == ""
    show = next(s for s in universe.shows if s.rating_key == episode["grandparent_rating_key"])
    season = next(se for se in show.seasons if se.rating_key == episode["parent_rating_key"])
    assert episode["rating_key"] in {e.rating_key for e in season.episodes}
    assert episode["grandparent_title"] == show.title and episode["parent_media_index"] == season.index
    for r in rows:
        assert r["stopped"] - r["started"] == r["duration"] == r["play_duration"]
        assert r["date"] == r["started"]
        assert r["user_id"] == tautulli.USER_IDS[r["user"]]
        assert r["watched_status"] == tautulli.watched_status(r["percent_complete"])
    assert tautulli.watched_status(96) == 1 and tautulli.watched_status(42) == 0.25
    assert tautulli.watched_status(64) == 0.75 and tautulli.watched_status(60) == 0.5
    assert tautulli.watched_status(20) == 0


def test_history_filters_by_item_user_type_and_date(call: Any, universe: Universe) -> None:
    watched = next(m for m in universe.movies if len(m.views) >= 2)
    rows = call("get_history", rating_key=watched.rating_key)["data"]["data"]
    assert sorted(r["stopped"] for r in rows) == sorted(v.at for v in watched.views)

    show = max(universe.shows, key=lambda s: sum(len(e.views) for e in s.episodes))
    show_rows = walk_history(call, length=7, grandparent_rating_key=show.rating_key)
    assert len(show_rows) == sum(len(e.views) for e in show.episodes)
    season = show.seasons[0]
    season_rows = walk_history(call, length=50, parent_rating_key=season.rating_key)
    assert len(season_rows) == sum(len(e.views) for e in season.episodes)

    two = f"{universe.movies[0].rating_key},{watched.rating_key}"
    both = call("get_history", rating_key=two, length=100)["data"]["data"]
    assert len(both) == len(universe.movies[0].views) + len(watched.views)

    bob = walk_history(call, length=100, user="bob")
    assert bob and {r["user"] for r in bob} == {"bob"}
    assert len(walk_history(call, length=100, user_id=tautulli.USER_IDS["bob"], user="alice")) == len(bob)
    both_users = call("get_history", user="bob,carol", length=1)["data"]["recordsFiltered"]
    assert both_users == sum(1 for _, v in every_view(universe) if v.user in {"bob", "carol"})

    episodes = call("get_history", media_type="episode", length=1)["data"]
    assert episodes["recordsFiltered"] == sum(len(e.views) for s in universe.shows for e in s.episodes)
    assert episodes["recordsTotal"] == len(every_view(universe))

    all_rows = walk_history(call, length=500)
    day = time.strftime("%Y-%m-%d", time.gmtime(all_rows[len(all_rows) // 2]["date"]))
    after = walk_history(call, length=500, after=day)
    before = walk_history(call, length=500, before=day)
    on = walk_history(call, length=500, start_date=day)
    assert len(after) + len(before) - len(on) == len(all_rows)
    assert all(time.strftime("%Y-%m-%d", time.gmtime(r["date"])) >= day for r in after)


def test_history_ordering(call: Any) -> None:
    asc = walk_history(call, length=40, order_column="date", order_dir="asc")
    assert [r["date"] for r in asc] == sorted(r["date"] for r in asc)
    by_duration = walk_history(call, length=40, order_column="duration", order_dir="desc")
    assert [r["duration"] for r in by_duration] == sorted((r["duration"] for r in by_duration), reverse=True)
    names = call("get_history", order_column="friendly_name", order_dir="asc", length=1000)["data"]["data"]
    assert [r["friendly_name"] for r in names] == sorted(r["friendly_name"] for r in names)


def test_library_media_info_per_section(call: Any, universe: Universe) -> None:
    movies = call("get_library_media_info", section_id=1, length=1000)["data"]
    assert movies["recordsTotal"] == movies["recordsFiltered"] == len(universe.movies)
    assert movies["total_file_size"] == sum(m.size for m in universe.movies)
    by_key = {r["rating_key"]: r for r in movies["data"]}
    for m in universe.movies:
        row = by_key[str(m.rating_key)]
        assert row["file_size"] == m.size and row["year"] == str(m.year) and row["added_at"] == str(m.added_at)
        assert row["play_count"] == (len(m.views) or None)
        assert row["last_played"] == (max(v.at for v in m.views) if m.views else None)
        assert row["section_id"] == 1 and row["media_type"] == "movie"

    shows = call("get_library_media_info", section_id=2)["data"]
    assert shows["recordsTotal"] == len(universe.shows)
    for row in shows["data"]:
        show = next(s for s in universe.shows if str(s.rating_key) == row["rating_key"])
        assert row["file_size"] == show.size
        assert row["play_count"] == (sum(len(e.views) for e in show.episodes) or None)

    show = universe.shows[0]
    seasons = call("get_library_media_info", rating_key=show.rating_key)["data"]["data"]
    assert [r["rating_key"] for r in seasons] == [str(s.rating_key) for s in show.seasons]
    episodes = call("get_library_media_info", rating_key=show.seasons[0].rating_key)["data"]["data"]
    assert [r["media_index"] for r in episodes] == [str(e.index) for e in show.seasons[0].episodes]

    unknown = call("get_library_media_info", section_id=99)["data"]
    assert unknown["recordsTotal"] == 0 and unknown["data"] == []


def test_library_media_info_pages_and_orders(call: Any, universe: Universe) -> None:
    rows: list[dict] = []
    start = 0
    while start < len(universe.movies):
        page = call(
            "get_library_media_info",
            section_id=1,
            start=start,
            length=13,
            order_column="play_count",
            order_dir="desc",
        )["data"]
        rows += page["data"]
        start += 13
    assert len({r["rating_key"] for r in rows}) == len(universe.movies)
    counts = [r["play_count"] or 0 for r in rows]
    assert counts == sorted(counts, reverse=True)

    titles = call("get_library_media_info", section_id=1, length=1000)["data"]["data"]
    assert [r["sort_title"] for r in titles] == sorted(r["sort_title"] for r in titles)
    sizes = call("get_library_media_info", section_id=1, length=1000, order_column="file_size")["data"]["data"]
    assert [r["file_size"] for r in sizes] == sorted(r["file_size"] for r in sizes)
    found = call("get_library_media_info", section_id=1, search=universe.movies[5].title)["data"]
    assert str(universe.movies[5].rating_key) in {r["rating_key"] for r in found["data"]}
    assert found["recordsFiltered"] < found["recordsTotal"]


def test_item_watch_time_and_user_stats(call: Any, universe: Universe) -> None:
    movie = max(universe.movies, key=lambda m: len(m.views))
    stats = call("get_item_watch_time_stats", rating_key=movie.rating_key, query_days="7,30,0")["data"]
    assert [s["query_days"] for s in stats] == [7, 30, 0]
    assert stats[2] == {
        "query_days": 0,
        "total_time": sum(v.duration for v in movie.views),
        "total_plays": len(movie.views),
    }
    recent = [v for v in movie.views if v.at >= universe.now - 30 * DAY]
    assert stats[1]["total_plays"] == len(recent)
    default = call("get_item_watch_time_stats", rating_key=movie.rating_key)["data"]
    assert [s["query_days"] for s in default] == [1, 7, 30, 0]

    show = universe.shows[0]
    whole = call("get_item_watch_time_stats", rating_key=show.rating_key, query_days="0")["data"][0]
    assert whole["total_plays"] == sum(len(e.views) for e in show.episodes)

    users = call("get_item_user_stats", rating_key=movie.rating_key)["data"]
    assert sum(u["total_plays"] for u in users) == len(movie.views)
    assert {u["username"] for u in users} == {v.user for v in movie.views}


def test_libraries_list_both_sections(call: Any, universe: Universe) -> None:
    libs = call("get_libraries")["data"]
    assert [(lib["section_id"], lib["section_type"]) for lib in libs] == [("1", "movie"), ("2", "show")]
    assert libs[0]["count"] == str(len(universe.movies))
    assert libs[1]["child_count"] == str(sum(len(s.episodes) for s in universe.shows))


def test_added_play_shows_up_everywhere(server: ThreadedServer, call: Any, universe: Universe) -> None:
    movie = next(m for m in universe.movies if not m.views)
    r = httpx.post(
        server.url + "/_sim/tautulli/history",
        json={"rating_key": movie.rating_key, "user": "dave", "percent_complete": 50},
    )
    assert r.status_code == 201
    row = r.json()
    assert row["stopped"] == universe.now and row["watched_status"] == 0.5 and row["user"] == "dave"

    history = call("get_history", length=1)["data"]
    assert history["recordsTotal"] == len(every_view(universe)) + 1
    assert history["data"][0]["id"] == row["id"]  # newest first
    info = call("get_library_media_info", section_id=1, length=1000)["data"]["data"]
    assert next(x for x in info if x["rating_key"] == str(movie.rating_key))["play_count"] == 1
    assert len(httpx.get(server.url + "/_sim/tautulli/history").json()) == len(every_view(universe)) + 1

    bad = httpx.post(server.url + "/_sim/tautulli/history", json={"rating_key": 1, "user": "dave"})
    assert bad.status_code == 400


def test_fault_knobs_fail_then_recover_and_revoke_auth(server: ThreadedServer) -> None:
    params = {"apikey": KEY, "cmd": "status"}
    httpx.post(server.url + "/_sim/faults", json={"fail_next": 1, "error_status": 503}).raise_for_status()
    assert httpx.get(server.url + "/api/v2", params=params).status_code == 503
    assert httpx.get(server.url + "/api/v2", params=params).status_code == 200
    server.app[FAULTS].revoke_auth = True
    r = httpx.get(server.url + "/api/v2", params=params)
    assert r.status_code == 401 and r.json()["response"]["message"] == "Invalid apikey"


def test_large_library_pages_deep_into_the_section() -> None:
    big = generate(seed=11, movies=5000, shows=10, now=1_700_000_000)
    with ThreadedServer(tautulli.create_app(big)) as srv, httpx.Client(base_url=srv.url) as client:

        def page(start: int) -> dict:
            params = {
                "apikey": KEY,
                "cmd": "get_library_media_info",
                "section_id": 1,
                "start": start,
                "length": 100,
                "order_column": "last_played",
                "order_dir": "desc",
            }
            return client.get("/api/v2", params=params).json()["response"]["data"]

        first = page(0)
        last = page(4900)
        assert first["recordsTotal"] == 5000 and len(last["data"]) == 100
        played = [r["last_played"] for r in first["data"]]
        assert played == sorted(played, reverse=True)
        assert {r["rating_key"] for r in first["data"]}.isdisjoint(r["rating_key"] for r in last["data"])


def test_module_runs_as_a_program() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "smartplexd.demo.tautulli",
        "--port",
        str(port),
        "--movies",
        "20",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v2", params={"apikey": KEY, "cmd": "get_libraries"})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["response"]["data"][0]["count"] == "20"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
