"""The Tautulli plugin against a simulated Tautulli over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import plugin_support as ps
import pytest

from smartplexd.demo import tautulli
from smartplexd.demo.faults import FAULTS, REQUEST_LOG
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.enrich import enrich_all
from smartplexd.events import EventBus
from smartplexd.health import check_health
from smartplexd.model import Health
from smartplexd_plugins import tautulli as plugin

CONTRACTS = Path(__file__).resolve().parent / "contracts"
KEY = tautulli.DEFAULT_API_KEY


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=9, movies=120, shows=5, seasons_per_show=2, episodes_per_season=4, now=1_700_000_000)


@pytest.fixture
def srv(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(tautulli.create_app(universe)) as s:
        yield s


def config(tmp_path: Path, url: str, key: str = KEY):
    return ps.write_config(tmp_path, f"tautulli: {{url: '{url}', api_key: {key}, timeout: 2, page_size: 100}}\n")


def test_health_ok_bad_key_and_down_never_leak_the_key(tmp_path: Path, srv: ThreadedServer) -> None:
    with ps.store(tmp_path) as db:
        (ok,) = check_health(config(tmp_path, srv.url), db, bus=EventBus())
        assert (ok.name, ok.status, ok.version) == ("tautulli", Health.OK, "v2.14.3") and ok.latency_ms
        wrong = "wrong-key-0123456789"
        (bad,) = check_health(config(tmp_path, srv.url, wrong), db, bus=EventBus())
        assert bad.status == Health.UNAUTHORIZED and bad.error == "tautulli: HTTP 401: Invalid apikey"
        srv.app[FAULTS].down = True
        (down,) = check_health(config(tmp_path, srv.url), db, bus=EventBus())
        assert down.status == Health.DOWN
        stored = json.dumps(db.query("SELECT * FROM integration_health"))
        assert KEY not in stored and wrong not in stored and KEY not in (down.error or "")


def test_enrich_play_counts_from_paged_history(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    watched = max(universe.movies, key=lambda m: len({v.user for v in m.views}))
    never = next(m for m in universe.movies if not m.views)
    show = max(universe.shows, key=lambda s: sum(len(e.views) for e in s.episodes))
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        elsewhere = ps.insert(db, server="other", rating_key=str(watched.rating_key), title=watched.title)
        enrich_all(cfg, db, batch_size=50, bus=EventBus())

        status, f, _ = ps.facts(db, ids[watched.rating_key], "tautulli")
        assert status == "known"
        assert f == {
            "tautulli.play_count": len(watched.views),
            "tautulli.last_played": max(v.at for v in watched.views),
            "tautulli.users_watched": len({v.user for v in watched.views}),
            "tautulli.watch_time": sum(v.duration for v in watched.views),
            "tautulli.percent_complete_max": max(v.percent_complete for v in watched.views),
        }
        assert f["tautulli.users_watched"] >= 2
        # Never played: 0, known, because Tautulli answered.
        status, f, _ = ps.facts(db, ids[never.rating_key], "tautulli")
        assert status == "known" and f["tautulli.play_count"] == 0 and f["tautulli.last_played"] is None
        # Episodes roll up into their season and show.
        plays = [v for e in show.episodes for v in e.views]
        assert ps.facts(db, ids[show.rating_key], "tautulli")[1]["tautulli.play_count"] == len(plays)
        season = show.seasons[0]
        season_plays = sum(len(e.views) for e in season.episodes)
        assert ps.facts(db, ids[season.rating_key], "tautulli")[1]["tautulli.play_count"] == season_plays
        # Another Plex server's item with the same rating key is not Tautulli's.
        assert ps.facts(db, elsewhere, "tautulli")[0] == "absent"

    history = [r for r in srv.app[REQUEST_LOG] if r["query"].get("cmd") == "get_history"]
    rows = len(srv.app[tautulli.TAUTULLI_STATE].history_rows())
    assert rows > 200 and len(history) == -(-rows // 100)  # one request per page of 100, once per run


def test_enrich_with_tautulli_down_is_unknown_never_zero(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    never = next(m for m in universe.movies if not m.views)
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        srv.app[FAULTS].down = True
        summary = enrich_all(cfg, db, bus=EventBus())["tautulli"]
        status, f, error = ps.facts(db, ids[never.rating_key], "tautulli")
        assert (status, f) == ("unknown", {}) and "tautulli: unreachable" in (error or "")
        assert summary.known == 0 and summary.unknown == len(ids)
        srv.app[FAULTS].down = False
        srv.app[FAULTS].hang, srv.app[FAULTS].hang_seconds = True, 1
        cfg = ps.write_config(tmp_path, f"tautulli: {{url: '{srv.url}', api_key: {KEY}, timeout: 0.3}}\n")
        enrich_all(cfg, db, bus=EventBus())
        status, _, error = ps.facts(db, ids[never.rating_key], "tautulli")
        assert status == "unknown" and "timed out" in (error or "") and KEY not in (error or "")


def test_tautulli_has_no_cascade_step() -> None:
    assert not hasattr(plugin, "smartplexd_cascade_step") and not hasattr(plugin, "smartplexd_cascade_targets")


def test_every_tautulli_webhook_fixture_parses(tmp_path: Path) -> None:
    ctx = ps.ctx(config(tmp_path, "http://127.0.0.1:8181"))
    rendered = json.loads((CONTRACTS / "tautulli" / "webhook_example_rendered.json").read_text())
    (event,) = plugin.smartplexd_webhook("tautulli", rendered, ctx)
    assert (event.type, event.rating_key, event.user, event.tvdb_id) == (
        "item.watched",
        "4348",
        "DanyKhaleesi69",
        121361,
    )
    assert event.at == 1462688370.0 and event.details["progress_percent"] == 96
    for name in ("webhook_example_body.json", "webhook_example_headers.json"):
        (event,) = plugin.smartplexd_webhook("tautulli", json.loads((CONTRACTS / "tautulli" / name).read_text()), ctx)
        assert event.type == "unknown" and event.rating_key is None  # an unrendered template is no event
    (created,) = plugin.smartplexd_webhook("tautulli", {**rendered, "event": "created"}, ctx)
    assert created.type == "item.added"
    assert plugin.smartplexd_webhook("sonarr", rendered, ctx) is None
