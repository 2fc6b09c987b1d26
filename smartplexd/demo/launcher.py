"""``smartplexd demo``: a whole homelab on loopback, and the daemon running against it.

One process starts every simulated server (Plex, Sonarr, Radarr, a 4K Radarr, Overseerr, Tautulli) on
free 127.0.0.1 ports, all rendering one seeded :class:`~smartplexd.demo.universe.Universe` (by default
2,000 movies and 60 shows) in one event loop. The simulated Plex answers with some latency so a sync
takes a few seconds and the status page's progress bar visibly moves. Then it writes a demo folder
(default ``./demo-data/``)::

    demo-data/config.yaml     points at the simulators; secrets come from files, never inline
    demo-data/secrets/        API keys, the Plex token, admin and viewer API tokens (mode 0600)
    demo-data/rules/          the ready-made recipes of the repository's rules/ folder
    demo-data/smartplexd.db   created by the daemon

prints the URLs and tokens, and runs the daemon (``smartplexd.daemon.Daemon``) against that config until
Ctrl-C. Everything is simulated, so the demo config enables deletions at any hour: the cascade, the retry
queue and the audit log can be watched end to end without touching a real library.

Tests use the parts: :func:`start_simulators` (in a running loop), :func:`write_demo`, and
:class:`SimulatorThread` (the simulators in a background thread for synchronous callers).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiohttp import web

from smartplexd.demo import overseerr, plex, radarr, sonarr, tautulli
from smartplexd.demo.faults import Faults
from smartplexd.demo.serving import start_app
from smartplexd.demo.universe import Universe, generate

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"
"""The repository's recipe folder (present in a source checkout; absent in an installed wheel)."""

SERVICES = ("plex", "sonarr", "radarr", "radarr4k", "overseerr", "tautulli")

# Used when no recipe folder ships with this install: one rule in the language of ARCHITECTURE §4 that
# the demo library always has candidates for, so "leaving soon" fills up.
FALLBACK_RULE = """\
# Demo rule: movies someone watched, last played more than 180 days ago, not labelled "keep".
name: demo-watched-movies
description: Movies watched more than 180 days ago (demo)
libraries: [Movies]
when:
  all:
    - {fact: plex.view_count, op: ">=", value: 1}
    - {fact: plex.last_viewed_at, older_than: 180d}
unless:
  any:
    - {fact: plex.labels, contains: keep}
action: {type: delete, grace_period: 7d, collection: "Leaving Soon"}
limits: {max_items: 20}
order_by: [plex.last_viewed_at]
"""

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    """What ``smartplexd demo`` builds (its command-line flags)."""

    folder: str | Path = "./demo-data"
    movies: int = 2000
    shows: int = 60
    seed: int = 42
    latency: float = 0.25
    """Seconds the simulated Plex waits before each answer (the others wait a tenth of it)."""
    port: int = 0
    """Port of the daemon's HTTP server on 127.0.0.1; 0 picks a free one."""
    sync_schedule: str = "*/15 * * * *"


@dataclass
class Simulators:
    """The running simulated servers: base URLs and credentials by service name."""

    universe: Universe
    urls: dict[str, str]
    keys: dict[str, str]
    apps: dict[str, web.Application]
    runners: list[web.AppRunner] = field(default_factory=list)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()


def generate_keys() -> dict[str, str]:
    """Fresh random credentials for every simulated service (a demo must not teach fixed secrets)."""
    return {name: secrets.token_hex(16) for name in SERVICES}


async def start_simulators(
    universe: Universe, *, latency: float = 0.25, keys: dict[str, str] | None = None
) -> Simulators:
    """Start every simulated server in the running loop on free loopback ports."""
    keys = keys or generate_keys()
    other_latency = latency / 10
    apps = {
        "plex": plex.create_app(universe, token=keys["plex"], faults=Faults(latency=latency)),
        "sonarr": sonarr.create_app(universe, api_key=keys["sonarr"], faults=Faults(latency=other_latency)),
        "radarr": radarr.create_app(universe, api_key=keys["radarr"], faults=Faults(latency=other_latency)),
        "radarr4k": radarr.create_app(
            universe, instance="radarr4k", api_key=keys["radarr4k"], faults=Faults(latency=other_latency)
        ),
        "overseerr": overseerr.create_app(universe, api_key=keys["overseerr"], faults=Faults(latency=other_latency)),
        "tautulli": tautulli.create_app(universe, api_key=keys["tautulli"], faults=Faults(latency=other_latency)),
    }
    sims = Simulators(universe, {}, dict(keys), apps)
    try:
        for name, app in apps.items():
            runner, url = await start_app(app)
            sims.runners.append(runner)
            sims.urls[name] = url
    except BaseException:
        await sims.stop()
        raise
    return sims


class SimulatorThread:
    """The simulators in one event loop on a background thread (for callers that block, like the daemon)."""

    def __init__(self, universe: Universe, *, latency: float = 0.25, keys: dict[str, str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="demo-simulators", daemon=True)
        self._args = (universe, latency, keys)
        self.sims: Simulators | None = None

    def start(self) -> Simulators:
        self._thread.start()
        universe, latency, keys = self._args
        future = asyncio.run_coroutine_threadsafe(start_simulators(universe, latency=latency, keys=keys), self.loop)
        self.sims = future.result(timeout=60)
        return self.sims

    def stop(self) -> None:
        if self.sims is not None:
            asyncio.run_coroutine_threadsafe(self.sims.stop(), self.loop).result(timeout=30)
            self.sims = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> Simulators:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class DemoFiles:
    config_path: Path
    url: str
    admin_token: str
    viewer_token: str
    rules: list[Path]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret_file(folder: Path, name: str, value: str | None = None) -> tuple[Path, str]:
    """Write (or reuse, for API tokens a user may have saved) ``secrets/<name>`` with mode 0600."""
    path = folder / name
    if value is None:
        value = path.read_text().strip() if path.exists() else secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    os.chmod(path, 0o600)
    return path, value


def _integration_sections(sims: Simulators, secret: dict[str, Path]) -> list[str]:
    """YAML for the integrations whose plugin is installed (an unknown section would be a config error)."""
    from smartplexd.config import integration_models

    installed = integration_models()
    lines: list[str] = []
    if "sonarr" in installed:
        lines += [
            "  sonarr:",
            f"    - {{name: sonarr, url: {sims.urls['sonarr']}, api_key: {{file: {secret['sonarr']}}}}}",
        ]
    if "radarr" in installed:
        lines += [
            "  radarr:",
            f"    - {{name: radarr, url: {sims.urls['radarr']}, api_key: {{file: {secret['radarr']}}}}}",
            f"    - {{name: radarr4k, url: {sims.urls['radarr4k']}, api_key: {{file: {secret['radarr4k']}}}}}",
        ]
    if "overseerr" in installed:
        lines.append(f"  overseerr: {{url: {sims.urls['overseerr']}, api_key: {{file: {secret['overseerr']}}}}}")
    if "tautulli" in installed:
        lines.append(
            f"  tautulli: {{url: {sims.urls['tautulli']}, api_key: {{file: {secret['tautulli']}}}, server: home}}"
        )
    return lines or ["  {}"]


def copy_rules(target: Path, source: Path = REPO_RULES) -> list[Path]:
    """Copy the recipe files into ``target`` (replacing what a previous demo left); the demo rule if none."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    recipes = sorted(p for p in source.glob("*") if p.suffix in (".yaml", ".yml")) if source.is_dir() else []
    copied = [Path(shutil.copy2(p, target / p.name)) for p in recipes]
    if not copied:
        fallback = target / "demo-watched-movies.yaml"
        fallback.write_text(FALLBACK_RULE)
        copied.append(fallback)
    return copied


def write_demo(folder: str | Path, sims: Simulators, *, port: int, sync_schedule: str = "*/15 * * * *") -> DemoFiles:
    """Write ``config.yaml``, ``secrets/`` and ``rules/`` for ``sims`` into ``folder``."""
    root = Path(folder).resolve()
    secret_dir = root / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secret_dir, 0o700)
    secret = {name: _secret_file(secret_dir, name, sims.keys[name])[0] for name in SERVICES}
    admin_path, admin = _secret_file(secret_dir, "admin_token")
    viewer_path, viewer = _secret_file(secret_dir, "viewer_token")
    rules = copy_rules(root / "rules")
    integrations = "\n".join(_integration_sections(sims, secret))
    text = f"""\
# smartplexd demo config, written by `smartplexd demo` ({time.strftime("%Y-%m-%d %H:%M")}).
# Every service below is simulated on 127.0.0.1 by this same process; nothing real is touched.
# Secrets live in ./secrets (mode 0600) and are referenced as {{file: ...}}, as a real config should.
server:
  listen: "127.0.0.1:{port}"
  tokens:
    - {{name: admin, role: admin, token: {{file: {admin_path}}}}}
    - {{name: viewer, role: viewer, token: {{file: {viewer_path}}}}}
database: ./smartplexd.db
timezone: UTC
plex:
  servers:
    - name: home
      url: {sims.urls["plex"]}
      token: {{file: {secret["plex"]}}}
      libraries: [Movies, TV Shows]
      # Small pages, one at a time: the simulated Plex is slowed down so the live sync can be watched.
      sync: {{schedule: "{sync_schedule}", page_size: 100, pages_in_flight: 1}}
integrations:
{integrations}
# Simulated services only, so deletions may run at any hour; on a real server keep a window.
deletion: {{enabled: true, window: null, max_items_per_run: 10}}
rules: [./rules]
"""
    config_path = root / "config.yaml"
    config_path.write_text(text)
    return DemoFiles(config_path, f"http://127.0.0.1:{port}/", admin, viewer, rules)


def banner(files: DemoFiles, sims: Simulators) -> str:
    """What ``smartplexd demo`` prints: where everything is and how to talk to it."""
    u = sims.universe
    lines = [
        "smartplexd demo",
        f"  library     {len(u.movies):,} movies, {len(u.shows):,} shows ({u.plex_item_count:,} Plex items)",
        *(f"  {name:<11} {url}" for name, url in sims.urls.items()),
        f"  config      {files.config_path}",
        f"  rules       {', '.join(p.name for p in files.rules)}",
        f"  admin token {files.admin_token}",
        f"  viewer token {files.viewer_token}",
        "",
        f"Status page: {files.url}",
        f'Try: curl -H "Authorization: Bearer {files.admin_token}" -X POST {files.url}api/sync',
        f"     smartplexd -c {files.config_path} status",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Start the simulators, write the demo folder, print the banner and run the daemon until stopped."""
    from smartplexd.daemon import Daemon

    universe = generate(seed=options.seed, movies=options.movies, shows=options.shows)
    port = options.port or free_port()
    thread = SimulatorThread(universe, latency=options.latency)
    sims = thread.start()
    try:
        files = write_demo(options.folder, sims, port=port, sync_schedule=options.sync_schedule)
        print(banner(files, sims), file=out, flush=True)
        kick = asyncio.run_coroutine_threadsafe(first_sync(files), thread.loop)
        try:
            result = Daemon(str(files.config_path)).run()
        except KeyboardInterrupt:
            result = 0
        finally:
            kick.cancel()
    finally:
        thread.stop()
    return int(result or 0)


async def first_sync(files: DemoFiles, timeout: float = 60) -> int | None:
    """Once the daemon answers ``/healthz``, ask it for a sync (``POST /api/sync``) so the demo starts live;
    when that sync and its facts refresh are done, evaluate every rule once (:func:`evaluate_rules_once`).

    Returns the sync answer's status (202 started, 409 the daemon is already syncing), or None if the daemon
    never came up within ``timeout``.
    """
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(files.url + "healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        else:
            return None
        headers = {"Authorization": f"Bearer {files.admin_token}"}
        # Listen before asking, from the first event on, so the end of the refresh cannot be missed.
        async with http.get(files.url + "api/events", headers={"Last-Event-ID": "0"}) as events:
            async with http.post(files.url + "api/sync", headers=headers, json={}) as resp:
                status = resp.status
            if status == 202:
                async for line in events.content:
                    if line.startswith(b"event: enrich.finished"):
                        break
        if status == 202:
            await asyncio.to_thread(evaluate_rules_once, files)
        return status


def evaluate_rules_once(files: DemoFiles) -> int:
    """Evaluate every demo rule now, as the scheduler would at each rule's own time, so the status page has
    items "leaving soon" (with reasons and due dates) right away. Returns how many entered a grace period.
    Nothing is deleted: deletions need ``smartplexd apply`` with the typed word."""
    from smartplexd.config import load_config
    from smartplexd.daemon import load_rules
    from smartplexd.rules.planner import make_plan
    from smartplexd.store import open_store

    config = load_config(files.config_path)
    with open_store(config.database_path) as store:
        plan = make_plan(config, store, load_rules(config), actor="demo", start_grace=True)
    entered = sum(1 for e in plan.items if e.status == "leaving_soon")
    log.info("demo: every rule evaluated once (plan %s): %d item(s) now leaving soon", plan.id, entered)
    return entered
