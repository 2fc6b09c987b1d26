"""Plans: given this library and these rules, `plan` selects these items, in this order, for these reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rules_helpers import DAY, GB, NOW, Library, rules, seed_pm, seed_registry, write_config

from smartplexd import audit, cli
from smartplexd.demo import plex
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.errors import UsageError
from smartplexd.plex.sync import sync_server
from smartplexd.rules.planner import cancel_leaving_soon_if_played, load_plan, make_plan, preview, render_plan
from smartplexd.store import open_store

PM = seed_pm()
REG = seed_registry(PM)
WATCHED = "when: {fact: plex.view_count, op: '>=', value: 1}\n"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    config = write_config(tmp_path, PM, extra="deletion: {max_items_per_run: 100, max_bytes_per_run: 10TB}")
    store = open_store(config.database_path)
    yield config, store, Library(store)
    store.close()


def plan(env: Any, text: str, **kw: Any) -> Any:
    config, store, _ = env
    kw.setdefault("now", NOW)
    return make_plan(config, store, rules(text, REG), actor="test", registry=REG, pm=PM, **kw)


def statuses(p: Any) -> list[tuple[str, str, str]]:
    return [(e.title, e.rule, e.status) for e in p.items]


def test_order_and_per_rule_limits_in_items_and_bytes(env: Any) -> None:
    _, _, lib = env
    for i, size in enumerate([3, 9, 5, 7, 1]):
        lib.movie(f"M{i}", size * GB, view_count=1, last_viewed_at=int(NOW - (10 + i) * DAY))
    p = plan(env, "name: big\nmedia_types: [movie]\n" + WATCHED + "order_by: [-plex.size]\nlimits: {max_items: 2}\n")
    assert [(e.title, e.status, e.rank) for e in p.items] == [
        ("M1", "selected", 1), ("M3", "selected", 2), ("M2", "limited", 3), ("M0", "limited", 4), ("M4", "limited", 5),
    ]  # fmt: skip
    assert p.items[2].skip_reason == "rule limit: max_items 2"
    assert p.totals["selected"] == 2 and p.totals["selected_bytes"] == 16 * GB
    p = plan(env, "name: old\nmedia_types: [movie]\n" + WATCHED + "order_by: [plex.last_viewed_at]\n"
             "limits: {max_bytes: 13GB}\n")  # fmt: skip
    # Oldest view first: M4 (1 GB), M3 (7), M2 (5) make 13 GB; M1 (9) and M0 (3) would pass 13 GB.
    assert [(e.title, e.status) for e in p.items] == [
        ("M4", "selected"), ("M3", "selected"), ("M2", "selected"), ("M1", "limited"), ("M0", "limited"),
    ]  # fmt: skip
    assert p.items[3].skip_reason == "rule limit: max_bytes 13.0 GB"


def test_global_limits_apply_across_rules(tmp_path: Path) -> None:
    config = write_config(tmp_path, PM, extra="deletion: {max_items_per_run: 3, max_bytes_per_run: 100GB}")
    store = open_store(config.database_path)
    lib = Library(store)
    for i in range(3):
        lib.movie(f"A{i}", 10 * GB, view_count=1)
        lib.movie(f"B{i}", 60 * GB, year=1990)
    text = ("- name: a\n  media_types: [movie]\n  when: {fact: plex.view_count, op: '>=', value: 1}\n"
            "- name: b\n  media_types: [movie]\n  when: {fact: plex.year, op: '=', value: 1990}\n")  # fmt: skip
    p = make_plan(config, store, rules(text, REG), actor="t", now=NOW, registry=REG, pm=PM)
    assert [(e.title, e.status) for e in p.items] == [
        ("A0", "selected"), ("A1", "selected"), ("A2", "selected"),
        ("B0 (1990)", "limited"), ("B1 (1990)", "limited"), ("B2 (1990)", "limited"),
    ]  # fmt: skip
    assert p.items[3].skip_reason == "global limit: deletion.max_items_per_run 3"
    store.close()


def test_exclusions_keep_label_on_item_and_show_tombstone_grace_and_earlier_rule(env: Any) -> None:
    _, store, lib = env
    kept = lib.movie("Kept", view_count=1, labels=["KEEP"])
    gone = lib.movie("Tombstoned", view_count=1)
    graced = lib.movie("In Other Grace", view_count=1)
    lib.movie("Plain", view_count=1)
    show = lib.show("Kept Show", [[GB, GB]], labels=["keep"])
    store.execute("UPDATE media_items SET view_count = 1 WHERE type = 'episode'")
    row = store.query_one("SELECT rating_key FROM media_items WHERE id = ?", (gone,))
    store.execute("INSERT INTO tombstones (server, rating_key, item_id, created_at) VALUES ('home', ?, ?, ?)",
                  (row["rating_key"], gone, NOW))  # fmt: skip
    store.execute("INSERT INTO leaving_soon (item_id, rule, added_at, due_at, updated_at) VALUES (?, 'other', ?, ?, ?)",
                  (graced, NOW, NOW + 5 * DAY, NOW))  # fmt: skip
    two = (
        "- name: first\n  media_types: [movie, episode]\n  when: {fact: plex.view_count, op: '>=', value: 1}\n"
        "- name: second\n  media_types: [movie]\n  when: {fact: plex.view_count, op: '>=', value: 1}\n"
    )
    p = plan(env, two)
    by = {(e.item_id, e.rule): e for e in p.items}
    assert (by[(kept, "first")].status, by[(kept, "first")].skip_reason) == ("excluded", "label 'keep'")
    assert by[(gone, "first")].skip_reason == "deleted by smartplexd before (tombstone)"
    assert by[(graced, "first")].skip_reason.startswith("in the grace period of rule other until 2023-11-19")
    ep = show["episodes"][0][0]
    assert (by[(ep, "first")].status, by[(ep, "first")].skip_reason) == ("excluded", "label 'keep' (on its show)")
    plain = next(e for e in p.items if e.title == "Plain" and e.rule == "second")
    assert (plain.status, plain.skip_reason) == ("excluded", "already selected by rule first")
    assert [e.title for e in p.selected] == ["Plain"]


def test_shows_seasons_and_episodes_are_never_counted_twice(env: Any) -> None:
    _, store, lib = env
    show = lib.show("Long Show", [[1 * GB, 2 * GB], [4 * GB]])
    store.execute("UPDATE media_items SET view_count = 1")
    episodes_first = (
        "- name: episodes\n  media_types: [episode]\n  when: {fact: plex.episode_index, op: '=', value: 1}\n"
        "- name: shows\n  media_types: [show, season]\n  " + WATCHED
    )
    p = plan(env, episodes_first)
    by = {(e.item_id, e.rule): e for e in p.items}
    # S01E01 (1 GB) and S02E01 (4 GB) first; then the show frees only what is left: 2 GB.
    assert by[(show["episodes"][0][0], "episodes")].bytes == 1 * GB
    assert by[(show["show"], "shows")].status == "selected" and by[(show["show"], "shows")].bytes == 2 * GB
    # Its seasons are covered by the show selected just before them.
    assert {by[(s, "shows")].status for s in show["seasons"]} == {"excluded"}
    assert p.totals["selected_bytes"] == 7 * GB
    shows_first = (
        "- name: shows\n  media_types: [show]\n  "
        + WATCHED
        + "- name: episodes\n  media_types: [episode]\n  "
        + WATCHED
    )
    p = plan(env, shows_first)
    eps = [e for e in p.items if e.rule == "episodes"]
    assert len(eps) == 3 and {e.status for e in eps} == {"excluded"}
    assert eps[0].skip_reason == "covered: Long Show is selected by rule shows"
    assert p.totals["selected_bytes"] == 7 * GB and p.totals["selected"] == 1


def _disk(store: Any, free: int, total: int = 1000 * GB, checked_at: float = NOW) -> None:
    store.execute(
        "INSERT OR REPLACE INTO integration_health (name, plugin, status, checked_at, details) VALUES (?,?,?,?,?)",
        ("radarr", "radarr", "ok", checked_at, json.dumps({"disk": [{"path": "/data", "free": free, "total": total}]})),
    )


STORAGE = ("name: pressure\nmedia_types: [movie]\n" + WATCHED + "order_by: [-plex.size]\n"
           "storage: {when_free_below: 10%, until_free_above: 20%}\n")  # fmt: skip


def test_storage_mode_selects_largest_until_the_target_free_space(env: Any) -> None:
    _, store, lib = env
    for i, size in enumerate([30, 50, 40, 20]):
        lib.movie(f"S{i}", size * GB, view_count=1)
    _disk(store, free=50 * GB)  # 5% free: need 150 GB more for 20%
    p = plan(env, STORAGE)
    assert [(e.title, e.status) for e in p.items] == [
        ("S1", "selected"), ("S2", "selected"), ("S0", "selected"), ("S3", "selected"),
    ]  # fmt: skip
    _disk(store, free=80 * GB)  # 8%: need 120 GB -> 50 + 40 + 30
    p = plan(env, STORAGE)
    assert [(e.title, e.status) for e in p.items] == [
        ("S1", "selected"), ("S2", "selected"), ("S0", "selected"), ("S3", "limited"),
    ]  # fmt: skip
    assert p.items[3].skip_reason == "storage target reached on /data (20% free)"
    assert p.storage["pressure"]["active"] is True and p.storage["pressure"]["disks"][0]["free_percent"] == 8.0
    _disk(store, free=300 * GB)  # 30% free: no pressure, nothing selected
    p = plan(env, STORAGE)
    assert p.items == [] and p.storage["pressure"]["active"] is False
    _disk(store, free=10 * GB, checked_at=NOW - 3 * DAY)  # stale report: free space unknown -> nothing
    p = plan(env, STORAGE)
    assert p.items == [] and p.unknown_sources["disk space"]["items"] == 4
    assert "older than a day" in render_plan(p)


def test_unknown_facts_skip_items_and_the_plan_says_so_at_the_top(env: Any) -> None:
    _, _, lib = env
    ok = lib.movie("Radarr Knows", view_count=1)
    down = lib.movie("Radarr Failed", view_count=1)
    lib.facts(ok, "radarr", {"radarr.monitored": False})
    lib.facts(down, "radarr", {}, status="unknown", error="radarr: 503 Service Unavailable")
    p = plan(env, "name: unmon\nmedia_types: [movie]\nwhen: {fact: radarr.monitored, op: '=', value: false}\n")
    assert statuses(p) == [("Radarr Knows", "unmon", "selected"), ("Radarr Failed", "unmon", "skipped")]
    skipped = p.items[1]
    assert skipped.skip_reason == "unknown facts (radarr: radarr: 503 Service Unavailable)"
    assert skipped.reasons[0]["state"] == "unknown"
    assert p.unknown_sources == {"radarr": {"items": 1, "reason": "radarr: 503 Service Unavailable"}}
    text = render_plan(p)
    assert text.startswith("!" * 78 + "\n! Some facts were UNKNOWN")
    assert "radarr: 1 item(s) skipped: radarr: 503 Service Unavailable" in text


def test_plans_are_stored_with_reasons_audited_and_reloadable(env: Any) -> None:
    _, store, lib = env
    m = lib.movie("Stored", 2 * GB, view_count=3, last_viewed_at=int(NOW - 100 * DAY))
    p = plan(env, "name: s\nmedia_types: [movie]\nwhen:\n  all:\n    - {fact: plex.view_count, op: '>=', value: 1}\n"
                  "    - {fact: plex.last_viewed_at, older_than: 90d}\n")  # fmt: skip
    assert p.id is not None
    row = store.query_one("SELECT * FROM plans WHERE id = ?", (p.id,))
    assert (row["total_items"], row["total_bytes"], row["created_by"]) == (1, 2 * GB, "test")
    item = store.query_one("SELECT * FROM plan_items WHERE plan_id = ?", (p.id,))
    reasons = json.loads(item["reasons"])
    assert (item["item_id"], item["status"], item["bytes"]) == (m, "selected", 2 * GB)
    assert [(r["fact"], r["actual"]) for r in reasons] == [("plex.view_count", 3),
                                                           ("plex.last_viewed_at", NOW - 100 * DAY)]  # fmt: skip
    loaded = load_plan(store, p.id)
    assert loaded is not None and loaded.items[0].reasons == reasons and loaded.items[0].title == "Stored"
    assert audit.entries(store, action="plan.created")[0]["target"] == f"plan:{p.id}"
    assert preview(env[0], store, rules("name: s\n" + WATCHED, REG)[0], registry=REG, pm=PM).id is None


def test_open_deletion_requests_are_listed_and_included_on_request(env: Any) -> None:
    _, store, lib = env
    wanted = lib.movie("Please Delete", 3 * GB)
    kept = lib.movie("Kept Anyway", 3 * GB, labels=["keep"])
    for item, reason in ((wanted, "seen it"), (kept, None)):
        store.execute(
            "INSERT INTO deletion_requests (item_id, requested_by, reason, created_at) VALUES (?, 'bob', ?, ?)",
            (item, reason, NOW),
        )
    p = plan(env, "name: none\nwhen: {fact: plex.year, op: '=', value: 1800}\n")
    assert [r["title"] for r in p.requests] == ["Please Delete", "Kept Anyway"] and p.items == []
    assert "2 open deletion request(s) not included" in render_plan(p)
    p = plan(env, "name: none\nwhen: {fact: plex.year, op: '=', value: 1800}\n", include_requests=True)
    assert statuses(p) == [("Please Delete", "request:1", "selected"), ("Kept Anyway", "request:2", "excluded")]
    assert p.items[0].reasons[0]["text"] == "deletion requested by bob: seen it"
    assert store.query_one("SELECT plan_id FROM deletion_requests WHERE id = 1")["plan_id"] == p.id


def test_unknown_rule_name_is_a_usage_error_with_suggestions(env: Any) -> None:
    with pytest.raises(UsageError, match="no rule named 'watchd'; did you mean watched"):
        plan(env, "name: watched\n" + WATCHED, rule_names=["watchd"])


# --- against the simulated Plex --------------------------------------------------------------------------

TOKEN = "plex-token-for-tests"


@pytest.fixture
def plex_env(tmp_path: Path) -> Any:
    universe = generate(seed=5, movies=30, shows=2, seasons_per_show=2, episodes_per_season=3, now=int(NOW))
    server = ThreadedServer(plex.create_app(universe, token=TOKEN, clock=lambda: int(NOW))).start()
    config = write_config(tmp_path, PM, plex_url=server.url, integrations=())
    store = open_store(config.database_path)
    try:
        yield universe, server, config, store
    finally:
        store.close()
        server.stop()


def _expected_watched(universe: Any, days: int) -> set[str]:
    out = set()
    for m in universe.movies:
        plays = plex.counted_plays(m.views)
        if plays and max(v.at for v in plays) < NOW - days * DAY:
            out.add(str(m.rating_key))
    return out


def test_end_to_end_simulated_plex_sync_then_plan_selects_exactly_the_expected_movies(plex_env: Any) -> None:
    universe, _, config, store = plex_env
    assert sync_server(config, store, "home").status == "ok"
    text = ("name: watched\nlibraries: [Movies]\nwhen:\n  all:\n    - {fact: plex.view_count, op: '>=', value: 1}\n"
            "    - {fact: plex.last_viewed_at, older_than: 200d}\n")  # fmt: skip
    p = make_plan(config, store, rules(text, REG), actor="t", now=NOW, registry=REG, pm=PM)
    keep = {str(m.rating_key) for m in universe.movies if "keep" in m.labels}
    expected = _expected_watched(universe, 200)
    assert expected, "the universe should hold watched movies"
    assert {e.rating_key for e in p.selected} == expected - keep
    assert {e.rating_key for e in p.by_status("excluded")} == expected & keep


def test_grace_period_collection_cancel_on_play_and_due_otherwise(plex_env: Any) -> None:
    universe, server, config, store = plex_env
    state = server.app[plex.PLEX_STATE]
    sync_server(config, store, "home")
    text = ("name: leaving\nlibraries: [Movies]\nwhen:\n  all:\n    - {fact: plex.view_count, op: '>=', value: 1}\n"
            "    - {fact: plex.last_viewed_at, older_than: 200d}\n"
            "action: {type: delete, grace_period: 7d, collection: Leaving Soon}\n")  # fmt: skip
    rule_list = rules(text, REG)
    dry = make_plan(config, store, rule_list, actor="t", now=NOW, registry=REG, pm=PM)
    assert dry.selected == [] and dry.by_status("leaving_soon")
    assert store.query("SELECT * FROM leaving_soon") == []  # a plain plan never starts a grace period
    first = make_plan(config, store, rule_list, actor="t", now=NOW, start_grace=True, registry=REG, pm=PM)
    leaving = {e.rating_key for e in first.by_status("leaving_soon")}
    assert leaving and all(e.due_at == NOW + 7 * DAY for e in first.by_status("leaving_soon"))
    in_plex = {str(m.rating_key) for m in universe.movies if "Leaving Soon" in m.collections}
    assert in_plex == leaving
    rows = store.query("SELECT * FROM leaving_soon")
    assert len(rows) == len(leaving) and {r["status"] for r in rows} == {"pending"}

    played, *others = sorted(leaving)
    server.call(state.mark_played, int(played), "admin", int(NOW + DAY))
    sync_server(config, store, "home")
    item_id = store.query_one("SELECT id FROM media_items WHERE rating_key = ?", (played,))["id"]
    assert cancel_leaving_soon_if_played(config, store, item_id) is True
    assert "Leaving Soon" not in next(m for m in universe.movies if str(m.rating_key) == played).collections
    assert store.query_one("SELECT status, reason FROM leaving_soon WHERE item_id = ?", (item_id,)) == {
        "status": "cancelled", "reason": "played during the grace period"}  # fmt: skip

    early = make_plan(config, store, rule_list, actor="t", now=NOW + 3 * DAY, start_grace=True, registry=REG, pm=PM)
    assert early.selected == [] and {e.rating_key for e in early.by_status("leaving_soon")} == set(others)

    due = make_plan(config, store, rule_list, actor="t", now=NOW + 8 * DAY, start_grace=True, registry=REG, pm=PM)
    assert {e.rating_key for e in due.selected} == set(others)
    ids = [e.item_id for e in due.selected]
    rows = store.query(
        "SELECT status FROM leaving_soon WHERE item_id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
    )
    assert [r["status"] for r in rows] == ["due"] * len(others)


def test_cli_plan_prints_table_totals_and_the_apply_hint(plex_env: Any, capsys: Any) -> None:
    _, _, config, store = plex_env
    sync_server(config, store, "home")
    (Path(config.base_dir) / "rules" / "r.yaml").write_text(
        "name: watched\nlibraries: [Movies]\nwhen: {fact: plex.view_count, op: '>=', value: 1}\n"
        "limits: {max_items: 3}\n"
    )
    args = ["-c", config.source]
    assert cli.main([*args, "plan"]) == 0
    out = capsys.readouterr().out
    assert "rule watched — delete: 3 selected" in out
    # every selected item is followed by its reasons in full, with the item's own value
    assert out.count("      because plex.view_count ") == 3
    assert "selected 3 (" in out and "This was a dry run: nothing was deleted." in out
    plan_id = store.query_one("SELECT MAX(id) AS id FROM plans")["id"]
    assert f"Plan {plan_id} stored. To act on it: smartplexd apply {plan_id}" in out
    assert cli.main([*args, "plan", "--json", "--rule", "watched"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["selected"] == 3 and doc["items"][0]["reasons"][0]["fact"] == "plex.view_count"
    assert cli.main([*args, "check"]) == 0
    out = capsys.readouterr().out
    assert "would select 3 now" in out and "r.yaml:1" in out
    assert cli.main([*args, "plan", "--rule", "nope"]) == 2
