"""The enrichment core: batches, item_facts statuses, progress events, single-item refresh, plugin
discovery through entry points and the fact registry."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import plugin_support as ps
import pytest

from smartplexd.demo import radarr, tautulli
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.enrich import enrich_all, enrich_items
from smartplexd.events import EventBus
from smartplexd.model import FACT_TYPES, EnrichResult
from smartplexd.plugins import create_plugin_manager, hookimpl


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=21, movies=50, shows=3, seasons_per_show=1, episodes_per_season=3, now=1_700_000_000)


@pytest.fixture
def servers(universe: Universe) -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    with ThreadedServer(radarr.create_app(universe)) as r, ThreadedServer(tautulli.create_app(universe)) as t:
        yield r, t


def config(tmp_path: Path, r: ThreadedServer, t: ThreadedServer):
    return ps.write_config(
        tmp_path,
        f"""
        radarr:
          - {{url: '{r.url}', api_key: demo-radarr-key, timeout: 2}}
        tautulli: {{url: '{t.url}', api_key: {tautulli.DEFAULT_API_KEY}, timeout: 2}}
        """,
    )


def test_enrich_all_writes_one_row_per_item_and_plugin_and_reports_progress(
    tmp_path: Path, universe: Universe, servers: tuple[ThreadedServer, ThreadedServer]
) -> None:
    cfg = config(tmp_path, *servers)
    bus = EventBus()
    seen = ps.Recorder(bus, "enrich.started", "enrich.progress", "enrich.finished")
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        gone = ps.insert(db, rating_key="901", title="Removed", tmdb_id=universe.movies[0].tmdb, removed_at=1.0)
        deleted = ps.insert(db, rating_key="902", title="Deleted", tmdb_id=universe.movies[1].tmdb, deleted_at=1.0)
        summaries = enrich_all(cfg, db, bus=bus, batch_size=20)

        assert set(summaries) == {"radarr", "tautulli"}  # sonarr and overseerr are not configured
        rows = db.query("SELECT plugin, COUNT(*) AS n FROM item_facts GROUP BY plugin ORDER BY plugin")
        assert rows == [{"plugin": "radarr", "n": len(ids)}, {"plugin": "tautulli", "n": len(ids)}]
        assert db.query("SELECT * FROM item_facts WHERE item_id IN (?, ?)", (gone, deleted)) == []
        radarr_summary = summaries["radarr"]
        assert radarr_summary.items == len(ids) and radarr_summary.known == sum(
            1 for m in universe.movies if m.radarr == "radarr"
        )
        assert summaries["tautulli"].known == len(ids)

    assert seen.of("enrich.started") == [{"total": len(ids)}]
    progress = seen.of("enrich.progress")
    assert [p["done"] for p in progress] == [*range(20, len(ids), 20), len(ids)]
    finished = seen.of("enrich.finished")[0]
    assert finished["plugins"]["radarr"]["known"] == radarr_summary.known


def test_enrich_items_refreshes_only_those_items(
    tmp_path: Path, universe: Universe, servers: tuple[ThreadedServer, ThreadedServer]
) -> None:
    _, t = servers
    cfg = config(tmp_path, *servers)
    movie = next(m for m in universe.movies if not m.views)
    with ps.store(tmp_path) as db:
        ids = ps.insert_universe(db, universe)
        other = next(i for key, i in ids.items() if key != movie.rating_key)
        enrich_all(cfg, db, bus=EventBus())
        before = db.query_one("SELECT fetched_at FROM item_facts WHERE item_id = ? AND plugin = 'tautulli'", (other,))
        # A webhook says the movie was just watched: Tautulli now has a play; refresh that item alone.
        t.call(lambda: t.app[tautulli.TAUTULLI_STATE].add_play(movie.rating_key, "carol", universe.now, 100))
        summaries = enrich_items(cfg, db, [ids[movie.rating_key]], bus=EventBus())
        assert summaries["tautulli"].items == 1
        assert ps.facts(db, ids[movie.rating_key], "tautulli")[1]["tautulli.play_count"] == 1
        after = db.query_one("SELECT fetched_at FROM item_facts WHERE item_id = ? AND plugin = 'tautulli'", (other,))
        assert before == after


def test_a_failed_service_leaves_unknown_and_recovers(
    tmp_path: Path, universe: Universe, servers: tuple[ThreadedServer, ThreadedServer]
) -> None:
    r, _ = servers
    cfg = config(tmp_path, *servers)
    with ps.store(tmp_path) as db:
        ps.insert_universe(db, universe)
        r.app[FAULTS].revoke_auth = True
        summaries = enrich_all(cfg, db, bus=EventBus())
        assert summaries["radarr"].unknown == summaries["radarr"].items and "HTTP 401" in (
            summaries["radarr"].error or ""
        )
        assert summaries["tautulli"].unknown == 0  # one plugin failing does not touch the others
        r.app[FAULTS].revoke_auth = False
        assert enrich_all(cfg, db, bus=EventBus())["radarr"].unknown == 0
        assert "unknown" not in ps.statuses(db, "radarr").values()


class _BrokenPlugin:
    """A third-party plugin with a bug."""

    @hookimpl
    def smartplexd_enrich(self, items, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


class _PartialPlugin:
    """Knows one item, failed for the rest."""

    @hookimpl
    async def smartplexd_enrich(self, items, ctx):  # type: ignore[no-untyped-def]
        return EnrichResult("partial", {items[0].id: {"partial.flag": True}}, complete=False, error="shard 2 down")


def test_a_plugin_that_raises_makes_its_facts_unknown_not_the_run_fail(tmp_path: Path) -> None:
    pm = create_plugin_manager(load_entry_points=False)
    pm.register(_BrokenPlugin(), name="broken")
    pm.register(_PartialPlugin(), name="partial")
    cfg = ps.write_config(tmp_path, "{}")
    with ps.store(tmp_path) as db:
        first = ps.insert(db, rating_key="1", title="One")
        second = ps.insert(db, rating_key="2", title="Two")
        summaries = enrich_all(cfg, db, pm=pm, bus=EventBus())
        assert ps.facts(db, first, "broken")[0] == "unknown"
        assert "RuntimeError('boom')" in (ps.facts(db, first, "broken")[2] or "")
        assert ps.facts(db, first, "partial")[:2] == ("known", {"partial.flag": True})
        assert ps.facts(db, second, "partial") == ("unknown", {}, "shard 2 down")
        assert (summaries["partial"].known, summaries["partial"].unknown) == (1, 1)


def test_plugins_command_lists_the_four_integrations_from_entry_points() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smartplexd", "plugins", "--json"], capture_output=True, text=True, check=True
    ).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    common = {
        "smartplexd_config_model",
        "smartplexd_facts",
        "smartplexd_enrich",
        "smartplexd_health",
        "smartplexd_webhook",
    }
    cascade = {"smartplexd_cascade_targets", "smartplexd_cascade_step"}
    assert set(plugins["radarr"]["hooks"]) == common | cascade | {"smartplexd_restore"}
    assert set(plugins["sonarr"]["hooks"]) == common | cascade | {"smartplexd_restore"}
    assert set(plugins["overseerr"]["hooks"]) == common | cascade
    assert set(plugins["tautulli"]["hooks"]) == common
    assert {plugins[n]["module"] for n in ("radarr", "sonarr", "overseerr", "tautulli")} == {
        "smartplexd_plugins.radarr",
        "smartplexd_plugins.sonarr",
        "smartplexd_plugins.overseerr",
        "smartplexd_plugins.tautulli",
    }
    assert not any(plugins[n]["builtin"] for n in ("radarr", "sonarr", "overseerr", "tautulli"))


def test_fact_registry_has_every_fact_the_rules_need() -> None:
    pm = create_plugin_manager()
    facts = {f.name: f for batch in pm.hook.smartplexd_facts() for f in batch}
    required = {
        "radarr.monitored": "bool",
        "radarr.size_on_disk": "size",
        "radarr.tags": "list",
        "radarr.added": "datetime",
        "radarr.quality_profile": "str",
        "radarr.instance": "str",
        "sonarr.status": "str",
        "sonarr.monitored": "bool",
        "sonarr.size_on_disk": "size",
        "sonarr.episode_file_count": "int",
        "sonarr.tags": "list",
        "sonarr.added": "datetime",
        "sonarr.instance": "str",
        "overseerr.requested_by": "str",
        "overseerr.request_status": "str",
        "overseerr.requested_at": "datetime",
        "overseerr.media_status": "str",
        "tautulli.play_count": "int",
        "tautulli.last_played": "datetime",
        "tautulli.users_watched": "int",
        "tautulli.watch_time": "duration",
        "tautulli.percent_complete_max": "int",
    }
    assert {name: facts[name].type for name in required} == required
    assert all(f.type in FACT_TYPES and f.description.endswith(".") for f in facts.values())
    assert all(f.source in ("radarr", "sonarr", "overseerr", "tautulli") for f in facts.values())
