"""The deletion executor against simulated Plex, Radarr, Sonarr and Overseerr over real HTTP, real SQLite.

Story: an admin labelled four items ``cleanup``; the rule ``cleanup`` selects them; ``apply`` deletes them
with the full cascade, and everything it did can be read back from the history and the audit log.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading

import pytest
from deletion_world import ACTOR, World, build_world

from smartplexd import audit, deletion
from smartplexd.errors import Refused
from smartplexd.events import bus
from smartplexd.plex.sync import sync_item


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    yield w
    w.close()


def _steps(store, deletion_id):
    return [
        (s["plugin"], s["target"], s["action"], s["status"])
        for s in store.query("SELECT * FROM deletion_steps WHERE deletion_id = ? ORDER BY seq", (deletion_id,))
    ]


def _deletion_for(store, world, key):
    return store.query_one("SELECT * FROM deletion_events WHERE item_id = ?", (world.item_id(store, key),))


def test_cascade_checklist(world: World) -> None:
    plan_id = world.make_plan()
    radarr = world.state("radarr")
    movie_ids = {
        k: radarr.movie_by_tmdb(world.universe.movies[i].tmdb).id for i, k in ((0, "approved"), (1, "pending"))
    }
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        assert result.exit_code == 0, result
        assert result.counts() == {"done": 4}

        approved = _deletion_for(store, world, "approved")
        assert _steps(store, approved["id"]) == [
            ("overseerr", "overseerr", "clear_requests", "done"),
            ("radarr", "radarr", "delete", "done"),
            ("plex", "plex:home", "delete", "done"),
            ("local", "local", "tombstone", "done"),
        ]
        show = _deletion_for(store, world, "show")
        assert _steps(store, show["id"]) == [
            ("sonarr", "sonarr", "delete", "done"),
            ("plex", "plex:home", "delete", "done"),
            ("local", "local", "tombstone", "done"),
        ]
        plex_only = _deletion_for(store, world, "plex_only")
        assert _steps(store, plex_only["id"]) == [
            ("plex", "plex:home", "delete", "done"),
            ("local", "local", "tombstone", "done"),
        ]

        # Bytes freed are what Plex reported for the item (the show: its episodes rolled up by the sync).
        for key in ("approved", "pending", "plex_only", "show"):
            row = store.query_one(
                "SELECT size_bytes, deleted_at FROM media_items WHERE id = ?", (world.item_id(store, key),)
            )
            assert row["deleted_at"] is not None
            assert _deletion_for(store, world, key)["bytes_freed"] == row["size_bytes"] > 0
        assert result.bytes_freed == sum(d.bytes_freed for d in result.deletions)

        # The show's seasons and episodes are tombstoned with it.
        show_key = str(world.keys["show"])
        children = store.query(
            "SELECT rating_key, deleted_at FROM media_items WHERE parent_rating_key = ? OR grandparent_rating_key = ?",
            (show_key, show_key),
        )
        assert len(children) == 2 + 4 and all(c["deleted_at"] for c in children)
        tombstoned = {r["rating_key"] for r in store.query("SELECT rating_key FROM tombstones")}
        assert {show_key, *(c["rating_key"] for c in children)} <= tombstoned
        assert store.query_one("SELECT status FROM plans WHERE id = ?", (plan_id,))["status"] == "applied"

        # Every action is in the audit log with the actor, and the chain verifies.
        actions = [e["action"] for e in audit.entries(store, limit=200) if e["actor"] == ACTOR]
        assert actions.count("deletion.intent") == 4
        assert actions.count("deletion.step") == 4 + 4 + 2 + 3
        assert actions.count("deletion.finished") == 4
        assert audit.verify(store).ok

    # Plex: all four gone (the show with its seasons and episodes).
    assert not any(world.plex_has(k) for k in ("approved", "pending", "plex_only", "show"))
    # Radarr deleted both movies with their files; Sonarr the series.
    deletes = {(d["kind"], d["id"]): d for d in radarr.deletes}
    assert set(deletes) == {("movie", movie_ids["approved"]), ("movie", movie_ids["pending"])}
    assert all(d["deleteFiles"] for d in deletes.values())
    assert [(d["kind"], d["tvdbId"]) for d in world.state("sonarr").deletes] == [
        ("series", world.universe.shows[0].tvdb)
    ]
    # Overseerr: the pending request went (with its media entry); the approved one is kept for history.
    ov = world.state("overseerr")
    assert 901 in ov.requests and 902 not in ov.requests
    assert ("request", 902) in [(d["kind"], d["id"]) for d in ov.deletions]


def test_history_lists_what_happened(world: World) -> None:
    plan_id = world.make_plan(["plex_only"])
    with world.store() as store:
        deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        rows = deletion.history(store)
        assert [(r["title"].split(" (")[0], r["status"]) for r in rows] == [(world.universe.movies[2].title, "done")]
        assert [s["status"] for s in rows[0]["steps"]] == ["done", "done"]
        assert deletion.history(store, status="partial") == []
    proc = world.cli("history", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["status"] == "done"


# --- refusals: nothing is done ----------------------------------------------------------------------------


def _nothing_deleted(world: World) -> None:
    state = world.sim_state()
    assert state == {"plex_deleted": [], "radarr_deletes": [], "sonarr_deletes": [], "overseerr_deletions": []}
    with world.store() as store:
        assert store.query("SELECT * FROM deletion_events") == []
        assert store.query("SELECT * FROM media_items WHERE deleted_at IS NOT NULL") == []


@pytest.mark.parametrize("confirm", [None, "", "delete", "DELETE ", "yes", "DELET"])
def test_wrong_confirmation_deletes_nothing(world: World, confirm) -> None:
    plan_id = world.make_plan()
    with world.store() as store:
        with pytest.raises(Refused, match="not DELETE"):
            deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm=confirm)
        refusal = audit.entries(store, action="deletion.refused")[0]
        assert refusal["actor"] == ACTOR and refusal["target"] == f"plan:{plan_id}"
        assert store.query_one("SELECT status FROM plans WHERE id = ?", (plan_id,))["status"] == "draft"
    _nothing_deleted(world)


def test_cli_without_a_terminal_or_flag_is_refused(world: World) -> None:
    plan_id = world.make_plan()
    proc = world.cli("apply", str(plan_id))
    assert proc.returncode == 4
    assert "DELETE" in proc.stderr
    proc = world.cli("apply", str(plan_id), "--confirm", "delete")
    assert proc.returncode == 4
    _nothing_deleted(world)


def test_disabled_deletion_is_refused(world: World) -> None:
    world.write_config(enabled=False)
    plan_id = world.make_plan()
    with world.store() as store, pytest.raises(Refused, match="deletion is disabled"):
        deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    _nothing_deleted(world)


def test_outside_the_window_needs_now(world: World, time_machine) -> None:
    world.write_config(window="03:00-05:00")
    plan_id = world.make_plan(["plex_only"])
    time_machine.move_to("2025-03-01 14:00:00+00:00", tick=True)
    with world.store() as store:
        with pytest.raises(Refused, match="outside the deletion window 03:00-05:00"):
            deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        assert store.query("SELECT * FROM deletion_events") == []
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE", now=True)
        assert result.counts() == {"done": 1}


def test_window_spanning_midnight() -> None:
    import zoneinfo
    from datetime import datetime

    tz = zoneinfo.ZoneInfo("Europe/Berlin")

    def at(hhmm: str) -> float:
        return datetime.fromisoformat(f"2025-06-01T{hhmm}:00").replace(tzinfo=tz).timestamp()

    assert deletion.in_window("22:00-02:00", tz, at("23:30"))
    assert deletion.in_window("22:00-02:00", tz, at("01:59"))
    assert not deletion.in_window("22:00-02:00", tz, at("02:00"))
    assert deletion.in_window("03:00-05:00", tz, at("03:00"))
    assert not deletion.in_window("03:00-05:00", tz, at("05:00"))
    assert deletion.in_window(None, tz, at("12:00"))


def test_a_plan_is_applied_once(world: World) -> None:
    plan_id = world.make_plan(["plex_only"])
    with world.store() as store:
        deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        with pytest.raises(Refused, match="not a draft"):
            deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        with pytest.raises(Refused, match="does not exist"):
            deletion.apply_plan(world.config, store, 999, actor=ACTOR, confirm="DELETE")
        assert len(store.query("SELECT * FROM deletion_events")) == 1


def test_two_concurrent_applies_one_runs(world: World) -> None:
    """The second apply starts while the first is in the middle of its cascade: it is refused."""
    plan_id = world.make_plan()
    other_plan = world.make_plan()  # the same selection, planned twice
    second: dict[str, object] = {}

    def second_apply() -> None:
        with world.store() as store:
            second["due"] = deletion.process_due(world.config, store)  # the scheduler's tick meanwhile
            try:
                second["result"] = deletion.apply_plan(
                    world.config, store, other_plan, actor="api:other", confirm="DELETE"
                )
            except Refused as exc:
                second["refused"] = str(exc)

    def on_event(event) -> None:
        if event.type == "deletion.started" and "started" not in second:
            second["started"] = True
            thread = threading.Thread(target=second_apply)
            thread.start()
            thread.join()

    unsubscribe = bus.subscribe(on_event)
    try:
        with world.store() as store:
            result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    finally:
        unsubscribe()
    assert result.counts() == {"done": 4}
    assert "already running" in str(second["refused"]) and "result" not in second
    assert second["due"].busy and second["due"].deletions == []
    with world.store() as store:
        assert store.query_one("SELECT status FROM plans WHERE id = ?", (other_plan,))["status"] == "draft"
        assert audit.entries(store, action="deletion.refused")[0]["actor"] == "api:other"


# --- limits -------------------------------------------------------------------------------------------------


def test_per_run_limits_are_enforced_again(world: World) -> None:
    plan_id = world.make_plan()
    world.write_config(max_items_per_run=2)  # lowered after the plan was made
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        statuses = {d.title.split(" (")[0]: (d.status, d.reason) for d in result.deletions}
    assert sorted(s for s, _ in statuses.values()) == ["done", "done", "skipped", "skipped"]
    assert all("per-run limit of 2 items" in r for s, r in statuses.values() if s == "skipped")
    assert sum(world.plex_has(k) for k in world.keys) == 2


def test_per_rule_byte_limit(world: World) -> None:
    plan_id = world.make_plan(["plex_only", "approved"])
    with world.store() as store:
        sizes = {
            k: store.query_one("SELECT size_bytes FROM media_items WHERE id = ?", (world.item_id(store, k),))[
                "size_bytes"
            ]
            for k in ("plex_only", "approved")
        }
    # The rule gets a byte limit after the plan was made: room for one of the two items only.
    (world.tmp / "rules" / "cleanup.yaml").write_text(
        "name: cleanup\nmedia_types: [movie, show]\nwhen: {fact: plex.labels, contains: cleanup}\n"
        f"limits: {{max_bytes: {max(sizes.values())}}}\n"
    )
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
    assert sorted(d.status for d in result.deletions) == ["done", "skipped"]
    skipped = next(d for d in result.deletions if d.status == "skipped")
    assert "over rule cleanup's limit" in (skipped.reason or "")
    assert sum(world.plex_has(k) for k in ("plex_only", "approved")) == 1


# --- the re-check -----------------------------------------------------------------------------------------


def test_recheck_skips_items_that_changed_since_the_plan(world: World) -> None:
    plan_id = world.make_plan()
    plex_state = world.state("plex")
    srv = world.servers["plex"]
    srv.call(plex_state.mark_played, world.keys["approved"])  # someone watched it after the plan
    srv.call(lambda: plex_state.update_item(world.keys["pending"], labels=["cleanup", "keep"]))
    srv.call(plex_state.remove_item, world.keys["plex_only"])  # deleted by hand in Plex
    # The rule no longer selects the show: its label was removed in Plex and the webhook synced that.
    srv.call(lambda: plex_state.update_item(world.keys["show"], labels=[]))
    with world.store() as store:
        assert sync_item(world.config, store, "home", world.keys["show"]) == "updated"
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        reasons = {d.id: d.reason for d in result.deletions}
        by_key = {k: reasons[_deletion_for(store, world, k)["id"]] for k in world.keys}
        steps = store.query("SELECT DISTINCT status FROM deletion_steps")
    assert all(d.status == "skipped" for d in result.deletions)
    assert "played since the plan" in by_key["approved"]
    assert "labelled 'keep'" in by_key["pending"]
    assert "no longer in Plex" in by_key["plex_only"]
    assert "no longer matches rule cleanup" in by_key["show"]
    assert steps == [{"status": "skipped"}]
    # No side effect anywhere (plex_only was removed by the test itself, not by smartplexd).
    assert world.state("radarr").deletes == [] and world.state("sonarr").deletes == []
    assert world.state("overseerr").deletions == []
    assert world.plex_has("approved") and world.plex_has("pending") and world.plex_has("show")


def test_unhealthy_integration_skips_the_items_that_need_it(world: World) -> None:
    plan_id = world.make_plan(["approved", "plex_only", "show"])
    world.faults("sonarr").down = True
    with world.store() as store:
        result = deletion.apply_plan(world.config, store, plan_id, actor=ACTOR, confirm="DELETE")
        by_key = {k: _deletion_for(store, world, k) for k in ("approved", "plex_only", "show")}
    assert by_key["show"]["status"] == "skipped" and "sonarr (sonarr) is down" in by_key["show"]["reason"]
    assert by_key["approved"]["status"] == "done" and by_key["plex_only"]["status"] == "done"
    assert world.plex_has("show")
    assert result.exit_code == 0


def _apply_at_a_terminal(world: World, plan_id: int, typed: bytes) -> subprocess.CompletedProcess:
    """``smartplexd apply PLAN`` with a pseudo-terminal as stdin, the admin typing ``typed``."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartplexd", "-c", str(world.config_path), "apply", str(plan_id)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SMARTPLEXD_LOG_LEVEL": "WARNING"},
        )
        os.write(master, typed)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_typed_confirmation_at_a_terminal(world: World) -> None:
    plan_id = world.make_plan(["plex_only"])
    wrong = _apply_at_a_terminal(world, plan_id, b"delete\n")
    assert wrong.returncode == 4, wrong.stdout + wrong.stderr
    assert "Type DELETE" in wrong.stdout and "selects 1 item(s)" in wrong.stdout
    assert world.plex_has("plex_only")
    right = _apply_at_a_terminal(world, plan_id, b"DELETE\n")
    assert right.returncode == 0, right.stdout + right.stderr
    assert "1 done" in right.stdout
    assert not world.plex_has("plex_only")


def test_requested_deletions_included_in_a_plan_are_applied(world: World) -> None:
    from smartplexd.rules.facts import registry
    from smartplexd.rules.models import load_rules
    from smartplexd.rules.planner import make_plan

    world.label([])  # no rule selects anything: only the request
    config = world.config
    with world.store() as store:
        item_id = world.item_id(store, "plex_only")
        store.execute(
            "INSERT INTO deletion_requests (item_id, server, rating_key, requested_by, reason, created_at) "
            "VALUES (?, 'home', ?, 'api:alice', 'seen it', 0)",
            (item_id, str(world.keys["plex_only"])),
        )
        rules = load_rules(config.rule_paths, registry())
        plan = make_plan(config, store, rules, actor=ACTOR, rule_names=["cleanup"], include_requests=True)
        result = deletion.apply_plan(config, store, plan.id, actor=ACTOR, confirm="DELETE")
        assert result.counts() == {"done": 1}
        assert store.query_one("SELECT status FROM deletion_requests")["status"] == "done"
    assert not world.plex_has("plex_only")
