"""A small homelab for the deletion tests: simulated Plex, Radarr, Sonarr and Overseerr on 127.0.0.1, a config
file, a rules folder, a synced SQLite store and a plan — the seed's cascade checklist in one place.

The four items the rule ``cleanup`` selects (they carry the Plex label ``cleanup``):

* ``approved``  — a movie in Radarr with an *approved* Overseerr request (the request is kept),
* ``pending``   — a movie in Radarr with a *pending* Overseerr request (the request is deleted),
* ``plex_only`` — a movie no other service knows,
* ``show``      — a show in Sonarr (two seasons of two episodes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartplexd.config import load_config
from smartplexd.demo import overseerr, plex, radarr, sonarr
from smartplexd.demo.arr import ARR_STATE
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Request, generate
from smartplexd.store import open_store

PLEX_TOKEN = "deletion-test-plex-token"
RADARR_KEY = "deletion-test-radarr-key"
SONARR_KEY = "deletion-test-sonarr-key"
OVERSEERR_KEY = "deletion-test-overseerr-key"
LABEL = "cleanup"
ACTOR = "cli:tester"

RULE = f"""\
name: cleanup
description: everything labelled {LABEL}
media_types: [movie, show]
when: {{fact: plex.labels, contains: {LABEL}}}
"""


@dataclass
class World:
    tmp: Path
    universe: Any
    servers: dict[str, ThreadedServer]
    config_path: Path
    keys: dict[str, int] = field(default_factory=dict)
    extra_config: dict[str, Any] = field(default_factory=dict)

    # ---- the pieces

    @property
    def config(self) -> Any:
        return load_config(self.config_path)

    def store(self) -> Any:
        return open_store(self.tmp / "smartplexd.db")

    def state(self, name: str) -> Any:
        app = self.servers[name].app
        return {"plex": lambda: app[plex.PLEX_STATE], "overseerr": lambda: app[overseerr.OVERSEERR_STATE]}.get(
            name, lambda: app[ARR_STATE]
        )()

    def faults(self, name: str) -> Any:
        return self.servers[name].app[FAULTS]

    def item_id(self, store: Any, key: str) -> int:
        row = store.query_one(
            "SELECT id FROM media_items WHERE server = 'home' AND rating_key = ?", (str(self.keys[key]),)
        )
        assert row is not None, key
        return int(row["id"])

    def plex_has(self, key: str) -> bool:
        return self.keys[key] not in self.state("plex").deleted

    # ---- set-up steps

    def write_config(self, **deletion: Any) -> None:
        settings = {
            "enabled": True,
            "window": None,
            "retry": {"max_attempts": 4, "initial_backoff": 60, "max_backoff": 900},
        }
        settings.update(deletion)
        urls = {name: srv.url for name, srv in self.servers.items()}
        config = {
            "database": str(self.tmp / "smartplexd.db"),
            "timezone": "UTC",
            "plex": {"servers": [{"name": "home", "url": urls["plex"], "token": PLEX_TOKEN, "timeout": 5}]},
            "integrations": {
                "radarr": [{"name": "radarr", "url": urls["radarr"], "api_key": RADARR_KEY, "timeout": 2}],
                "sonarr": [{"name": "sonarr", "url": urls["sonarr"], "api_key": SONARR_KEY, "timeout": 2}],
                "overseerr": {"url": urls["overseerr"], "api_key": OVERSEERR_KEY, "timeout": 2},
            },
            "deletion": settings,
            "rules": [str(self.tmp / "rules")],
            **self.extra_config,
        }
        self.config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def sync(self) -> None:
        from smartplexd.plex.sync import sync_server

        with self.store() as store:
            result = sync_server(self.config, store, "home")
            assert result.status == "ok", result

    def label(self, keys: list[str]) -> None:
        """Make exactly ``keys`` (of the four checklist items) carry the label in Plex, as an admin would,
        and mirror each change with a one-item sync (what Plex's webhook triggers)."""
        from smartplexd.plex.sync import sync_item

        state, srv = self.state("plex"), self.servers["plex"]
        with self.store() as store:
            for key, rating_key in self.keys.items():
                if not self.plex_has(key):
                    continue
                node = state.node(rating_key)
                labels = [x for x in node.obj.labels if x != LABEL] + ([LABEL] if key in keys else [])
                if labels != node.obj.labels:
                    srv.call(lambda rk=rating_key, lb=labels: state.update_item(rk, labels=lb))
                    sync_item(self.config, store, "home", rating_key)

    def make_plan(self, keys: list[str] | None = None) -> int:
        """A draft plan from the real planner: rule ``cleanup`` selects ``keys`` (default: all four items)."""
        from smartplexd.rules.facts import registry
        from smartplexd.rules.models import load_rules
        from smartplexd.rules.planner import make_plan

        keys = keys or ["approved", "pending", "plex_only", "show"]
        self.label(keys)
        config = self.config
        with self.store() as store:
            plan = make_plan(
                config, store, load_rules(config.rule_paths, registry()), actor=ACTOR, rule_names=["cleanup"]
            )
            selected = {e.item_id for e in plan.items if e.status == "selected"}
            assert selected == {self.item_id(store, k) for k in keys}, plan.items
        assert plan.id is not None
        return plan.id

    def close(self) -> None:
        for srv in self.servers.values():
            srv.stop()

    # ---- observations

    def sim_state(self) -> dict[str, Any]:
        """What the simulated services hold now, in a form two worlds can be compared by."""
        ov = self.state("overseerr")
        return {
            "plex_deleted": sorted(self.state("plex").deleted),
            "radarr_deletes": [(d["kind"], d.get("id")) for d in self.state("radarr").deletes],
            "sonarr_deletes": [(d["kind"], d.get("id")) for d in self.state("sonarr").deletes],
            "overseerr_deletions": [(d["kind"], d["id"]) for d in ov.deletions],
        }

    def db_state(self) -> dict[str, Any]:
        """Deletions, steps, tombstones and deleted rows without times and attempt counts."""
        with self.store() as store:
            return {
                "deletions": store.query(
                    "SELECT id, item_id, status, reason, bytes_freed FROM deletion_events ORDER BY id"
                ),
                "steps": store.query(
                    "SELECT deletion_id, seq, plugin, target, action, status, next_attempt_at IS NULL AS settled "
                    "FROM deletion_steps ORDER BY deletion_id, seq"
                ),
                "tombstones": store.query("SELECT server, rating_key, item_id, deletion_id FROM tombstones ORDER BY 2"),
                "deleted_rows": [
                    r["rating_key"]
                    for r in store.query("SELECT rating_key FROM media_items WHERE deleted_at IS NOT NULL")
                ],
                "plans": store.query("SELECT id, status FROM plans"),
            }

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``smartplexd -c CONFIG ARGS`` in a separate process (its own pid, so its own locks)."""
        full_env = {**os.environ, "SMARTPLEXD_LOG_LEVEL": "WARNING", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "smartplexd", "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def build_world(tmp: Path, **deletion: Any) -> World:
    """Start the four simulated services, write config and rule, and sync Plex into a fresh store."""
    universe = generate(seed=11, movies=10, shows=3, seasons_per_show=2, episodes_per_season=2)
    for movie in universe.movies:
        movie.labels = [label for label in movie.labels if label != LABEL]
    for show in universe.shows:
        show.labels = [label for label in show.labels if label != LABEL]
    approved, pending, plex_only = universe.movies[0], universe.movies[1], universe.movies[2]
    for movie in (approved, pending):
        movie.radarr, movie.monitored, movie.labels = "radarr", True, [LABEL]
    approved.request = Request(901, "alice", 2, universe.now - 40 * 86_400)
    pending.request = Request(902, "bob", 1, universe.now - 3 * 86_400)
    plex_only.radarr, plex_only.request, plex_only.labels = None, None, [LABEL]
    show = universe.shows[0]
    show.sonarr, show.request, show.labels, show.monitored = "sonarr", None, [LABEL], True
    servers = {
        "plex": ThreadedServer(plex.create_app(universe, token=PLEX_TOKEN)).start(),
        "radarr": ThreadedServer(radarr.create_app(universe, api_key=RADARR_KEY)).start(),
        "sonarr": ThreadedServer(sonarr.create_app(universe, api_key=SONARR_KEY)).start(),
        "overseerr": ThreadedServer(overseerr.create_app(universe, api_key=OVERSEERR_KEY)).start(),
    }
    (tmp / "rules").mkdir(exist_ok=True)
    (tmp / "rules" / "cleanup.yaml").write_text(textwrap.dedent(RULE))
    world = World(tmp, universe, servers, tmp / "config.yaml")
    world.keys = {
        "approved": approved.rating_key,
        "pending": pending.rating_key,
        "plex_only": plex_only.rating_key,
        "show": show.rating_key,
    }
    world.write_config(**deletion)
    world.sync()
    return world
