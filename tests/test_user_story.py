"""A newcomer's story end to end, through the CLI, against simulated Plex, Radarr, Sonarr and Overseerr:
`sync` mirrors Plex and refreshes facts; `plan` says why each item would go; when Radarr is down its facts
are unknown and nothing that depends on them is selected — never "not monitored", never 0."""

from __future__ import annotations

import json

import pytest
from deletion_world import World, build_world

MONITORED = """\
name: monitored-movies
description: Movies Radarr monitors (a test rule, not advice)
media_types: [movie]
when: {fact: radarr.monitored, op: "=", value: true}
action: {type: delete}
"""


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    (tmp_path / "rules" / "monitored.yaml").write_text(MONITORED)
    yield w
    w.close()


def _monitored_in_radarr(world: World) -> set[str]:
    return {str(m.rating_key) for m in world.universe.movies if m.radarr == "radarr" and m.monitored}


def _plan(world: World) -> dict:
    proc = world.cli("plan", "--rule", "monitored-movies", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _selected_rating_keys(world: World, plan: dict) -> set[str]:
    ids = {e["item_id"] for e in plan["items"] if e["status"] == "selected"}
    with world.store() as store:
        return {r["rating_key"] for r in store.query("SELECT id, rating_key FROM media_items") if r["id"] in ids}


def test_sync_refreshes_facts_and_plan_selects_exactly_with_reasons(world):
    proc = world.cli("sync", "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["status"] == "ok"
    assert result["facts"]["radarr"]["unknown"] == 0 and result["facts"]["radarr"]["known"] > 0

    expected = _monitored_in_radarr(world)
    assert expected, "the seeded universe should hold monitored movies"
    plan = _plan(world)
    assert _selected_rating_keys(world, plan) == expected
    for entry in (e for e in plan["items"] if e["status"] == "selected"):
        (reason,) = entry["reasons"]
        assert reason["fact"] == "radarr.monitored" and reason["actual"] is True

    text = world.cli("plan", "--rule", "monitored-movies")
    assert "radarr.monitored" in text.stdout and "smartplexd apply" in text.stdout


def test_radarr_down_makes_its_facts_unknown_and_nothing_is_selected(world):
    assert world.cli("sync").returncode == 0
    assert _selected_rating_keys(world, _plan(world)), "selected while Radarr answered"

    world.faults("radarr").down = True
    proc = world.cli("sync", "--json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)[0]["facts"]["radarr"]
    assert facts["known"] == 0 and facts["unknown"] > 0 and facts["error"]

    plan = _plan(world)
    assert _selected_rating_keys(world, plan) == set()
    assert "radarr" in plan["unknown_sources"]
    skipped = [e for e in plan["items"] if e["status"] == "skipped"]
    assert skipped and all("radarr" in (e["skip_reason"] or "") for e in skipped)
    banner = world.cli("plan", "--rule", "monitored-movies").stdout
    assert "UNKNOWN" in banner and "radarr" in banner
