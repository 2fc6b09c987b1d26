"""Library sync stories: a simulated Plex on 127.0.0.1, a real SQLite file, the real CLI.

The expected database is always derived from the universe the simulated Plex renders, so "syncs exactly"
means every visible movie, show, season and episode is a row with Plex's values, and nothing else is.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from smartplexd import cli
from smartplexd.config import AppConfig, load_config
from smartplexd.demo import plex
from smartplexd.demo.faults import FAULTS, Faults
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.errors import EXIT_ERROR, EXIT_OK, EXIT_PLEX_UNAUTHORIZED, EXIT_REFUSED, EXIT_USAGE, PlexUnauthorized
from smartplexd.events import Event, EventBus
from smartplexd.plex.client import RetryPolicy
from smartplexd.plex.sync import LockHeld, field_source, sync_item, sync_server, tombstone_guids
from smartplexd.store import open_store
from smartplexd.store.db import Store

TOKEN = "sync-test-token-41c9e2d7"
NOW = 1_700_000_000
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)
DAY = 86_400


@dataclass
class Env:
    universe: Universe
    server: ThreadedServer
    state: plex.PlexState
    faults: Faults
    config: AppConfig
    config_path: Path
    db_path: Path
    store: Store

    def sync(self, **kwargs: Any) -> Any:
        kwargs.setdefault("retry", FAST)
        return sync_server(self.config, self.store, "home", **kwargs)

    def cli(self, *args: str) -> int:
        return cli.main(["-c", str(self.config_path), *args])


def make_env(
    tmp_path: Path,
    universe: Universe,
    *,
    page_size: int = 500,
    pages_in_flight: int = 4,
    shrink: int = 10,
    timeout: float = 10,
) -> Iterator[Env]:
    server = ThreadedServer(plex.create_app(universe, token=TOKEN)).start()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        f"""
database: ./smartplexd.db
plex:
  servers:
    - name: home
      url: {server.url}
      token: {TOKEN}
      timeout: {timeout}
      sync: {{page_size: {page_size}, pages_in_flight: {pages_in_flight}}}
deletion:
  max_library_shrink_percent: {shrink}%
"""
    )
    config = load_config(config_path)
    store = open_store(config.database_path)
    try:
        yield Env(
            universe,
            server,
            server.app[plex.PLEX_STATE],
            server.app[FAULTS],
            config,
            config_path,
            config.database_path,
            store,
        )
    finally:
        store.close()
        server.app[FAULTS].hang = False
        server.stop()


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Env]:
    """24 movies and 2 shows x 2 seasons x 5 episodes: 50 items; the shrink guard allows 50%."""
    universe = generate(seed=11, movies=24, shows=2, seasons_per_show=2, episodes_per_season=5, now=NOW)
    yield from make_env(tmp_path, universe, page_size=7, pages_in_flight=3, shrink=50)


@pytest.fixture
def medium(tmp_path: Path) -> Iterator[Env]:
    """600 movies and 20 shows x 3 x 5 (980 items), 50-item pages fetched one at a time."""
    universe = generate(seed=12, movies=600, shows=20, seasons_per_show=3, episodes_per_season=5, now=NOW)
    yield from make_env(tmp_path, universe, page_size=50, pages_in_flight=1)


# ------------------------------------------------------------------------------------------- expectations


def expected_rows(state: plex.PlexState) -> dict[str, tuple]:
    """What the mirror must hold for everything Plex shows now, by rating key."""
    out: dict[str, tuple] = {}

    def plays(views: list) -> tuple[int, int | None]:
        counted = plex.counted_plays(views)
        return len(counted), max((v.at for v in counted), default=None)

    for m in state.universe.movies:
        if state.node(m.rating_key) is None:
            continue
        count, last = plays(m.views)
        out[str(m.rating_key)] = (
            "1", "movie", m.title, m.year, m.tmdb, None, m.imdb, None, None, None, None,
            m.added_at, last, count, m.size, [m.file], m.labels, m.collections,
        )  # fmt: skip
    for show in state.universe.shows:
        if state.node(show.rating_key) is None:
            continue
        show_size = show_count = 0
        show_last: int | None = None
        for season in show.seasons:
            if state.node(season.rating_key) is None:
                continue
            season_size = season_count = 0
            season_last: int | None = None
            episodes = [e for e in season.episodes if state.node(e.rating_key) is not None]
            for e in episodes:
                count, last = plays(e.views)
                out[str(e.rating_key)] = (
                    "2", "episode", e.title, show.year, None, None, None, str(season.rating_key),
                    str(show.rating_key), season.index, e.index, e.added_at, last, count, e.size, [e.file], [], [],
                )  # fmt: skip
                season_size += e.size
                season_count += count
                season_last = max(filter(None, (season_last, last)), default=None)
            out[str(season.rating_key)] = (
                "2", "season", f"Season {season.index}", show.year, None, None, None, str(show.rating_key),
                None, season.index, None, min(e.added_at for e in episodes), season_last, season_count,
                season_size, [], [], [],
            )  # fmt: skip
            show_size += season_size
            show_count += season_count
            show_last = max(filter(None, (show_last, season_last)), default=None)
        out[str(show.rating_key)] = (
            "2", "show", show.title, show.year, show.tmdb, show.tvdb, show.imdb, None, None, None, None,
            show.added_at, show_last, show_count, show_size, [], show.labels, show.collections,
        )  # fmt: skip
    return out


def mirrored_rows(store: Store) -> dict[str, tuple]:
    rows = store.query("SELECT * FROM media_items WHERE server = 'home' AND removed_at IS NULL AND deleted_at IS NULL")
    return {
        r["rating_key"]: (
            r["section_id"],
            r["type"],
            r["title"],
            r["year"],
            r["tmdb_id"],
            r["tvdb_id"],
            r["imdb_id"],
            r["parent_rating_key"],
            r["grandparent_rating_key"],
            r["season_index"],
            r["episode_index"],
            r["added_at"],
            r["last_viewed_at"],
            r["view_count"],
            r["size_bytes"],
            json.loads(r["files"]),
            json.loads(r["labels"]),
            json.loads(r["collections"]),
        )
        for r in rows
    }


def assert_mirrors_plex(env: Env) -> None:
    expected = expected_rows(env.state)
    actual = mirrored_rows(env.store)
    assert set(actual) == set(expected)
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"{len(wrong)} rows differ, e.g. {next(iter(wrong.items()))}"


def row(store: Store, rating_key: int | str) -> dict[str, Any]:
    found = store.query_one("SELECT * FROM media_items WHERE server = 'home' AND rating_key = ?", (str(rating_key),))
    assert found is not None, f"no row for {rating_key}"
    return found


def sync_event(store: Store, sync_id: int) -> dict[str, Any]:
    found = store.query_one("SELECT * FROM sync_events WHERE id = ?", (sync_id,))
    assert found is not None
    return found


def health(store: Store) -> dict[str, Any]:
    found = store.query_one("SELECT * FROM integration_health WHERE name = 'plex:home'")
    assert found is not None
    return found


def removed_count(store: Store) -> int:
    return store.query_one("SELECT COUNT(*) AS n FROM media_items WHERE removed_at IS NOT NULL")["n"]  # type: ignore[index]


# ------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    ("movies", "shows", "seasons", "episodes", "page_size", "items"),
    [
        (0, 0, 1, 1, 500, 0),
        (24, 2, 2, 5, 7, 50),
        (620, 20, 3, 5, 97, 1000),
        (10_000, 400, 4, 5, 333, 20_000),
    ],
    ids=["empty", "50", "1000", "20000"],
)
def test_a_full_sync_mirrors_every_item_exactly(
    tmp_path: Path, movies: int, shows: int, seasons: int, episodes: int, page_size: int, items: int
) -> None:
    universe = generate(
        seed=items, movies=movies, shows=shows, seasons_per_show=seasons, episodes_per_season=episodes, now=NOW
    )
    assert universe.plex_item_count == items
    for env in make_env(tmp_path, universe, page_size=page_size, pages_in_flight=3):
        result = env.sync()
        assert result.status == "ok", result.error
        assert result.counts["seen"] == result.counts["added"] == items
        assert_mirrors_plex(env)
        event = sync_event(env.store, result.sync_id)
        assert (event["status"], event["items_seen"], event["added"]) == ("ok", items, items)
        assert event["duration_ms"] == result.duration_ms and event["finished_at"] is not None
        assert health(env.store)["status"] == "ok"
        again = env.sync()
        assert again.counts["unchanged"] == items and again.counts["added"] == again.counts["updated"] == 0
        assert_mirrors_plex(env)


def test_rows_carry_sources_hashes_and_the_sync_that_wrote_them(small: Env) -> None:
    result = small.sync()
    movie = small.universe.movies[0]
    r = row(small.store, movie.rating_key)
    assert r["section_title"] == "Movies" and r["guid"].startswith("plex://movie/")
    sources = json.loads(r["sources"])
    assert [field_source(sources, f) for f in ("title", "size_bytes", "labels")] == ["plex"] * 3
    assert sources == {}, "only fields that did not come from Plex are named"
    assert r["content_hash"] and r["seen_in_sync"] == result.sync_id
    show = row(small.store, small.universe.shows[0].rating_key)
    assert show["size_bytes"] == small.universe.shows[0].size > 0


# ------------------------------------------------------------------------------------------- changes


def test_changes_additions_and_removals_in_plex_are_reflected(small: Env) -> None:
    small.sync()
    u, state, srv = small.universe, small.state, small.server
    renamed, gone, played = u.movies[0], u.movies[1], u.movies[2]
    episode = u.shows[0].seasons[1].episodes[2]
    srv.call(lambda: state.update_item(renamed.rating_key, title="Renamed Movie", labels=["keep"]))
    srv.call(lambda: state.update_item(episode.rating_key, size=123_456_789))
    srv.call(lambda: state.mark_played(played.rating_key, plex.OWNER, NOW + 5))
    added_movie = srv.call(lambda: state.add_movie("Brand New", year=2024, size=5_000_000, added_at=NOW))
    added_show = srv.call(lambda: state.add_show("New Show", seasons=1, episodes=2, added_at=NOW))
    srv.call(state.remove_item, gone.rating_key)

    result = small.sync()
    assert result.status == "ok"
    assert result.counts["added"] == 1 + 1 + 1 + 2
    assert result.counts["removed"] == 1
    assert result.counts["updated"] >= 4  # renamed, played, the episode, its season and show (updatedAt)
    assert_mirrors_plex(small)
    assert row(small.store, renamed.rating_key)["title"] == "Renamed Movie"
    assert row(small.store, played.rating_key)["last_viewed_at"] == NOW + 5
    assert row(small.store, added_movie.rating_key)["size_bytes"] == 5_000_000
    assert row(small.store, added_show.rating_key)["size_bytes"] == 2 * 1024**3
    assert row(small.store, u.shows[0].seasons[1].rating_key)["size_bytes"] == sum(
        e.size for e in u.shows[0].seasons[1].episodes
    )
    removed = row(small.store, gone.rating_key)
    assert removed["removed_at"] is not None and removed["deleted_at"] is None

    # The item comes back in Plex (e.g. a disk was re-added): the row is active again.
    def bring_back() -> None:
        state.deleted.discard(gone.rating_key)
        state.invalidate()

    srv.call(bring_back)
    result = small.sync()
    assert result.counts["restored"] == 1 and result.counts["removed"] == 0
    assert row(small.store, gone.rating_key)["removed_at"] is None
    assert_mirrors_plex(small)


def test_a_show_removed_in_plex_takes_its_seasons_and_episodes_along(small: Env) -> None:
    small.sync()
    show = small.universe.shows[1]
    small.server.call(small.state.remove_item, show.rating_key)
    result = small.sync()
    assert result.counts["removed"] == 1 + 2 + 10
    keys = [show.rating_key] + [s.rating_key for s in show.seasons] + [e.rating_key for e in show.episodes]
    assert all(row(small.store, k)["removed_at"] is not None for k in keys)
    assert_mirrors_plex(small)


def test_plex_wins_where_it_has_a_value_and_other_sources_fill_the_gaps(small: Env) -> None:
    small.sync()
    movie = next(m for m in small.universe.movies if not plex.counted_plays(m.views))
    small.store.execute(
        "UPDATE media_items SET last_viewed_at = 1234, sources = json_set(sources, '$.last_viewed_at', 'tautulli') "
        "WHERE rating_key = ?",
        (str(movie.rating_key),),
    )
    small.server.call(lambda: small.state.update_item(movie.rating_key, title="Retitled"))
    small.sync()
    r = row(small.store, movie.rating_key)
    sources = json.loads(r["sources"])
    assert (r["title"], field_source(sources, "title")) == ("Retitled", "plex")
    assert (r["last_viewed_at"], field_source(sources, "last_viewed_at")) == (1234, "tautulli")
    small.server.call(lambda: small.state.mark_played(movie.rating_key, plex.OWNER, NOW + 60))
    small.sync()
    r = row(small.store, movie.rating_key)
    assert (r["last_viewed_at"], field_source(r["sources"], "last_viewed_at")) == (NOW + 60, "plex")
    assert json.loads(r["sources"]) == {}, "Plex answers for every field again"


# ------------------------------------------------------------------------------------------- shrink guard


def test_an_emptied_library_is_not_swept(medium: Env) -> None:
    first = medium.sync()
    assert first.status == "ok"
    medium.server.call(medium.state.set_section_empty, 1, True)
    result = medium.sync()
    assert result.status == "refused"
    assert "sweep of library 'Movies' refused" in (result.error or "")
    assert "600 of 600 items (100.0% > deletion.max_library_shrink_percent 10%)" in (result.error or "")
    assert result.counts["removed"] == 0 and removed_count(medium.store) == 0
    libraries = {lib["title"]: lib for lib in result.libraries}
    assert libraries["Movies"]["sweep"] == "refused"
    assert libraries["TV Shows"]["sweep"] == "done" and libraries["TV Shows"]["counts"]["unchanged"] == 380
    event = sync_event(medium.store, result.sync_id)
    assert event["status"] == "refused" and "nothing was removed" in event["error"]
    assert health(medium.store)["status"] == "ok"

    # The CLI says so with exit code 4.
    assert medium.cli("sync") == EXIT_REFUSED
    assert removed_count(medium.store) == 0

    # When the user confirms that the library really shrank, the sweep runs.
    forced = medium.sync(allow_shrink=True)
    assert forced.status == "ok" and forced.counts["removed"] == 600
    medium.server.call(medium.state.set_section_empty, 1, False)
    back = medium.sync()
    assert back.counts["restored"] == 600 and removed_count(medium.store) == 0
    assert_mirrors_plex(medium)


# ------------------------------------------------------------------------------------------- failures


def test_a_401_mid_sync_stops_cleanly_and_removes_nothing(medium: Env, capsys: pytest.CaptureFixture[str]) -> None:
    medium.sync()
    # Plex lost some items since: a complete sync would sweep them, an interrupted one must not.
    for movie in medium.universe.movies[:3]:
        medium.server.call(medium.state.remove_item, movie.rating_key)
    bus = EventBus()

    def revoke_after_first_page(event: Event) -> None:
        if event.type == "sync.progress":
            medium.faults.revoke_auth = True

    bus.subscribe(revoke_after_first_page)
    result = medium.sync(bus=bus)
    assert result.status == "unauthorized"
    assert "rejected the token" in (result.error or "")
    assert 0 < result.counts["seen"] < 980, "stopped after the first page(s)"
    assert removed_count(medium.store) == 0
    event = sync_event(medium.store, result.sync_id)
    assert event["status"] == "unauthorized" and event["finished_at"] is not None
    assert health(medium.store)["status"] == "unauthorized"
    types = [e.type for e in bus.since(0)]
    assert types[0] == "sync.started" and "plex.unauthorized" in types and types[-1] == "sync.finished"

    capsys.readouterr()
    assert medium.cli("sync") == EXIT_PLEX_UNAUTHORIZED
    err = capsys.readouterr().err
    assert "Plex server 'home' rejected the token (401 Unauthorized)" in err
    assert "Traceback" not in err
    assert removed_count(medium.store) == 0


def test_server_errors_are_retried_and_the_sync_completes(medium: Env) -> None:
    medium.faults.fail_next = 2
    result = medium.sync()
    assert result.status == "ok" and result.counts["added"] == 980
    assert_mirrors_plex(medium)


def test_persistent_server_errors_end_the_sync_with_an_error_and_mark_plex_down(medium: Env) -> None:
    medium.sync()
    medium.server.call(medium.state.remove_item, medium.universe.movies[0].rating_key)
    medium.faults.error_rate = 1.0
    result = medium.sync()
    assert result.status == "error"
    assert "HTTP 503" in (result.error or "") and "gave up after 3 attempts" in (result.error or "")
    assert removed_count(medium.store) == 0
    assert health(medium.store)["status"] == "down"
    assert sync_event(medium.store, result.sync_id)["status"] == "error"
    medium.faults.error_rate = 0.0
    assert medium.sync().status == "ok"
    assert health(medium.store)["status"] == "ok"


def test_timeouts_are_retried_then_reported(tmp_path: Path) -> None:
    universe = generate(seed=13, movies=5, shows=1, seasons_per_show=1, episodes_per_season=1, now=NOW)
    for env in make_env(tmp_path, universe, timeout=0.2):
        env.faults.hang, env.faults.hang_seconds = True, 1.0
        result = env.sync()
        assert result.status == "error" and "no answer within 0.2 s" in (result.error or "")
        requests = httpx.get(f"{env.server.url}/_sim/requests").json()
        assert [r["path"] for r in requests] == ["/identity"] * 3
        assert health(env.store)["status"] == "down"


def test_an_unknown_library_or_server_is_reported(small: Env, capsys: pytest.CaptureFixture[str]) -> None:
    result = small.sync(libraries=["Anime"])
    assert result.status == "error"
    assert "no movie or show library titled 'Anime' (it has: Movies, TV Shows)" in (result.error or "")
    assert small.cli("sync", "--library", "Anime") == EXIT_ERROR
    assert "no movie or show library titled 'Anime'" in capsys.readouterr().err
    assert small.cli("sync", "--server", "nope") == EXIT_USAGE
    assert "no Plex server named 'nope'" in capsys.readouterr().err


def test_a_sync_left_running_by_a_dead_process_is_closed_as_interrupted(small: Env) -> None:
    small.store.execute(
        "INSERT INTO sync_events (server, kind, started_at, status) VALUES ('home', 'full', ?, 'running')",
        (time.time() - 3600,),
    )
    stale = small.store.query_one("SELECT MAX(id) AS id FROM sync_events")["id"]  # type: ignore[index]
    small.sync()
    event = sync_event(small.store, stale)
    assert event["status"] == "error" and "interrupted" in event["error"]


# ------------------------------------------------------------------------------------------- one sync at a time


def test_two_syncs_of_one_server_never_both_run(medium: Env, capsys: pytest.CaptureFixture[str]) -> None:
    medium.faults.latency = 0.03  # about 25 requests: the first sync runs for a while
    bus = EventBus()
    started = threading.Event()
    bus.subscribe(lambda e: started.set() if e.type == "sync.started" else None)
    results: list[Any] = []

    def first() -> None:
        store = open_store(medium.db_path)  # one connection per thread
        try:
            results.append(sync_server(medium.config, store, "home", bus=bus, retry=FAST))
        finally:
            store.close()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(LockHeld) as caught:
            medium.sync()
        running = caught.value.details["sync_id"]
        assert "already running (sync_id=" in str(caught.value)
        capsys.readouterr()
        assert medium.cli("sync") == EXIT_REFUSED
        assert f"already running (sync {running})" in capsys.readouterr().err
    finally:
        thread.join(60)
    assert results[0].status == "ok" and results[0].sync_id == running
    statuses = [r["status"] for r in medium.store.query("SELECT status FROM sync_events ORDER BY id")]
    assert statuses == ["ok"], "the refused attempts leave no sync_events rows"
    medium.faults.latency = 0
    assert medium.sync().status == "ok"


def test_a_second_process_cannot_sync_while_one_runs(medium: Env) -> None:
    medium.faults.latency = 0.15  # ~25 requests in series: the in-process sync outlasts the child's startup
    bus = EventBus()
    started = threading.Event()
    bus.subscribe(lambda e: started.set() if e.type == "sync.started" else None)
    results: list[Any] = []

    def first() -> None:
        store = open_store(medium.db_path)
        try:
            results.append(sync_server(medium.config, store, "home", bus=bus, retry=FAST))
        finally:
            store.close()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(10)
        child = subprocess.run(
            [sys.executable, "-m", "smartplexd", "-c", str(medium.config_path), "sync", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parent.parent)},
        )
        finished_first = not thread.is_alive()
    finally:
        thread.join(60)
    assert not finished_first, "the in-process sync ended before the child tried; raise the latency"
    assert child.returncode == EXIT_REFUSED, child.stderr
    assert json.loads(child.stdout)[0]["status"] == "locked"
    assert "already running (sync" in child.stderr
    assert results[0].status == "ok"


# ------------------------------------------------------------------------------------------- tombstones


def tombstone(store: Store, rating_key: int, *, expires_in: float = 365 * DAY) -> None:
    """What the deletion executor writes after deleting an item (and its descendants' rows)."""
    r = row(store, rating_key)
    now = time.time()
    with store.transaction():
        store.execute(
            "UPDATE media_items SET deleted_at = ? WHERE server = 'home' AND (rating_key = ? "
            "OR parent_rating_key = ? OR grandparent_rating_key = ?)",
            (now, r["rating_key"], r["rating_key"], r["rating_key"]),
        )
        store.execute(
            "INSERT INTO tombstones (server, rating_key, item_id, guids, created_at, expires_at) "
            "VALUES ('home', ?, ?, ?, ?, ?)",
            (r["rating_key"], r["id"], json.dumps(tombstone_guids(r)), now, now + expires_in),
        )


def test_an_item_deleted_by_smartplexd_is_never_revived_by_a_sync(small: Env) -> None:
    small.sync()
    movie = small.universe.movies[5]
    title = movie.title
    tombstone(small.store, movie.rating_key)
    # Plex still lists it (its Plex step has not run yet) and even changed it.
    small.server.call(lambda: small.state.update_item(movie.rating_key, title="Still Here"))
    result = small.sync()
    assert result.counts["tombstoned"] == 1
    r = row(small.store, movie.rating_key)
    assert r["deleted_at"] is not None and r["title"] == title and r["removed_at"] is None
    assert sync_item(small.config, small.store, "home", movie.rating_key) == "tombstoned"
    assert row(small.store, movie.rating_key)["title"] == title


def test_a_reimport_under_a_new_rating_key_is_kept_out_until_the_tombstone_expires(small: Env) -> None:
    small.sync()
    movie = small.universe.movies[6]
    tombstone(small.store, movie.rating_key)
    small.server.call(small.state.remove_item, movie.rating_key)
    again = small.server.call(
        lambda: small.state.add_movie(movie.title, year=movie.year, tmdb=movie.tmdb, imdb=movie.imdb, added_at=NOW)
    )
    result = small.sync()
    assert result.counts["tombstoned"] == 1 and result.counts["added"] == 0
    assert small.store.query("SELECT * FROM media_items WHERE rating_key = ?", (str(again.rating_key),)) == []
    assert sync_item(small.config, small.store, "home", again.rating_key) == "tombstoned"
    small.store.execute("UPDATE tombstones SET expires_at = ?", (time.time() - 1,))
    result = small.sync()
    assert result.counts["added"] == 1
    assert row(small.store, again.rating_key)["tmdb_id"] == movie.tmdb


def test_a_reimported_show_brings_none_of_its_seasons_or_episodes_back(small: Env) -> None:
    small.sync()
    show = small.universe.shows[0]
    tombstone(small.store, show.rating_key)
    small.server.call(small.state.remove_item, show.rating_key)
    again = small.server.call(
        lambda: small.state.add_show(show.title, tvdb=show.tvdb, tmdb=show.tmdb, imdb=show.imdb, seasons=2, episodes=3)
    )
    result = small.sync()
    assert result.counts["tombstoned"] == 1 + 2 + 6 and result.counts["added"] == 0
    assert result.counts["removed"] == 0, "rows already tombstoned are not swept again"
    new_keys = (
        [again.rating_key]
        + [s.rating_key for s in again.seasons]
        + [e.rating_key for s in again.seasons for e in s.episodes]
    )
    placeholders = ",".join("?" * len(new_keys))
    assert (
        small.store.query(f"SELECT 1 FROM media_items WHERE rating_key IN ({placeholders})", [str(k) for k in new_keys])
        == []
    )
    assert sync_item(small.config, small.store, "home", again.rating_key) == "tombstoned"


# ------------------------------------------------------------------------------------------- one item


def test_sync_item_adds_updates_and_removes_single_items(small: Env) -> None:
    small.sync()
    state, srv, u = small.state, small.server, small.universe
    config, store = small.config, small.store
    movie = srv.call(lambda: state.add_movie("Webhook Movie", size=7_000, added_at=NOW))
    assert sync_item(config, store, "home", movie.rating_key) == "added"
    assert sync_item(config, store, "home", str(movie.rating_key)) == "unchanged"
    srv.call(lambda: state.update_item(movie.rating_key, title="Webhook Movie (2024)"))
    assert sync_item(config, store, small.config.plex_server("home"), movie.rating_key) == "updated"
    assert row(store, movie.rating_key)["title"] == "Webhook Movie (2024)"

    episode = u.shows[1].seasons[0].episodes[0]
    srv.call(lambda: state.update_item(episode.rating_key, size=episode.size + 1_000))
    assert sync_item(config, store, "home", episode.rating_key) == "updated"
    assert row(store, u.shows[1].seasons[0].rating_key)["size_bytes"] == sum(
        e.size for e in u.shows[1].seasons[0].episodes
    )
    assert row(store, u.shows[1].rating_key)["size_bytes"] == u.shows[1].size

    show = srv.call(lambda: state.add_show("Webhook Show", seasons=2, episodes=2, episode_size=1_000, added_at=NOW))
    assert sync_item(config, store, "home", show.rating_key) == "added"
    assert row(store, show.rating_key)["size_bytes"] == 4_000
    assert row(store, show.seasons[1].episodes[1].rating_key)["grandparent_rating_key"] == str(show.rating_key)

    srv.call(state.remove_item, movie.rating_key)
    assert sync_item(config, store, "home", movie.rating_key) == "removed"
    assert row(store, movie.rating_key)["removed_at"] is not None
    assert sync_item(config, store, "home", movie.rating_key) == "unchanged"
    srv.call(state.remove_item, show.rating_key)
    assert sync_item(config, store, "home", show.rating_key) == "removed"
    assert row(store, show.seasons[0].episodes[0].rating_key)["removed_at"] is not None
    assert sync_item(config, store, "home", 999_999) == "unchanged"
    assert_mirrors_plex(small)


def test_sync_item_raises_plex_unauthorized_and_marks_the_server(small: Env) -> None:
    small.faults.revoke_auth = True
    with pytest.raises(PlexUnauthorized):
        sync_item(small.config, small.store, "home", small.universe.movies[0].rating_key)
    assert health(small.store)["status"] == "unauthorized"


# ------------------------------------------------------------------------------------------- progress, CLI


def test_progress_events_are_published_and_throttled(tmp_path: Path) -> None:
    universe = generate(seed=14, movies=3000, shows=10, seasons_per_show=2, episodes_per_season=4, now=NOW)
    for env in make_env(tmp_path, universe, page_size=50):
        bus = EventBus()
        result = env.sync(bus=bus)
        events = bus.since(0)
        progress = [e.data for e in events if e.type == "sync.progress"]
        pages = 3000 // 50 + 3
        assert 2 <= len(progress) < pages
        last = {p["library"]: p for p in progress}
        assert last["Movies"]["done"] == last["Movies"]["total"] == 3000
        assert last["TV Shows"]["done"] == last["TV Shows"]["total"] == 10 * (1 + 2 + 8)
        assert all(p["server"] == "home" and p["sync_id"] == result.sync_id for p in progress)
        assert all(p["rate"] >= 0 and (p["eta_s"] is None or p["eta_s"] >= 0) for p in progress)
        finished = events[-1]
        assert finished.type == "sync.finished" and finished.data["status"] == "ok"
        assert finished.data["counts"]["added"] == universe.plex_item_count


def test_the_cli_syncs_and_prints_json(small: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert small.cli("sync", "--json", "--library", "Movies") == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out[0]["status"] == "ok" and out[0]["counts"]["added"] == 24
    assert [lib["title"] for lib in out[0]["libraries"]] == ["Movies"]
    assert small.cli("sync") == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("home: ok (sync ") and "26 added" in text


# ------------------------------------------------------------------------------------------- secrets


def test_the_token_never_appears_in_logs_the_database_or_any_url(small: Env, caplog: pytest.LogCaptureFixture) -> None:
    # Every library that could print a URL or a header, at DEBUG (the CLI's log setup may have quietened them).
    for name in ("", "httpx", "httpcore", "plexapi", "urllib3", "smartplexd"):
        caplog.set_level(logging.DEBUG, logger=name)
    small.faults.fail_next = 1  # the retry path logs too
    assert small.sync().status == "ok"
    sync_item(small.config, small.store, "home", small.universe.movies[0].rating_key)
    small.faults.revoke_auth = True
    assert small.sync().status == "unauthorized"
    assert caplog.records
    assert TOKEN not in caplog.text
    for path in small.db_path.parent.iterdir():
        if path.name.startswith(small.db_path.name):
            assert TOKEN.encode() not in path.read_bytes(), path.name
    requests = httpx.get(f"{small.server.url}/_sim/requests").json()
    assert len(requests) > 10
    for request in requests:
        assert "x-plex-token" in request["header_names"]
        assert TOKEN not in request["path"] + json.dumps(request["query"]) + json.dumps(request["headers"])


# ------------------------------------------------------------------------------------------- page cache


def test_a_page_plex_sends_unchanged_is_still_checked_against_the_database(small: Env) -> None:
    """Pages whose body Plex sends byte for byte again are not parsed, but their items are still checked:
    a row deleted by smartplexd, removed by a one-item sync or rewritten meanwhile is handled as without it."""
    first = small.sync()
    pages = small.store.query_one("SELECT COUNT(*) AS n FROM sync_pages WHERE server = 'home'")
    assert pages is not None and pages["n"] > 0
    again = small.sync()
    assert again.counts["unchanged"] == first.counts["added"] == 50

    u = small.universe
    deleted, removed, tampered = u.movies[3], u.movies[4], u.shows[0].seasons[0].episodes[1]
    tombstone(small.store, deleted.rating_key)
    # A one-item sync saw a 404 (Plex was briefly confused); the listing still shows the movie.
    small.store.execute(
        "UPDATE media_items SET removed_at = 1 WHERE server = 'home' AND rating_key = ?", (str(removed.rating_key),)
    )
    small.store.execute(
        "UPDATE media_items SET title = 'edited', content_hash = 'x' WHERE server = 'home' AND rating_key = ?",
        (str(tampered.rating_key),),
    )
    result = small.sync()
    assert result.status == "ok"
    assert result.counts["tombstoned"] == 1
    assert result.counts["restored"] == 1 and result.counts["updated"] == 1
    assert result.counts["unchanged"] == 50 - 3
    assert row(small.store, deleted.rating_key)["deleted_at"] is not None
    assert row(small.store, removed.rating_key)["removed_at"] is None
    assert row(small.store, tampered.rating_key)["title"] == tampered.title
    final = small.sync()
    assert final.counts["unchanged"] == 49 and final.counts["tombstoned"] == 1


def test_a_row_written_by_a_one_item_sync_is_unchanged_for_the_next_full_sync(small: Env) -> None:
    small.sync()
    movie = small.universe.movies[8]
    small.server.call(lambda: small.state.update_item(movie.rating_key, title="Via Webhook"))
    assert sync_item(small.config, small.store, "home", movie.rating_key) == "updated"
    result = small.sync()
    # Plex's full view and its listing differ; the row's values do not: nothing is written again.
    assert result.counts["updated"] == 0 and result.counts["unchanged"] == 50
    assert row(small.store, movie.rating_key)["title"] == "Via Webhook"
    assert sync_item(small.config, small.store, "home", movie.rating_key) == "unchanged"


def test_a_first_load_over_rows_that_already_exist_counts_and_writes_them_exactly(small: Env) -> None:
    """A library's first load inserts without asking first; rows that were there anyway (here: written under
    another section id, one of them removed) are classified as in any other sync."""
    moved, gone = small.universe.movies[2], small.universe.movies[9]
    for movie, removed_at in ((moved, None), (gone, 1.0)):
        small.store.execute(
            "INSERT INTO media_items (server, section_id, section_title, rating_key, type, title, removed_at) "
            "VALUES ('home', '99', 'Old', ?, 'movie', 'stale', ?)",
            (str(movie.rating_key), removed_at),
        )
    result = small.sync()
    assert result.status == "ok"
    assert (result.counts["added"], result.counts["updated"], result.counts["restored"]) == (49, 1, 1)
    assert result.counts["unchanged"] == 0 and result.counts["seen"] == 50
    assert_mirrors_plex(small)
    assert row(small.store, moved.rating_key)["title"] == moved.title
    again = small.sync()
    assert again.counts["unchanged"] == 50
