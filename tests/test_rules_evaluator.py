"""Given this library and this condition, the evaluator selects exactly these items (three-valued logic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rules_helpers import DAY, GB, NOW, Library, rules, seed_pm, seed_registry, write_config

from smartplexd.rules.evaluator import Evaluation
from smartplexd.store import open_store

PM = seed_pm()
REG = seed_registry(PM)


@pytest.fixture
def env(tmp_path: Path) -> Any:
    config = write_config(tmp_path, PM)
    store = open_store(config.database_path)
    lib = Library(store)
    ids = {}
    ids["Old Watched"] = lib.movie(
        "Old Watched", 20 * GB, year=2001, view_count=2, last_viewed_at=NOW - 200 * DAY, added_at=NOW - 800 * DAY
    )
    lib.facts(ids["Old Watched"], "radarr", {"radarr.monitored": True, "radarr.size_on_disk": 20 * GB,
                                             "radarr.tags": ["Kids"], "radarr.instance": "radarr"})  # fmt: skip
    lib.facts(ids["Old Watched"], "overseerr", None)
    lib.facts(ids["Old Watched"], "tautulli", {"tautulli.play_count": 3, "tautulli.last_played": NOW - 200 * DAY,
                                               "tautulli.watch_time": 5 * 3600})  # fmt: skip
    ids["Recent Watch"] = lib.movie("Recent Watch", 4 * GB, year=2020, view_count=1, last_viewed_at=NOW - 10 * DAY)
    lib.facts(ids["Recent Watch"], "radarr", {"radarr.monitored": False, "radarr.size_on_disk": 4 * GB,
                                              "radarr.tags": [], "radarr.instance": "radarr4k"})  # fmt: skip
    lib.facts(
        ids["Recent Watch"], "overseerr", {"overseerr.request_status": "pending", "overseerr.requested_by": "alice"}
    )
    lib.facts(ids["Recent Watch"], "tautulli", {"tautulli.play_count": 1, "tautulli.last_played": NOW - 10 * DAY})
    ids["Never Seen"] = lib.movie("Never Seen", 8 * GB, labels=["Keep"])
    for plugin in ("radarr", "overseerr", "tautulli"):
        lib.facts(ids["Never Seen"], plugin, None)
    ids["Radarr Down"] = lib.movie("Radarr Down", 30 * GB, view_count=1, last_viewed_at=NOW - 100 * DAY)
    lib.facts(
        ids["Radarr Down"], "radarr", {"radarr.size_on_disk": 1}, status="unknown", error="radarr: connection refused"
    )
    lib.facts(ids["Radarr Down"], "overseerr", None)
    lib.facts(ids["Radarr Down"], "tautulli", {"tautulli.play_count": 1, "tautulli.last_played": NOW - 100 * DAY})
    ids["Stale Facts"] = lib.movie("Stale Facts", 12 * GB)
    lib.facts(ids["Stale Facts"], "radarr", {"radarr.monitored": True, "radarr.size_on_disk": 12 * GB},
              fetched_at=NOW - 3 * DAY)  # fmt: skip
    lib.facts(ids["Stale Facts"], "overseerr", None)
    lib.facts(ids["Stale Facts"], "tautulli", None)
    ids["No Row"] = lib.movie("No Row", 1 * GB)
    yield config, store, ids
    store.close()


def decide(env: Any, text: str, *, config: Any = None) -> tuple[set[str], dict[str, dict[str, str]]]:
    """(titles selected, {title: unknown services} of the undecided) for a rule over movies."""
    cfg, store, ids = env
    (rule,) = rules(text, REG)
    titles = {v: k for k, v in ids.items()}
    with Evaluation(config or cfg, store, [rule], REG, now=NOW, pm=PM) as ev:
        cands = ev.decide(rule)
        yes, unknown = ev.count(rule)
    selected = {titles[c.id] for c in cands if c.result}
    undecided = {titles[c.id]: c.unknown for c in cands if c.result is None}
    assert (yes, unknown) == (len(selected), len(undecided))  # count() and decide() agree
    return selected, undecided


def when(cond: str) -> str:
    return f"name: t\nmedia_types: [movie]\nwhen: {cond}\n"


ALL = {"Old Watched", "Recent Watch", "Never Seen", "Radarr Down", "Stale Facts", "No Row"}
RADARR_UNKNOWN = {"Radarr Down", "Stale Facts", "No Row"}


@pytest.mark.parametrize(
    ("cond", "selected", "undecided"),
    [
        ("{fact: plex.view_count, op: '=', value: 0}", {"Never Seen", "Stale Facts", "No Row"}, set()),
        ("{fact: plex.view_count, op: '!=', value: 0}", {"Old Watched", "Recent Watch", "Radarr Down"}, set()),
        ("{fact: plex.size, op: '>', value: 12GB}", {"Old Watched", "Radarr Down"}, set()),
        ("{fact: plex.size, op: '>=', value: 12GB}", {"Old Watched", "Radarr Down", "Stale Facts"}, set()),
        ("{fact: plex.size, op: '<', value: 4GB}", {"No Row"}, set()),
        ("{fact: plex.size, op: '<=', value: 4GB}", {"Recent Watch", "No Row"}, set()),
        # plex.year is absent for most: a comparison on an absent fact is false, never "unknown" or true.
        ("{fact: plex.year, op: '<', value: 2010}", {"Old Watched"}, set()),
        ("{fact: plex.year, op: '!=', value: 2001}", {"Recent Watch"}, set()),
        ("{fact: plex.year, missing: true}", {"Never Seen", "Radarr Down", "Stale Facts", "No Row"}, set()),
        ("{fact: plex.year, exists: true}", {"Old Watched", "Recent Watch"}, set()),
        ("{fact: plex.last_viewed_at, older_than: 90d}", {"Old Watched", "Radarr Down"}, set()),
        ("{fact: plex.last_viewed_at, newer_than: 90d}", {"Recent Watch"}, set()),
        ("{fact: plex.last_viewed_at, op: '<', value: '2023-06-01'}", {"Old Watched"}, set()),
        ("{fact: plex.labels, contains: keep}", {"Never Seen"}, set()),  # case-insensitive
        ("{fact: plex.labels, not_contains: keep}", ALL - {"Never Seen"}, set()),
        ("{fact: plex.title, contains: WATCH}", {"Old Watched", "Recent Watch"}, set()),
        ("{fact: plex.title, matches: '^(Old|Never) '}", {"Old Watched", "Never Seen"}, set()),
        ("{fact: plex.title, op: in, value: [no row, never seen]}", {"No Row", "Never Seen"}, set()),
        ("{fact: plex.title, op: not_in, value: [No Row]}", ALL - {"No Row"}, set()),
        # Plugin facts: absent -> false, unknown (failed / stale / never fetched) -> undecided.
        ("{fact: radarr.monitored, op: '=', value: true}", {"Old Watched"}, RADARR_UNKNOWN),
        ("{fact: radarr.size_on_disk, op: '>', value: 10GB}", {"Old Watched"}, RADARR_UNKNOWN),
        ("{fact: radarr.tags, contains: kids}", {"Old Watched"}, RADARR_UNKNOWN),
        ("{fact: radarr.tags, not_contains: kids}", {"Recent Watch"}, RADARR_UNKNOWN),
        ("{fact: radarr.tags, matches: '^K'}", {"Old Watched"}, RADARR_UNKNOWN),
        ("{fact: radarr.instance, op: in, value: [radarr4k]}", {"Recent Watch"}, RADARR_UNKNOWN),
        ("{fact: radarr.instance, exists: true}", {"Old Watched", "Recent Watch"}, RADARR_UNKNOWN),
        ("{fact: radarr.instance, missing: true}", {"Never Seen"}, RADARR_UNKNOWN),
        ("{fact: tautulli.play_count, op: '=', value: 0}", set(), {"No Row"}),
        ("{fact: tautulli.play_count, missing: true}", {"Never Seen", "Stale Facts"}, {"No Row"}),
        ("{fact: tautulli.watch_time, op: '>', value: 2h}", {"Old Watched"}, {"No Row"}),
        ("{fact: tautulli.last_played, older_than: 150d}", {"Old Watched"}, {"No Row"}),
    ],
)
def test_each_operator_selects_exactly_the_expected_items(env: Any, cond: str, selected: set, undecided: set) -> None:
    got, unknown = decide(env, when(cond))
    assert got == selected
    assert set(unknown) == undecided


def test_kleene_logic_for_all_any_not_and_unless(env: Any) -> None:
    down = "{fact: radarr.size_on_disk, op: '>', value: 1}"
    big = "{fact: plex.size, op: '>', value: 25GB}"  # only Radarr Down
    small = "{fact: plex.size, op: '<', value: 25GB}"
    # any(unknown, true) is true; all(unknown, false) is false; all(unknown, true) is unknown.
    stale = {"radarr": "radarr data is older than its freshness"}
    never = {"radarr": "no radarr data for this item yet"}
    expected = ({"Old Watched", "Recent Watch", "Radarr Down"}, {"Stale Facts": stale, "No Row": never})
    assert decide(env, when(f"{{any: [{down}, {big}]}}")) == expected
    sel, und = decide(env, when(f"{{all: [{down}, {small}]}}"))
    assert sel == {"Old Watched", "Recent Watch"} and set(und) == {"Stale Facts", "No Row"}
    sel, und = decide(env, when(f"{{all: [{down}, {big}]}}"))
    assert sel == set() and und == {"Radarr Down": {"radarr": "radarr: connection refused"}}
    # not(unknown) stays unknown; not(a comparison on an absent fact) is true.
    sel, und = decide(env, when(f"{{not: {down}}}"))
    assert sel == {"Never Seen"} and set(und) == RADARR_UNKNOWN
    sel, _ = decide(env, when("{not: {fact: radarr.monitored, op: '=', value: true}}"))
    assert sel == {"Recent Watch", "Never Seen"}
    # unless unknown -> skipped, never selected; unless true -> not selected at all.
    sel, und = decide(env, "name: t\nmedia_types: [movie]\nwhen: {fact: plex.view_count, op: '>', value: 0}\n"
                           f"unless: {down}\n")  # fmt: skip
    assert sel == set() and set(und) == {"Radarr Down"}


def test_a_service_that_is_not_configured_makes_its_facts_unknown(env: Any, tmp_path: Path) -> None:
    folder = tmp_path / "without-radarr"
    folder.mkdir()
    config = write_config(folder, PM, integrations=("overseerr", "tautulli"))
    sel, und = decide(env, when("{fact: radarr.monitored, op: '=', value: true}"), config=config)
    assert sel == set()
    assert set(und) == ALL and all(u == {"radarr": "radarr is not configured"} for u in und.values())
    # Plex facts still decide on their own.
    assert decide(env, when("{fact: plex.size, op: '>', value: 25GB}"), config=config)[0] == {"Radarr Down"}


def test_libraries_media_types_and_servers_scope_the_rule(env: Any) -> None:
    cfg, store, _ = env
    lib = Library(store)
    show = lib.show("Ended Show", [[GB, GB], [GB]])
    lib.facts(show["show"], "sonarr", {"sonarr.status": "ended"})
    lib.facts(show["episodes"][0][1], "sonarr", {"sonarr.status": "continuing"})  # its own row wins
    text = ("name: t\nlibraries: [tv shows]\nmedia_types: [show, season, episode]\n"
            "when: {fact: sonarr.status, op: '=', value: ended}\n")  # fmt: skip
    (rule,) = rules(text, REG)
    with Evaluation(cfg, store, [rule], REG, now=NOW, pm=PM) as ev:
        got = {c.id for c in ev.decide(rule) if c.result}
        bytes_ = {c.id: c.bytes for c in ev.decide(rule)}
    episodes = [e for season in show["episodes"] for e in season]
    assert got == {show["show"], *show["seasons"], *episodes} - {show["episodes"][0][1]}
    assert bytes_[show["show"]] == 3 * GB and bytes_[show["seasons"][0]] == 2 * GB  # sums of their episodes
    (other,) = rules("name: t\nservers: [elsewhere]\nwhen: {fact: plex.size, op: '>', value: 0}\n", REG)
    with Evaluation(cfg, store, [other], REG, now=NOW, pm=PM) as ev:
        assert ev.decide(other) == []


def test_reasons_name_each_condition_with_the_actual_value(env: Any) -> None:
    cfg, store, ids = env
    (rule,) = rules(
        "name: t\nmedia_types: [movie]\nwhen:\n  all:\n"
        "    - {fact: plex.view_count, op: '>=', value: 1}\n"
        "    - {fact: plex.last_viewed_at, older_than: 90d}\n"
        "    - {fact: radarr.size_on_disk, op: '>', value: 10GB}\n"
        "unless: {fact: overseerr.request_status, op: in, value: [pending]}\n",
        REG,
    )
    with Evaluation(cfg, store, [rule], REG, now=NOW, pm=PM) as ev:
        reasons = ev.explain(rule, [ids["Old Watched"], ids["Radarr Down"]])
    old = reasons[ids["Old Watched"]]
    assert [(r["in"], r["fact"], r["op"], r["actual"], r["state"], r["matched"]) for r in old] == [
        ("when", "plex.view_count", ">=", 2, "known", True),
        ("when", "plex.last_viewed_at", "older_than", NOW - 200 * DAY, "known", True),
        ("when", "radarr.size_on_disk", ">", 20 * GB, "known", True),
        ("unless", "overseerr.request_status", "in", None, "absent", False),
    ]
    assert old[2]["text"] == "radarr.size_on_disk 20.0 GB > 10GB"
    assert old[1]["text"].startswith("plex.last_viewed_at 2023-04-28") and "(200d ago) older_than 90d" in old[1]["text"]
    down = reasons[ids["Radarr Down"]]
    assert down[2]["state"] == "unknown" and down[2]["matched"] is None and down[2]["text"].endswith("(unknown) > 10GB")
