"""An `unmonitor` rule stops Radarr/Sonarr from grabbing an item again and deletes nothing: no files, no Plex
item, no tombstone — and the item is still in the library afterwards."""

from __future__ import annotations

import pytest
from deletion_world import ACTOR, LABEL, World, build_world

from smartplexd import audit, deletion
from smartplexd.rules.facts import registry
from smartplexd.rules.models import load_rules
from smartplexd.rules.planner import make_plan

RULE = f"""\
name: stop-grabbing
media_types: [movie, show]
when: {{fact: plex.labels, contains: {LABEL}}}
action: {{type: unmonitor}}
"""


@pytest.fixture
def world(tmp_path):
    w = build_world(tmp_path)
    (tmp_path / "rules" / "cleanup.yaml").unlink()
    (tmp_path / "rules" / "stop.yaml").write_text(RULE)
    yield w
    w.close()


def test_unmonitor_rule_unmonitors_and_deletes_nothing(world: World) -> None:
    world.label(["approved", "show"])
    config = world.config
    radarr, sonarr = world.state("radarr"), world.state("sonarr")
    movie = radarr.movie_by_tmdb(world.universe.movies[0].tmdb)
    series = sonarr.series_by_tvdb(world.universe.shows[0].tvdb)
    assert movie.monitored and series.monitored
    with world.store() as store:
        plan = make_plan(config, store, load_rules(config.rule_paths, registry()), actor=ACTOR)
        selected = {e.item_id for e in plan.items if e.status == "selected"}
        assert selected == {world.item_id(store, "approved"), world.item_id(store, "show")}
        result = deletion.apply_plan(config, store, plan.id, actor=ACTOR, confirm="DELETE")
        assert result.exit_code == 0 and result.counts() == {"done": 2}
        steps = store.query("SELECT plugin, action, status FROM deletion_steps ORDER BY deletion_id, seq")
        assert steps == [
            {"plugin": "radarr", "action": "unmonitor", "status": "done"},
            {"plugin": "sonarr", "action": "unmonitor", "status": "done"},
        ]
        # Nothing was deleted anywhere: the files, the Plex items and the mirror rows are all still there.
        assert not radarr.deletes and not sonarr.deletes
        assert world.plex_has("approved") and world.plex_has("show")
        assert store.query_one("SELECT COUNT(*) AS n FROM tombstones")["n"] == 0
        assert store.query_one("SELECT COUNT(*) AS n FROM media_items WHERE deleted_at IS NOT NULL")["n"] == 0
        assert audit.verify(store).ok
    assert not radarr.movie_by_tmdb(world.universe.movies[0].tmdb).monitored
    assert not sonarr.series_by_tvdb(world.universe.shows[0].tvdb).monitored
