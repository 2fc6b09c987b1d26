"""The Radarr plugin against simulated Radarr instances (a normal one and a 4K one) over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import plugin_support as ps
import pytest

from smartplexd.config import ConfigError
from smartplexd.demo import radarr
from smartplexd.demo.arr import ARR_STATE
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.enrich import enrich_all
from smartplexd.events import EventBus
from smartplexd.health import check_health, stored
from smartplexd.model import Health, StepStatus
from smartplexd_plugins import radarr as plugin

CONTRACTS = Path(__file__).resolve().parent / "contracts"


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=11, movies=60, shows=2, seasons_per_show=1, episodes_per_season=2, now=1_700_000_000)


@pytest.fixture
def hd(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(radarr.create_app(universe, instance="radarr")) as srv:
        yield srv


@pytest.fixture
def uhd(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(radarr.create_app(universe, instance="radarr4k", api_key="demo-radarr4k-key")) as srv:
        yield srv


def state(srv: ThreadedServer) -> radarr.RadarrState:
    s = srv.app[ARR_STATE]
    assert isinstance(s, radarr.RadarrState)
    return s


def config(tmp_path: Path, hd: ThreadedServer, uhd: ThreadedServer | None = None, uhd_url: str | None = None):
    text = f"radarr:\n  - {{name: radarr, url: '{hd.url}', api_key: demo-radarr-key, timeout: 2}}\n"
    if uhd is not None or uhd_url:
        url = uhd_url or uhd.url  # type: ignore[union-attr]
        text += f"  - {{name: radarr4k, url: '{url}', api_key: demo-radarr4k-key, timeout: 2,\n"
        text += "      add_import_exclusion: true}\n"
    return ps.write_config(tmp_path, text)


# ------------------------------------------------------------------------------------------- config


def test_config_is_validated_at_load_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        ps.write_config(
            tmp_path,
            """
            radarr:
              - {url: 'http://127.0.0.1:7878', api_key: k1234}
              - {url: 'http://127.0.0.1:7879', api_key: k5678, api_version: v2}
            """,
        )
    text = str(err.value)
    assert "config.yaml:8:67: integrations.radarr[1].api_version" in text  # the v2 line
    with pytest.raises(
        ConfigError, match=r"config\.yaml:\d+:\d+: integrations\.radarr: .*names must be unique: radarr"
    ):
        ps.write_config(
            tmp_path,
            """
            radarr:
              - {url: 'http://127.0.0.1:7878', api_key: k1234}
              - {url: 'http://127.0.0.1:7879', api_key: k5678}
            """,
        )
    ok = ps.write_config(tmp_path, "radarr:\n  - {url: 'http://127.0.0.1:7878', api_key: k1234}\n")
    (instance,) = ok.integrations["radarr"]
    assert (
        instance.name,
        instance.api_version,
        instance.delete_files,
        instance.add_import_exclusion,
        instance.timeout,
    ) == (
        "radarr",
        "v3",
        True,
        False,
        10.0,
    )


# ------------------------------------------------------------------------------------------- health


def test_health_ok_reports_version_latency_and_disk_space(
    tmp_path: Path, hd: ThreadedServer, uhd: ThreadedServer
) -> None:
    cfg = config(tmp_path, hd, uhd)
    bus = EventBus()
    changes = ps.Recorder(bus, "health.changed")
    with ps.store(tmp_path) as db:
        results = check_health(cfg, db, bus=bus)
        by_name = {r.name: r for r in results if r.plugin == "radarr"}
        assert by_name["radarr"].status == Health.OK and by_name["radarr"].version == "5.14.0.9383"
        assert by_name["radarr"].latency_ms is not None
        rows = {r["name"]: r for r in stored(db)}
        disk = rows["radarr4k"]["details"]["disk"]
        media = next(d for d in disk if d["path"] == "/data/movies")
        assert media["free"] == state(uhd).free_space() and media["total"] > media["free"] > 0
        assert {c["name"] for c in changes.of("health.changed")} == {"radarr", "radarr4k"}
        # Nothing changed: no event. The 4K instance's key is revoked: one event, unauthorized.
        check_health(cfg, db, bus=bus)
        assert len(changes.of("health.changed")) == 2
        uhd.app[FAULTS].revoke_auth = True
        check_health(cfg, db, bus=bus)
        last = changes.of("health.changed")[-1]
        assert (last["name"], last["status"], last["previous"]) == ("radarr4k", "unauthorized", "ok")
        assert stored(db)[1]["status"] == "unauthorized"


def test_health_down_when_the_service_drops_connections_or_is_stopped(tmp_path: Path, hd: ThreadedServer) -> None:
    cfg = config(tmp_path, hd, uhd_url=ps.stopped_url())
    hd.app[FAULTS].down = True
    with ps.store(tmp_path) as db:
        results = {r.name: r for r in check_health(cfg, db, bus=EventBus())}
    assert results["radarr"].status == Health.DOWN and "radarr: unreachable" in (results["radarr"].error or "")
    assert results["radarr4k"].status == Health.DOWN and "ConnectError" in (results["radarr4k"].error or "")


# ------------------------------------------------------------------------------------------- enrich


def test_enrich_mixed_library(tmp_path: Path, universe: Universe, hd: ThreadedServer, uhd: ThreadedServer) -> None:
    """Matched in one instance, in the 4K instance, in both, by imdb only, unmatched, and a duplicate GUID."""
    in_hd = [m for m in universe.movies if m.radarr == "radarr"]
    in_uhd = [m for m in universe.movies if m.radarr == "radarr4k"]
    nowhere = [m for m in universe.movies if m.radarr is None]
    assert in_hd and in_uhd and nowhere
    both = in_hd[0]
    uhd.call(lambda: state(uhd).add(both.tmdb, has_file=True, quality_profile_id=5, monitored=False))
    cfg = config(tmp_path, hd, uhd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        duplicate = ps.insert(db, server="other", rating_key="77", title=in_hd[1].title, tmdb_id=in_hd[1].tmdb)
        imdb_only = ps.insert(db, rating_key="78", title=in_hd[2].title, imdb_id=in_hd[2].imdb)
        stranger = ps.insert(db, rating_key="79", title="Not Anywhere", tmdb_id=999_999)
        summary = enrich_all(cfg, db, batch_size=7, bus=EventBus())["radarr"]

        status, f, _ = ps.facts(db, ids[in_hd[3].rating_key], "radarr")
        source = in_hd[3]
        assert status == "known"
        assert f["radarr.instance"] == "radarr" and f["radarr.instances"] == ["radarr"]
        assert f["radarr.size_on_disk"] == source.size and f["radarr.has_file"] is True
        assert f["radarr.monitored"] is source.monitored and f["radarr.tags"] == source.tags
        assert f["radarr.added"] == source.added_at
        assert f["radarr.quality_profile"] == {1: "Any", 4: "HD-1080p"}[source.quality_profile_id]

        status, f, _ = ps.facts(db, ids[in_uhd[0].rating_key], "radarr")
        assert status == "known" and f["radarr.instance"] == "radarr4k" and f["radarr.quality_profile"] == "Ultra-HD"

        # In both instances: sizes summed, monitored if either monitors it, both named, first one first.
        status, f, _ = ps.facts(db, ids[both.rating_key], "radarr")
        assert f["radarr.instances"] == ["radarr", "radarr4k"] and f["radarr.instance"] == "radarr"
        assert f["radarr.size_on_disk"] == 2 * both.size
        assert f["radarr.monitored"] is both.monitored  # the 4K copy is unmonitored

        assert ps.facts(db, duplicate, "radarr")[1]["radarr.size_on_disk"] == in_hd[1].size
        assert ps.facts(db, imdb_only, "radarr")[1]["radarr.instance"] == "radarr"
        assert ps.facts(db, stranger, "radarr")[:2] == ("absent", {})
        for m in nowhere:
            assert ps.facts(db, ids[m.rating_key], "radarr")[0] == "absent"
        show = universe.shows[0]
        assert ps.facts(db, ids[show.rating_key], "radarr")[0] == "absent"
        assert summary.unknown == 0 and summary.known == len(in_hd) + len(in_uhd) + 2

    # One catalogue request per instance for the whole run, however many batches (items / 7).
    assert ps.catalogue_requests(hd, "/api/v3/movie") == 1
    assert ps.catalogue_requests(uhd, "/api/v3/movie") == 1


def test_enrich_with_one_instance_down_is_unknown_never_absent(
    tmp_path: Path, universe: Universe, hd: ThreadedServer, uhd: ThreadedServer
) -> None:
    cfg = config(tmp_path, hd, uhd)
    movie = next(m for m in universe.movies if m.radarr == "radarr")
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        enrich_all(cfg, db, bus=EventBus())
        assert ps.facts(db, ids[movie.rating_key], "radarr")[0] == "known"
        uhd.app[FAULTS].down = True
        summary = enrich_all(cfg, db, bus=EventBus())["radarr"]
        status, f, error = ps.facts(db, ids[movie.rating_key], "radarr")
        # The healthy instance's movie is unknown too: its combined facts could miss a 4K copy.
        assert status == "unknown" and "radarr4k: unreachable" in (error or "")
        assert f["radarr.size_on_disk"] == movie.size  # last known facts kept, but flagged unknown
        assert set(ps.statuses(db, "radarr").values()) == {"unknown"}
        assert summary.known == summary.absent == 0


def test_enrich_retries_a_5xx_and_then_succeeds(tmp_path: Path, universe: Universe, hd: ThreadedServer) -> None:
    cfg = config(tmp_path, hd)
    hd.app[FAULTS].fail_next = 1
    with ps.store(tmp_path) as db:
        ps.insert_universe(db, universe)
        summary = enrich_all(cfg, db, bus=EventBus())["radarr"]
    assert summary.unknown == 0 and summary.known > 0
    assert ps.catalogue_requests(hd, "/api/v3/movie") == 2  # the 503 and the retry


# ------------------------------------------------------------------------------------------ cascade


def _targets(cfg, db, item_id: int, action: str | None = None):
    return ps.run(plugin.smartplexd_cascade_targets(ps.item(db, item_id), {}, ps.ctx(cfg, db, action)))


def _step(cfg, db, item_id: int, target, action: str | None = None):
    return ps.run(plugin.smartplexd_cascade_step(ps.item(db, item_id), target, ps.ctx(cfg, db, action)))


def test_delete_step_deletes_with_files_and_exclusion_and_is_idempotent(
    tmp_path: Path, universe: Universe, hd: ThreadedServer, uhd: ThreadedServer
) -> None:
    both = next(m for m in universe.movies if m.radarr == "radarr")
    uhd.call(lambda: state(uhd).add(both.tmdb, has_file=True, quality_profile_id=5))
    cfg = config(tmp_path, hd, uhd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        targets = _targets(cfg, db, ids[both.rating_key])
        assert [(t.plugin, t.target, t.order, t.action) for t in targets] == [
            ("radarr", "radarr", 20, "delete"),
            ("radarr", "radarr4k", 20, "delete"),
        ]
        snap = targets[0].data["snapshot"]
        assert snap["tmdbId"] == both.tmdb and snap["qualityProfileId"] == both.quality_profile_id
        assert snap["rootFolderPath"] == "/data/movies" and targets[0].data["movie_id"]
        json.dumps([t.data for t in targets])  # stored with the step: must be plain JSON

        free_before = state(hd).free_space()
        results = [_step(cfg, db, ids[both.rating_key], t) for t in targets]
        assert [r.status for r in results] == [StepStatus.DONE, StepStatus.DONE]
        assert not any(r.already_gone for r in results)
        assert results[0].details["bytes_freed"] == both.size
        assert state(hd).free_space() == free_before + both.size
        (hd_delete,) = state(hd).deletes
        assert hd_delete["deleteFiles"] is True and hd_delete["addImportExclusion"] is False
        assert state(uhd).deletes[0]["addImportExclusion"] is True  # radarr4k: add_import_exclusion: true

        again = [_step(cfg, db, ids[both.rating_key], t) for t in targets]
        assert all(r.status == StepStatus.DONE and r.already_gone for r in again)
        assert len(state(hd).deletes) == 1


def test_unmonitor_step_and_restore(tmp_path: Path, universe: Universe, hd: ThreadedServer) -> None:
    movie = next(m for m in universe.movies if m.radarr == "radarr" and m.monitored)
    cfg = config(tmp_path, hd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key], "unmonitor")
        assert target.action == "unmonitor"
        result = _step(cfg, db, ids[movie.rating_key], target, "unmonitor")
        assert result.status == StepStatus.DONE and "unmonitored" in result.message
        assert state(hd).movie_by_tmdb(movie.tmdb).monitored is False  # type: ignore[union-attr]
        assert "already unmonitored" in _step(cfg, db, ids[movie.rating_key], target, "unmonitor").message
        assert state(hd).deletes == []
        restored = ps.run(plugin.smartplexd_restore({}, target, ps.ctx(cfg, db)))
        assert restored.ok and state(hd).movie_by_tmdb(movie.tmdb).monitored is True  # type: ignore[union-attr]


def test_restore_re_adds_with_the_stored_profile_and_root_folder_and_searches(
    tmp_path: Path, universe: Universe, hd: ThreadedServer
) -> None:
    movie = next(m for m in universe.movies if m.radarr == "radarr" and m.quality_profile_id == 1)
    cfg = config(tmp_path, hd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        assert _step(cfg, db, ids[movie.rating_key], target).status == StepStatus.DONE
        assert state(hd).movie_by_tmdb(movie.tmdb) is None
        result = ps.run(plugin.smartplexd_restore({"id": 1}, target, ps.ctx(cfg, db)))
        assert result.ok, result.message
        back = state(hd).movie_by_tmdb(movie.tmdb)
        assert back is not None and back.quality_profile_id == 1 and back.root_folder_path == "/data/movies"
        assert back.monitored is True
        assert state(hd).searches[-1]["body"]["movieIds"] == [back.id]
        again = ps.run(plugin.smartplexd_restore({"id": 1}, target, ps.ctx(cfg, db)))
        assert again.ok and "already in radarr" in again.message


def test_step_errors_carry_the_service_message(tmp_path: Path, universe: Universe, hd: ThreadedServer) -> None:
    movie = next(m for m in universe.movies if m.radarr == "radarr")
    cfg = config(tmp_path, hd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        hd.app[FAULTS].down = True
        down = _step(cfg, db, ids[movie.rating_key], target)
        assert down.status == StepStatus.FAILED and down.message.startswith("radarr: unreachable") and down.retryable
        hd.app[FAULTS].down = False
        hd.app[FAULTS].error_status, hd.app[FAULTS].fail_next = 500, 3
        failed = _step(cfg, db, ids[movie.rating_key], target)
        assert failed.status == StepStatus.FAILED and failed.retryable
        assert failed.message == "radarr: HTTP 500: simulated error 500"
        hd.app[FAULTS].revoke_auth = True
        denied = _step(cfg, db, ids[movie.rating_key], target)
        assert denied.status == StepStatus.FAILED and not denied.retryable and "HTTP 401" in denied.message
        hd.app[FAULTS].revoke_auth = False
        assert state(hd).deletes == []
        assert _step(cfg, db, ids[movie.rating_key], target).status == StepStatus.DONE


def test_a_target_for_an_instance_down_at_intent_time_resolves_when_it_runs(
    tmp_path: Path, universe: Universe, hd: ThreadedServer
) -> None:
    movie = next(m for m in universe.movies if m.radarr == "radarr")
    cfg = config(tmp_path, hd)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        hd.app[FAULTS].down = True
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        assert target.data["unresolved"] and target.data["movie_id"] is None
        hd.app[FAULTS].down = False
        result = _step(cfg, db, ids[movie.rating_key], target)
        assert result.status == StepStatus.DONE and not result.already_gone
        assert state(hd).deletes[0]["tmdbId"] == movie.tmdb


# ----------------------------------------------------------------------------------------- webhooks


def test_every_radarr_webhook_fixture_parses(tmp_path: Path) -> None:
    cfg = ps.write_config(
        tmp_path,
        "radarr:\n  - {url: 'http://127.0.0.1:7878', api_key: k1234}\n",
        extra="webhooks:\n  movies4k: {auth: basic, username: r, password: secret-pw, sender: radarr}\n",
    )
    ctx = ps.ctx(cfg)
    expected = {
        "webhook_test.json": "test",
        "webhook_download.json": "item.added",
        "webhook_moviedelete.json": "item.deleted_upstream",
        "webhook_moviefiledelete.json": "item.deleted_upstream",
    }
    for name, etype in expected.items():
        payload = json.loads((CONTRACTS / "radarr" / name).read_text())
        (event,) = plugin.smartplexd_webhook("radarr", payload, ctx)
        assert event.type == etype and event.source == "radarr", name
    download = json.loads((CONTRACTS / "radarr" / "webhook_download.json").read_text())
    (event,) = plugin.smartplexd_webhook("movies4k", download, ctx)  # sender: radarr
    assert (event.tmdb_id, event.imdb_id) == (335984, "tt1856101")
    assert plugin.smartplexd_webhook("sonarr", download, ctx) is None
    (grab,) = plugin.smartplexd_webhook("radarr", {**download, "eventType": "Grab"}, ctx)
    assert grab.type == "unknown" and grab.details["event_type"] == "Grab"
    (upgrade,) = plugin.smartplexd_webhook("radarr", {"eventType": "MovieFileDelete", "deleteReason": "upgrade"}, ctx)
    assert upgrade.type == "unknown"
