"""The Sonarr plugin against a simulated Sonarr over real HTTP: shows, seasons and episodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import plugin_support as ps
import pytest

from smartplexd.demo import sonarr
from smartplexd.demo.arr import ARR_STATE
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Show, Universe, generate
from smartplexd.enrich import enrich_all
from smartplexd.events import EventBus
from smartplexd.health import check_health
from smartplexd.model import Health, StepStatus
from smartplexd_plugins import sonarr as plugin

CONTRACTS = Path(__file__).resolve().parent / "contracts"


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=5, movies=4, shows=12, seasons_per_show=2, episodes_per_season=3, now=1_700_000_000)


@pytest.fixture
def srv(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(sonarr.create_app(universe)) as s:
        yield s


def state(srv: ThreadedServer) -> sonarr.SonarrState:
    s = srv.app[ARR_STATE]
    assert isinstance(s, sonarr.SonarrState)
    return s


def config(tmp_path: Path, url: str):
    return ps.write_config(tmp_path, f"sonarr:\n  - {{url: '{url}', api_key: demo-sonarr-key, timeout: 2}}\n")


def held(universe: Universe) -> Show:
    return next(s for s in universe.shows if s.sonarr == "sonarr")


def test_health_ok_unauthorized_and_down(tmp_path: Path, srv: ThreadedServer) -> None:
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        (ok,) = check_health(cfg, db, bus=EventBus())
        assert (ok.name, ok.status, ok.version) == ("sonarr", Health.OK, "4.0.14.2939")
        assert any(d["path"] == "/data/tv" for d in ok.details["disk"])
        srv.app[FAULTS].revoke_auth = True
        assert check_health(cfg, db, bus=EventBus())[0].status == Health.UNAUTHORIZED
        srv.app[FAULTS].revoke_auth = False
        srv.app[FAULTS].down = True
        assert check_health(cfg, db, bus=EventBus())[0].status == Health.DOWN
    with ps.store(tmp_path) as db:
        assert check_health(config(tmp_path, ps.stopped_url()), db, bus=EventBus())[0].status == Health.DOWN


def test_enrich_shows_seasons_and_episodes(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    cfg = config(tmp_path, srv.url)
    show = held(universe)
    missing = next(s for s in universe.shows if s.sonarr is None)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        # A second Plex server with the same show (a duplicate GUID): it matches too.
        dup = ps.insert(db, server="other", rating_key="1", type="show", title=show.title, tvdb_id=show.tvdb)
        # Batches of 5 put most episodes in a batch without their show: matched through the store.
        summary = enrich_all(cfg, db, batch_size=5, bus=EventBus())["sonarr"]

        status, f, _ = ps.facts(db, ids[show.rating_key], "sonarr")
        assert status == "known"
        assert f["sonarr.status"] == show.status and f["sonarr.monitored"] is show.monitored
        assert f["sonarr.size_on_disk"] == show.size and f["sonarr.episode_file_count"] == 6
        assert f["sonarr.instance"] == "sonarr" and f["sonarr.tags"] == show.tags
        assert f["sonarr.added"] == show.added_at and f["sonarr.quality_profile"] in ("Any", "HD-1080p")

        season = show.seasons[1]
        season_size = sum(e.size for e in season.episodes)
        status, f, _ = ps.facts(db, ids[season.rating_key], "sonarr")
        assert status == "known" and f["sonarr.size_on_disk"] == season_size and f["sonarr.episode_file_count"] == 3
        status, f, _ = ps.facts(db, ids[season.episodes[0].rating_key], "sonarr")
        assert status == "known" and f["sonarr.size_on_disk"] == season_size and f["sonarr.status"] == show.status

        assert ps.facts(db, dup, "sonarr")[0] == "known"
        for key in (missing.rating_key, missing.seasons[0].rating_key, missing.seasons[0].episodes[0].rating_key):
            assert ps.facts(db, ids[key], "sonarr")[0] == "absent"
        assert ps.facts(db, ids[universe.movies[0].rating_key], "sonarr")[0] == "absent"
        assert summary.unknown == 0
    assert ps.catalogue_requests(srv, "/api/v3/series") == 1


def test_enrich_with_sonarr_down_is_unknown(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    srv.app[FAULTS].down = True
    with ps.store(tmp_path) as db:
        ps.insert_universe(db, universe)
        summary = enrich_all(config(tmp_path, srv.url), db, bus=EventBus())["sonarr"]
        assert set(ps.statuses(db, "sonarr").values()) == {"unknown"}
        assert summary.known == summary.absent == 0 and "sonarr: unreachable" in (summary.error or "")


def _targets(cfg, db, item_id: int, action: str | None = None):
    return ps.run(plugin.smartplexd_cascade_targets(ps.item(db, item_id), {}, ps.ctx(cfg, db, action)))


def _step(cfg, db, item_id: int, target):
    return ps.run(plugin.smartplexd_cascade_step(ps.item(db, item_id), target, ps.ctx(cfg, db)))


def test_season_delete_removes_its_episode_files_and_unmonitors_them(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    cfg = config(tmp_path, srv.url)
    show = held(universe)
    season = show.seasons[0]
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[season.rating_key])
        assert (target.plugin, target.target, target.order, target.action) == (
            "sonarr",
            "sonarr",
            20,
            "delete_episodes",
        )
        assert len(target.data["episode_file_ids"]) == 3 and target.data["size"] == sum(e.size for e in season.episodes)

        result = _step(cfg, db, ids[season.rating_key], target)
        assert result.status == StepStatus.DONE and result.details["files_deleted"] == 3, result.message
        series = state(srv).series_by_tvdb(show.tvdb)
        assert series is not None  # the series stays
        eps = [state(srv).episodes[i] for i in series.episode_ids]
        assert [(e.season_number, e.file_id != 0, e.monitored) for e in eps] == [
            (1, False, False),
            (1, False, False),
            (1, False, False),
            (2, True, show.monitored),
            (2, True, show.monitored),
            (2, True, show.monitored),
        ]
        again = _step(cfg, db, ids[season.rating_key], target)
        assert again.status == StepStatus.DONE and again.already_gone

        # One episode of the other season: only its file goes.
        episode = show.seasons[1].episodes[2]
        (target,) = _targets(cfg, db, ids[episode.rating_key])
        assert len(target.data["episode_ids"]) == 1
        assert _step(cfg, db, ids[episode.rating_key], target).details["files_deleted"] == 1
        assert sum(1 for e in eps if e.file_id) == 2

        (unmonitor,) = _targets(cfg, db, ids[show.seasons[1].rating_key], "unmonitor")
        assert unmonitor.action == "unmonitor_episodes"


def test_show_delete_is_idempotent_reports_errors_and_restores(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    cfg = config(tmp_path, srv.url)
    show = held(universe)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[show.rating_key])
        assert target.action == "delete" and target.data["snapshot"]["tvdbId"] == show.tvdb
        srv.app[FAULTS].error_status, srv.app[FAULTS].fail_next = 502, 3
        failed = _step(cfg, db, ids[show.rating_key], target)
        assert failed.status == StepStatus.FAILED and failed.message == "sonarr: HTTP 502: simulated error 502"

        done = _step(cfg, db, ids[show.rating_key], target)
        assert done.status == StepStatus.DONE and not done.already_gone and done.details["bytes_freed"] == show.size
        (deleted,) = state(srv).deletes
        assert deleted["kind"] == "series" and deleted["deleteFiles"] is True
        assert _step(cfg, db, ids[show.rating_key], target).already_gone

        restored = ps.run(plugin.smartplexd_restore({}, target, ps.ctx(cfg, db)))
        assert restored.ok, restored.message
        back = state(srv).series_by_tvdb(show.tvdb)
        assert back is not None and back.quality_profile_id == show.quality_profile_id and back.monitored
        assert back.root_folder_path == "/data/tv"
        assert state(srv).commands_named("MissingEpisodeSearch")[-1]["body"]["seriesId"] == back.id


def test_episode_step_restore_monitors_again_and_searches(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    cfg = config(tmp_path, srv.url)
    show = held(universe)
    episode = show.seasons[0].episodes[0]
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[episode.rating_key])
        assert _step(cfg, db, ids[episode.rating_key], target).status == StepStatus.DONE
        result = ps.run(plugin.smartplexd_restore({}, target, ps.ctx(cfg, db)))
        assert result.ok
        (episode_id,) = target.data["episode_ids"]
        assert state(srv).episodes[episode_id].monitored is True
        assert state(srv).commands_named("EpisodeSearch")[-1]["body"]["episodeIds"] == [episode_id]


def test_every_sonarr_webhook_fixture_parses(tmp_path: Path) -> None:
    cfg = config(tmp_path, "http://127.0.0.1:8989")
    ctx = ps.ctx(cfg)
    expected = {
        "webhook_test.json": "test",
        "webhook_download.json": "item.added",
        "webhook_seriesdelete.json": "item.deleted_upstream",
        "webhook_episodefiledelete.json": "item.deleted_upstream",
        "webhook_rename.json": "unknown",
        "webhook_health.json": "unknown",
    }
    for name, etype in expected.items():
        payload = json.loads((CONTRACTS / "sonarr" / name).read_text())
        (event,) = plugin.smartplexd_webhook("sonarr", payload, ctx)
        assert event.type == etype, name
    download = json.loads((CONTRACTS / "sonarr" / "webhook_download.json").read_text())
    (event,) = plugin.smartplexd_webhook("sonarr", download, ctx)
    assert event.tvdb_id == 280619 and event.details["episodes"]
    assert plugin.smartplexd_webhook("radarr", download, ctx) is None
