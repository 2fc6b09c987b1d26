"""`smartplexd demo` builds a homelab on loopback: every simulator up with its own credentials, a demo
folder whose config loads and whose rules are valid, secrets kept in 0600 files, and a library big and slow
enough that a sync visibly progresses.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from demo_process import DemoProcess

from smartplexd import events
from smartplexd.config import AppConfig, load_config
from smartplexd.demo.launcher import DemoFiles, DemoOptions, Simulators, SimulatorThread, banner, free_port, write_demo
from smartplexd.demo.universe import generate
from smartplexd.plex.sync import sync_server
from smartplexd.rules.facts import registry
from smartplexd.rules.models import load_rules
from smartplexd.store import open_store


@pytest.fixture(scope="module")
def sims() -> Iterator[Simulators]:
    universe = generate(seed=5, movies=300, shows=3, seasons_per_show=2, episodes_per_season=4)
    with SimulatorThread(universe, latency=0.05) as running:
        yield running


@pytest.fixture
def demo(tmp_path: Path, sims: Simulators) -> DemoFiles:
    return write_demo(tmp_path / "demo-data", sims, port=free_port())


def test_the_demo_config_loads_and_points_at_every_simulator(demo: DemoFiles, sims: Simulators) -> None:
    config: AppConfig = load_config(demo.config_path)
    (home,) = config.plex.servers
    assert home.url == sims.urls["plex"] and home.token.get_secret_value() == sims.keys["plex"]
    assert [i.name for i in config.integrations["radarr"]] == ["radarr", "radarr4k"]
    assert [i.url for i in config.integrations["sonarr"]] == [sims.urls["sonarr"]]
    assert config.integrations["overseerr"].url == sims.urls["overseerr"]
    assert config.integrations["tautulli"].url == sims.urls["tautulli"]
    assert config.server.host == "127.0.0.1" and demo.url == f"http://127.0.0.1:{config.server.port}/"
    assert {t.role for t in config.server.tokens} == {"admin", "viewer"}
    assert config.database_path == demo.config_path.parent / "smartplexd.db"


def test_secrets_live_in_private_files_not_in_the_config(demo: DemoFiles, sims: Simulators) -> None:
    text = demo.config_path.read_text()
    for value in [*sims.keys.values(), demo.admin_token, demo.viewer_token]:
        assert value not in text
    folder = demo.config_path.parent / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in folder.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert len(set(sims.keys.values())) == len(sims.keys)  # every service has a credential of its own


def test_demo_rules_are_valid(demo: DemoFiles) -> None:
    config = load_config(demo.config_path)
    rules = load_rules(config.rule_paths, registry())
    assert rules and [r.name for r in rules]
    assert {p.name for p in demo.rules} == {p.name for p in (demo.config_path.parent / "rules").iterdir()}


def test_every_simulator_wants_its_credential(sims: Simulators) -> None:
    with httpx.Client(timeout=10) as http:
        plex = sims.urls["plex"] + "/library/sections"  # /identity is public, as on real PMS
        assert http.get(plex, headers={"X-Plex-Token": sims.keys["plex"]}).status_code == 200
        assert http.get(plex, headers={"X-Plex-Token": "wrong"}).status_code == 401
        for name in ("sonarr", "radarr", "radarr4k"):
            url = sims.urls[name] + "/api/v3/system/status"
            assert http.get(url, headers={"X-Api-Key": sims.keys[name]}).status_code == 200, name
            assert http.get(url, headers={"X-Api-Key": sims.keys["plex"]}).status_code == 401, name
        url = sims.urls["overseerr"] + "/api/v1/request"
        assert http.get(url, headers={"X-Api-Key": sims.keys["overseerr"]}).status_code == 200
        assert http.get(url, headers={"X-Api-Key": "nope"}).status_code == 403
        url = sims.urls["tautulli"] + "/api/v2"
        assert http.get(url, params={"apikey": sims.keys["tautulli"], "cmd": "status"}).status_code == 200
        assert http.get(url, params={"apikey": "nope", "cmd": "status"}).status_code == 401


def test_a_sync_of_the_demo_library_is_complete_and_visibly_progresses(demo: DemoFiles, sims: Simulators) -> None:
    config = load_config(demo.config_path)
    progress: list[int] = []
    unsubscribe = events.bus.subscribe(
        lambda e: progress.append(e.data["done"]) if e.type == "sync.progress" and e.data["server"] == "home" else None
    )
    store = open_store(config.database_path)
    try:
        result = sync_server(config, store, "home")
        in_db = store.query_one("SELECT COUNT(*) AS n FROM media_items WHERE server = 'home'")
    finally:
        store.close()
        unsubscribe()
    assert result.status == "ok", result.error
    assert result.counts["seen"] == sims.universe.plex_item_count == in_db["n"]  # type: ignore[index]
    assert len(progress) >= 4  # several updates, not one jump to 100%
    assert result.duration_ms >= 500  # the simulated latency makes it watchable


def test_running_the_demo_again_keeps_the_api_tokens(tmp_path: Path, sims: Simulators) -> None:
    first = write_demo(tmp_path / "d", sims, port=free_port())
    (first.config_path.parent / "rules" / "stale.yaml").write_text("not: a rule\n")
    second = write_demo(tmp_path / "d", sims, port=free_port())
    assert (second.admin_token, second.viewer_token) == (first.admin_token, first.viewer_token)
    assert not (second.config_path.parent / "rules" / "stale.yaml").exists()


def test_banner_says_where_everything_is(demo: DemoFiles, sims: Simulators) -> None:
    text = banner(demo, sims)
    assert f"Status page: {demo.url}" in text
    assert demo.admin_token in text and demo.viewer_token in text
    for url in sims.urls.values():
        assert url in text
    assert DemoOptions().movies == 2000 and DemoOptions().shows == 60


# --- the real thing: `smartplexd demo` as a process -------------------------------------------------------


def test_smartplexd_demo_serves_a_live_sync(tmp_path: Path) -> None:
    """The demo process starts the simulators and the daemon, syncs at once, and streams the progress."""
    demo = DemoProcess(tmp_path / "demo-data", "--movies", "400", "--shows", "3", "--latency", "0.3")
    try:
        seen: list[tuple[int, str, dict]] = []
        # Last-Event-ID 0: everything since the daemon started, even what it published before we connected.
        with httpx.Client(timeout=30) as http:
            with http.stream("GET", demo.url + "api/events", headers={"Last-Event-ID": "0"}) as resp:
                assert resp.status_code == 200
                event_id, event_type = None, None
                for line in resp.iter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("event: "):
                        event_type = line[7:]
                    elif line.startswith("data: ") and event_id is not None and event_type is not None:
                        seen.append((event_id, event_type, json.loads(line[6:])["data"]))
                        if event_type == "enrich.finished":
                            break
            # After the refresh the demo evaluates every rule once, so items are leaving soon at once.
            deadline = time.monotonic() + 60
            while not (status := http.get(demo.url + "api/status").json())["leaving_soon"]:
                assert time.monotonic() < deadline, "no item entered a grace period"
                time.sleep(0.5)
            page = http.get(demo.url)
        ids = [i for i, _, _ in seen]
        assert ids == sorted(set(ids))
        progress = [d for _, t, d in seen if t == "sync.progress" and d["library"] == "Movies"]
        assert len(progress) >= 3 and progress[-1]["done"] == progress[-1]["total"] == 400
        (finished,) = [d for _, t, d in seen if t == "sync.finished"]
        assert finished["status"] == "ok"
        # The sync is followed by a facts refresh, so rules see Radarr/Sonarr/Overseerr/Tautulli facts at once.
        enriched = seen[-1][2]["plugins"]
        for plugin in ("radarr", "sonarr", "overseerr", "tautulli"):
            assert enriched[plugin]["unknown"] == 0 and enriched[plugin]["known"] > 0, (plugin, enriched[plugin])
        (home,) = status["servers"]
        assert home["last_sync"]["status"] == "ok" and home["last_sync"]["items_seen"] == finished["counts"]["seen"]
        assert page.status_code == 200 and 'data-server="home"' in page.text
        assert demo.admin_token not in page.text + json.dumps(status)
        soon = status["leaving_soon"][0]
        assert soon["due_at"] and soon["reasons"] and soon["title"] in page.text
    finally:
        code = demo.stop()
    assert code == 0, "".join(demo.err)
