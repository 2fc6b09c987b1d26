"""The Overseerr plugin against a simulated Overseerr over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import plugin_support as ps
import pytest

from smartplexd.demo import overseerr
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.enrich import enrich_all
from smartplexd.events import EventBus
from smartplexd.health import check_health
from smartplexd.model import Health, StepStatus
from smartplexd_plugins import overseerr as plugin

CONTRACTS = Path(__file__).resolve().parent / "contracts"
KEY = overseerr.DEFAULT_API_KEY


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=1, movies=40, shows=6, seasons_per_show=1, episodes_per_season=2, now=1_700_000_000)


@pytest.fixture
def srv(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(overseerr.create_app(universe)) as s:
        yield s


def state(srv: ThreadedServer) -> overseerr.OverseerrState:
    return srv.app[overseerr.OVERSEERR_STATE]


def config(tmp_path: Path, url: str, extra: str = ""):
    return ps.write_config(tmp_path, f"overseerr: {{url: '{url}', api_key: {KEY}, timeout: 2, page_size: 4{extra}}}\n")


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    cfg = ps.write_config(tmp_path, f"overseerr: {{url: 'http://127.0.0.1:5055', api_key: {KEY}}}\n")
    section = cfg.integrations["overseerr"]
    assert (section.name, section.delete_requests, section.timeout) == ("overseerr", ["pending", "declined"], 10.0)
    with pytest.raises(Exception, match=r"config\.yaml:6:\d+: integrations\.overseerr\.delete_requests\[0\]"):
        config(tmp_path, "http://127.0.0.1:5055", ", delete_requests: [approvd]")


def test_health_ok_forbidden_and_down(tmp_path: Path, srv: ThreadedServer) -> None:
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        (ok,) = check_health(cfg, db, bus=EventBus())
        assert (ok.name, ok.status, ok.version) == ("overseerr", Health.OK, overseerr.VERSION) and ok.latency_ms
        srv.app[FAULTS].revoke_auth = True
        (bad,) = check_health(cfg, db, bus=EventBus())
        assert bad.status == Health.UNAUTHORIZED and "You do not have permission" in (bad.error or "")
        srv.app[FAULTS].revoke_auth = False
        srv.app[FAULTS].down = True
        assert check_health(cfg, db, bus=EventBus())[0].status == Health.DOWN
        assert check_health(config(tmp_path, ps.stopped_url()), db, bus=EventBus())[0].status == Health.DOWN


def test_enrich_requests_and_media_paged_once_per_run(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    requested = [m for m in universe.movies if m.request is not None]
    plain = [m for m in universe.movies if m.request is None]
    show = next(s for s in universe.shows if s.request is not None)
    first = requested[0]
    # A newer, failed request by bob for the first movie: the newest request speaks for the item.
    srv.call(lambda: state(srv).add_request(first.rating_key, user="bob", status=4, created_at=universe.now))
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        summary = enrich_all(cfg, db, batch_size=9, bus=EventBus())["overseerr"]

        status, f, _ = ps.facts(db, ids[first.rating_key], "overseerr")
        assert status == "known"
        assert (f["overseerr.requested_by"], f["overseerr.request_status"], f["overseerr.request_count"]) == (
            "bob",
            "failed",
            2,
        )
        assert f["overseerr.requested_at"] == universe.now

        second = requested[1]
        assert second.request is not None
        status, f, _ = ps.facts(db, ids[second.rating_key], "overseerr")
        assert f["overseerr.requested_by"] == second.request.user
        assert f["overseerr.request_status"] == plugin.REQUEST_STATUS[second.request.status]
        assert f["overseerr.requested_at"] == second.request.created_at
        assert f["overseerr.media_status"] in plugin.MEDIA_STATUS.values()

        for m in plain:
            assert ps.facts(db, ids[m.rating_key], "overseerr")[0] == "absent"
        # Seasons and episodes carry their show's request.
        episode = show.seasons[0].episodes[1]
        assert ps.facts(db, ids[episode.rating_key], "overseerr")[1]["overseerr.requested_by"] == show.request.user  # type: ignore[union-attr]
        assert summary.unknown == 0

    log = list(srv.app[overseerr.faults_mod.REQUEST_LOG])
    request_pages = [r for r in log if r["path"] == "/api/v1/request"]
    total = len(state(srv).requests)
    assert len(request_pages) == -(-total // 4)  # one request per page, pages fetched once per run
    assert sorted(int(r["query"]["skip"]) for r in request_pages) == list(range(0, total, 4))


def test_enrich_with_overseerr_down_is_unknown(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    srv.app[FAULTS].down = True
    with ps.store(tmp_path) as db:
        ps.insert_universe(db, universe)
        enrich_all(config(tmp_path, srv.url), db, bus=EventBus())
        assert set(ps.statuses(db, "overseerr").values()) == {"unknown"}


def _targets(cfg, db, item_id: int):
    return ps.run(plugin.smartplexd_cascade_targets(ps.item(db, item_id), {}, ps.ctx(cfg, db)))


def _step(cfg, db, item_id: int, target):
    return ps.run(plugin.smartplexd_cascade_step(ps.item(db, item_id), target, ps.ctx(cfg, db)))


def test_pending_request_is_deleted_and_media_cleared_idempotently(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    movie = next(m for m in universe.movies if m.request is None)
    created = srv.call(lambda: state(srv).add_request(movie.rating_key, user="carol", status=1))
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        assert (target.plugin, target.order, target.action) == ("overseerr", 10, "clear_requests")
        assert target.data["requests"] == [{"id": created.id, "status": "pending", "user": "carol"}]
        result = _step(cfg, db, ids[movie.rating_key], target)
        assert result.status == StepStatus.DONE and not result.already_gone, result.message
        kinds = [(d["kind"], d["id"]) for d in state(srv).deletions]
        assert kinds == [("request", created.id), ("media", target.data["media_id"])]
        again = _step(cfg, db, ids[movie.rating_key], target)
        assert again.status == StepStatus.DONE and again.already_gone
        assert len(state(srv).deletions) == 2


def test_approved_requests_are_kept_and_media_reset_so_it_can_be_requested_again(
    tmp_path: Path, universe: Universe, srv: ThreadedServer
) -> None:
    movie = next(m for m in universe.movies if m.request is None)
    approved = srv.call(lambda: state(srv).add_request(movie.rating_key, user="alice", status=2))
    declined = srv.call(lambda: state(srv).add_request(movie.rating_key, user="dave", status=3))
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        result = _step(cfg, db, ids[movie.rating_key], target)
        assert result.status == StepStatus.DONE, result.message
        assert result.details == {"deleted_requests": [declined.id], "kept_requests": [approved.id]}
        assert approved.id in state(srv).requests and declined.id not in state(srv).requests
        media = state(srv).media[target.data["media_id"]]
        assert media.status == overseerr.M_UNKNOWN  # requestable again; the approved request stays as history
        assert "kept 1 (approved)" in result.message


def test_step_errors_carry_overseerr_message(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    movie = next(m for m in universe.movies if m.request is not None)
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        (target,) = _targets(cfg, db, ids[movie.rating_key])
        srv.app[FAULTS].revoke_auth = True
        denied = _step(cfg, db, ids[movie.rating_key], target)
        assert denied.status == StepStatus.FAILED and not denied.retryable
        assert denied.message == "overseerr: HTTP 403: You do not have permission to access this endpoint"
        srv.app[FAULTS].revoke_auth = False
        srv.app[FAULTS].down = True
        down = _step(cfg, db, ids[movie.rating_key], target)
        assert down.status == StepStatus.FAILED and down.retryable and down.message.startswith("overseerr: unreachable")
        # Without Overseerr the intent cannot say which requests would be left behind: it refuses.
        with pytest.raises(Exception, match="overseerr: unreachable"):
            ps.run(plugin.smartplexd_cascade_targets(ps.item(db, ids[movie.rating_key]), {}, ps.ctx(cfg, db)))
        assert state(srv).deletions == []


def test_episodes_have_no_overseerr_step(tmp_path: Path, universe: Universe, srv: ThreadedServer) -> None:
    show = next(s for s in universe.shows if s.request is not None)
    cfg = config(tmp_path, srv.url)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        assert _targets(cfg, db, ids[show.seasons[0].episodes[0].rating_key]) == []
        (target,) = _targets(cfg, db, ids[show.rating_key])
        assert target.data["media_type"] == "tv" and target.data["tvdb_id"] == show.tvdb


def test_every_overseerr_webhook_fixture_parses(tmp_path: Path) -> None:
    ctx = ps.ctx(config(tmp_path, "http://127.0.0.1:5055"))
    expected = {
        "webhook_media_pending.json": "request.created",
        "webhook_media_available.json": "item.added",
        "webhook_test.json": "test",
        "webhook_default_template.json": "unknown",
    }
    for name, etype in expected.items():
        payload = json.loads((CONTRACTS / "overseerr" / name).read_text())
        (event,) = plugin.smartplexd_webhook("overseerr", payload, ctx)
        assert event.type == etype, name
    pending = json.loads((CONTRACTS / "overseerr" / "webhook_media_pending.json").read_text())
    (event,) = plugin.smartplexd_webhook("overseerr", pending, ctx)
    assert (event.tmdb_id, event.tvdb_id, event.details["request_id"]) == (63639, 280619, 18)
    assert event.user == pending["request"]["requestedBy_username"]
    assert plugin.smartplexd_webhook("tautulli", pending, ctx) is None
