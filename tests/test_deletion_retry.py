"""When a service fails during a deletion: partial, retried with backoff from the persistent queue, done when
it returns — and never a state in which Plex lost the file while Radarr could still download it again.
Also: Plex rejecting the token, Plex refusing deletions, syncs and webhooks during an apply, restore."""

from __future__ import annotations

import json
import time

import pytest
from deletion_world import ACTOR, World, build_world

from smartplexd import audit, deletion
from smartplexd.errors import Refused
from smartplexd.events import bus
from smartplexd.plex.sync import sync_item, sync_server


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    yield w
    w.close()


def _steps(store, deletion_id):
    return store.query("SELECT * FROM deletion_steps WHERE deletion_id = ? ORDER BY seq", (deletion_id,))


def _on(event_type, fn):
    def handler(event):
        if event.type == event_type:
            fn(event)

    return bus.subscribe(handler)


def test_radarr_down_partial_then_retried_with_backoff_then_done(world: World, time_machine) -> None:
    time_machine.move_to(time.time(), tick=True)
    plan_id = world.make_plan(["approved"])
    tmdb = world.universe.movies[0].tmdb
    radarr = world.state("radarr")
    unsubscribe = _on("deletion.started", lambda e: setattr(world.faults("radarr"), "down", True))
    try:
        with world.store() as store:
            result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    finally:
        unsubscribe()
    assert result.counts() == {"partial": 1} and result.exit_code == 3
    did = result.deletions[0].id
    with world.store() as store:
        steps = _steps(store, did)
        assert [(s["plugin"], s["status"], s["attempts"]) for s in steps] == [
            ("overseerr", "done", 1),
            ("radarr", "failed", 1),
            ("plex", "pending", 0),
            ("local", "pending", 0),
        ]
        first_wait = steps[1]["next_attempt_at"] - steps[1]["finished_at"]
        assert 60 <= first_wait <= 66  # initial_backoff plus at most 10 % jitter
        assert "radarr" in steps[1]["last_error"]
    # The cascade stopped before Plex: the file is still in Plex and Radarr still holds (and monitors) the
    # movie, so nothing can be re-downloaded while the deletion waits.
    assert world.plex_has("approved")
    assert radarr.movie_by_tmdb(tmdb) is not None

    with world.store() as store:
        # Not due yet: the scheduler's minute tick does nothing.
        assert deletion.process_due(world.config, store).deletions == []
        assert _steps(store, did)[1]["attempts"] == 1

        time_machine.move_to(time.time() + 70, tick=True)
        again = deletion.process_due(world.config, store)  # still down: attempt 2, a longer wait
        assert again.counts() == {"partial": 1}
        radarr_step = _steps(store, did)[1]
        assert radarr_step["attempts"] == 2
        assert 120 <= radarr_step["next_attempt_at"] - radarr_step["finished_at"] <= 132
        assert world.plex_has("approved")

        world.faults("radarr").down = False
        time_machine.move_to(time.time() + 140, tick=True)
        done = deletion.process_due(world.config, store)
        assert done.counts() == {"done": 1} and done.exit_code == 0
        assert [(s["plugin"], s["status"]) for s in _steps(store, did)] == [
            ("overseerr", "done"),
            ("radarr", "done"),
            ("plex", "done"),
            ("local", "done"),
        ]
        row = deletion.get_deletion(store, did)
        assert row["status"] == "done" and row["bytes_freed"] > 0
        step_audit = [
            e["details"] for e in audit.entries(store, action="deletion.step") if e["details"]["plugin"] == "radarr"
        ]
        assert [d["status"] for d in reversed(step_audit)] == ["failed", "failed", "done"]
        assert audit.verify(store).ok
    assert not world.plex_has("approved")
    assert radarr.movie_by_tmdb(tmdb) is None
    assert [(d["kind"], d["tmdbId"]) for d in radarr.deletes] == [("movie", tmdb)]


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    from smartplexd.config import RetryConfig

    cfg = RetryConfig(max_attempts=12, initial_backoff=60, max_backoff=3600)
    waits = [deletion.backoff_seconds(cfg, attempt, step_id=7) for attempt in range(1, 9)]
    for attempt, wait in enumerate(waits, start=1):
        base = min(60 * 2 ** (attempt - 1), 3600)
        assert base <= wait <= min(base * 1.1, 3600)
    assert waits[-1] == 3600
    # Deterministic per step and attempt, different between steps (they do not all return at once).
    assert deletion.backoff_seconds(cfg, 3, 7) == deletion.backoff_seconds(cfg, 3, 7)
    assert deletion.backoff_seconds(cfg, 3, 7) != deletion.backoff_seconds(cfg, 3, 8)


def test_max_attempts_then_failed_then_forced_retry(world: World, time_machine) -> None:
    time_machine.move_to(time.time(), tick=True)
    world.write_config(retry={"max_attempts": 2, "initial_backoff": 30, "max_backoff": 60})
    plan_id = world.make_plan(["show"])
    unsubscribe = _on("deletion.started", lambda e: setattr(world.faults("sonarr"), "down", True))
    try:
        with world.store() as store:
            result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    finally:
        unsubscribe()
    did = result.deletions[0].id
    with world.store() as store:
        time_machine.move_to(time.time() + 40, tick=True)
        last = deletion.process_due(world.config, store)
        assert last.counts() == {"failed": 1} and last.exit_code == 3
        sonarr_step = _steps(store, did)[0]
        assert sonarr_step["status"] == "failed" and sonarr_step["next_attempt_at"] is None
        assert sonarr_step["attempts"] == 2
        # Gave up: the scheduler leaves it alone from now on.
        time_machine.move_to(time.time() + 10_000, tick=True)
        assert deletion.process_due(world.config, store).deletions == []
        assert deletion.history(store, status="failed")[0]["id"] == did
    assert world.plex_has("show")

    world.faults("sonarr").down = False
    proc = world.cli("retry", str(did))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with world.store() as store:
        assert deletion.get_deletion(store, did)["status"] == "done"
        retries = audit.entries(store, action="deletion.retry")
        assert retries[0]["target"] == f"deletion:{did}" and retries[0]["actor"].startswith("cli:")
    assert not world.plex_has("show")
    with world.store() as store, pytest.raises(Exception, match="only partial or failed"):
        deletion.retry(world.config, store, did, actor=ACTOR)


def test_plex_token_rejected_nothing_deleted_exit_5(world: World) -> None:
    plan_id = world.make_plan()
    world.faults("plex").revoke_auth = True
    proc = world.cli("apply", str(plan_id), "--confirm", "DELETE")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "rejected the token" in proc.stderr and "X-Plex-Token" in proc.stderr
    assert world.sim_state() == {
        "plex_deleted": [],
        "radarr_deletes": [],
        "sonarr_deletes": [],
        "overseerr_deletions": [],
    }
    with world.store() as store:
        rows = store.query("SELECT status, reason FROM deletion_events")
        assert len(rows) == 4 and {r["status"] for r in rows} == {"skipped"}
        assert all("rejected the token" in r["reason"] for r in rows)
        assert store.query("SELECT * FROM media_items WHERE deleted_at IS NOT NULL") == []
        assert audit.verify(store).ok


def test_plex_token_rejected_mid_cascade_stops_the_run(world: World, time_machine) -> None:
    time_machine.move_to(time.time(), tick=True)
    plan_id = world.make_plan(["approved", "plex_only", "show"])

    def revoke(event) -> None:
        if event.data["plugin"] == "radarr" and event.data["status"] == "done":
            world.faults("plex").revoke_auth = True

    unsubscribe = _on("deletion.step", revoke)
    try:
        with world.store() as store:
            result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    finally:
        unsubscribe()
    assert result.unauthorized == "home" and result.exit_code == 5
    assert [d.status for d in result.deletions] == ["partial", "skipped", "skipped"]
    assert world.plex_has("approved") and world.plex_has("plex_only") and world.plex_has("show")
    assert world.state("sonarr").deletes == []
    # The token is fixed: the queued Plex step finishes the first deletion.
    world.faults("plex").revoke_auth = False
    time_machine.move_to(time.time() + 120, tick=True)
    with world.store() as store:
        assert deletion.process_due(world.config, store).counts() == {"done": 1}
    assert not world.plex_has("approved")


def test_plex_refusing_deletion_is_reported_clearly(world: World) -> None:
    plan_id = world.make_plan(["plex_only"])
    world.state("plex").allow_media_deletion = False
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        assert result.counts() == {"partial": 1}
        assert "Allow media deletion" in (result.deletions[0].reason or "")
        world.state("plex").allow_media_deletion = True
        forced = deletion.retry(world.config, store, actor=ACTOR)
        assert forced.counts() == {"done": 1}
    assert not world.plex_has("plex_only")


def test_sync_and_webhook_during_and_after_apply_never_resurrect(world: World) -> None:
    plan_id = world.make_plan(["approved", "show"])
    outcomes: list[str] = []

    def webhook(event) -> None:
        # A webhook for the item arrives right after each step (before Plex, after Plex, after the tombstone).
        if event.data["plugin"] in ("radarr", "sonarr", "plex"):
            rk = world.keys["approved"] if event.data["plugin"] != "sonarr" else world.keys["show"]
            with world.store() as other:
                outcomes.append(sync_item(world.config, other, "home", rk))

    unsubscribe = _on("deletion.step", webhook)
    try:
        with world.store() as store:
            result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    finally:
        unsubscribe()
    assert result.counts() == {"done": 2}
    assert "removed" in outcomes  # the webhook after Plex's delete saw it gone
    with world.store() as store:
        assert sync_server(world.config, store, "home").status == "ok"
        assert sync_item(world.config, store, "home", world.keys["approved"]) == "tombstoned"
        for key in ("approved", "show"):
            row = store.query_one("SELECT deleted_at FROM media_items WHERE id = ?", (world.item_id(store, key),))
            assert row["deleted_at"] is not None
        show_key = str(world.keys["show"])
        alive = store.query(
            "SELECT rating_key FROM media_items WHERE deleted_at IS NULL AND (rating_key = ? OR "
            "grandparent_rating_key = ? OR parent_rating_key = ?)",
            (show_key, show_key, show_key),
        )
        assert alive == []
        # Nothing deleted ever becomes a candidate again.
        assert deletion.plan_summary(store, plan_id)["status"] == "applied"


def test_restore_re_adds_through_the_arrs_and_refuses_plex_only(world: World) -> None:
    plan_id = world.make_plan()
    tmdb, tvdb = world.universe.movies[0].tmdb, world.universe.shows[0].tvdb
    with world.store() as store:
        deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        ids = {
            k: store.query_one("SELECT id FROM deletion_events WHERE item_id = ?", (world.item_id(store, k),))["id"]
            for k in world.keys
        }
    proc = world.cli("restore", str(ids["approved"]), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcome = json.loads(proc.stdout)
    assert outcome["status"] == "ok"
    assert [r["target"] for r in outcome["results"] if r["ok"]] == ["radarr"]
    radarr = world.state("radarr")
    assert radarr.movie_by_tmdb(tmdb) is not None and radarr.commands_named("MoviesSearch")
    with world.store() as store:
        show = deletion.restore(world.config, store, ids["show"], actor=ACTOR)
        assert show.status == "ok"
        assert world.state("sonarr").series_by_tvdb(tvdb) is not None
        restores = store.query("SELECT deletion_id, status FROM restores ORDER BY id")
        assert restores == [
            {"deletion_id": ids["approved"], "status": "ok"},
            {"deletion_id": ids["show"], "status": "ok"},
        ]
        # The tombstone is lifted so the re-downloaded item can come back through a sync.
        tomb = store.query_one("SELECT expires_at FROM tombstones WHERE deletion_id = ?", (ids["approved"],))
        assert tomb["expires_at"] <= time.time()
        with pytest.raises(Refused, match="already restored"):
            deletion.restore(world.config, store, ids["approved"], actor=ACTOR)
        with pytest.raises(Refused, match="from Plex only"):
            deletion.restore(world.config, store, ids["plex_only"], actor=ACTOR)
        actions = [(e["action"], e["actor"]) for e in audit.entries(store, action="deletion.re*")]
        assert ("deletion.restore", ACTOR) in actions and ("deletion.refused", ACTOR) in [
            (e["action"], e["actor"]) for e in audit.entries(store, action="deletion.refused")
        ]
        assert audit.verify(store).ok
