"""A small, believable smartplexd database for the status tests: what a daemon would have written after a
few days — two Plex servers (one with a revoked token), health checks with disk space, a finished sync, a
plan whose selected items are in their grace period, a finished and a partial deletion with a step waiting
for a retry, scheduled jobs and some assistant spend.

Tests import :func:`write_config` and :func:`seed`; the secrets below must never appear on the page.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from smartplexd.config import AppConfig, load_config
from smartplexd.store import Store

DAY = 86_400.0
SECRETS = {
    "plex_home": "plex-home-token-5f2d9a7c",
    "plex_office": "plex-office-token-88aa11",
    "admin": "admin-token-0123456789abcdef",
    "viewer": "viewer-token-fedcba9876543210",
    "webhook": "webhook-secret-7c7c7c7c",
    "notify": "mailto://user:hunter2-notify@example.com",
}


def write_config(folder: Path, plex_url: str = "http://127.0.0.1:32400", heartbeat: float = 30.0) -> AppConfig:
    """A config with two Plex servers, tokens, a webhook and a notification URL (all secrets from files)."""
    secrets = folder / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for name, value in SECRETS.items():
        (secrets / name).write_text(value)
    text = f"""\
        server:
          listen: 127.0.0.1:8765
          sse_heartbeat: {heartbeat}
          tokens:
            - {{name: admin, role: admin, token: {{file: {secrets}/admin}}}}
            - {{name: viewer, role: viewer, token: {{file: {secrets}/viewer}}}}
        database: ./smartplexd.db
        timezone: Europe/Berlin
        plex:
          servers:
            - {{name: home, url: "{plex_url}", token: {{file: {secrets}/plex_home}},
               sync: {{page_size: 50, pages_in_flight: 1}}}}
            - {{name: office, url: "http://127.0.0.1:32401", token: {{file: {secrets}/plex_office}}}}
        webhooks:
          generic: {{auth: hmac, secret: {{file: {secrets}/webhook}}}}
        deletion: {{enabled: true, window: null}}
        rules: []
        notifications:
          - {{url: {{file: {secrets}/notify}}}}
        assistant: {{api_key: {{file: {secrets}/admin}}, monthly_budget_usd: 5}}
        """
    path = folder / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def _insert(store: Store, table: str, **row: Any) -> int:
    row = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
    cols = ", ".join(row)
    cur = store.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return int(cur.lastrowid)


def _item(store: Store, key: str, title: str, **extra: Any) -> int:
    fields: dict[str, Any] = {"server": "home", "section_id": "1", "section_title": "Movies", "type": "movie"}
    fields.update(extra)
    return _insert(store, "media_items", rating_key=key, title=title, **fields)


def seed(store: Store, now: float) -> dict[str, Any]:
    """Fill every table the status page reads; returns the ids a test wants to look up."""
    ids: dict[str, Any] = {}
    _insert(
        store,
        "integration_health",
        name="plex:home",
        plugin="plex",
        status="ok",
        version="1.41.3",
        latency_ms=12.5,
        checked_at=now - 60,
    )
    _insert(
        store,
        "integration_health",
        name="plex:office",
        plugin="plex",
        status="unauthorized",
        checked_at=now - 60,
        error="401 Unauthorized: the token for office was rejected",
    )
    _insert(
        store,
        "integration_health",
        name="radarr",
        plugin="radarr",
        status="ok",
        version="5.14.0",
        latency_ms=8.0,
        checked_at=now - 60,
        details={"disk": [{"path": "/data/movies", "freeSpace": 1_200 * 10**9, "totalSpace": 8_000 * 10**9}]},
    )
    _insert(
        store,
        "integration_health",
        name="sonarr",
        plugin="sonarr",
        status="down",
        checked_at=now - 60,
        error="connection refused",
        details={"disk": [{"path": "/data/tv", "free_bytes": 300 * 10**9, "total_bytes": 4_000 * 10**9}]},
    )

    _insert(
        store,
        "sync_events",
        server="home",
        kind="full",
        started_at=now - 3 * 3600,
        finished_at=now - 3 * 3600 + 42,
        duration_ms=42_000,
        status="ok",
        items_seen=3680,
        added=3680,
    )

    movie_a = _item(store, "90001", "Silent Harbor 7", year=1999, size_bytes=14 * 10**9)
    movie_b = _item(store, "90002", "Crimson Orbit 12", year=2011, size_bytes=8 * 10**9)
    show = _item(store, "93000", "Velvet Machine Show", type="show", section_id="2", section_title="TV Shows")
    episode = _item(
        store,
        "93003",
        "Episode 3",
        type="episode",
        section_id="2",
        section_title="TV Shows",
        grandparent_rating_key="93000",
        parent_rating_key="93001",
        season_index=2,
        episode_index=3,
        size_bytes=2 * 10**9,
    )
    gone = _item(store, "90003", "Paper Moon 3", year=1987, size_bytes=22 * 10**9, deleted_at=now - DAY)
    failing = _item(store, "90004", "Glass Kingdom 4", year=2003, size_bytes=5 * 10**9)
    ids.update(movie_a=movie_a, movie_b=movie_b, show=show, episode=episode)

    plan = _insert(store, "plans", created_at=now - 2 * DAY, created_by="scheduler", status="applied", total_items=3)
    reasons_a = [
        {"fact": "plex.view_count", "op": ">=", "value": 1, "actual": 3},
        {"fact": "plex.last_viewed_at", "older_than": "90d", "actual": "2023-01-04"},
    ]
    for item, reasons in (
        (movie_a, reasons_a),
        (movie_b, ["Never watched, added 3 years ago"]),
        (episode, [{"fact": "tautulli.play_count", "op": "=", "value": 0, "actual": 0}]),
    ):
        _insert(
            store,
            "plan_items",
            plan_id=plan,
            item_id=item,
            rule="watched-movies-90d",
            action="delete",
            status="selected",
            reasons=reasons,
            bytes=1,
        )
        _insert(
            store,
            "leaving_soon",
            item_id=item,
            rule="watched-movies-90d",
            collection="Leaving Soon",
            plan_id=plan,
            added_at=now - 2 * DAY,
            due_at=now + (5 if item != movie_b else 2) * DAY,
            status="pending",
            updated_at=now - 2 * DAY,
        )
    ids["due_a"] = now + 5 * DAY
    ids["due_b"] = now + 2 * DAY

    done = _insert(
        store,
        "deletion_events",
        plan_id=plan,
        item_id=gone,
        server="home",
        rating_key="90003",
        title="Paper Moon 3 (1987)",
        rule="watched-movies-90d",
        action="delete",
        status="done",
        actor="scheduler",
        created_at=now - DAY - 30,
        updated_at=now - DAY,
        finished_at=now - DAY,
        bytes_freed=22 * 10**9,
    )
    for seq, plugin, action in (
        (1, "overseerr", "delete request"),
        (2, "radarr", "delete movie and files"),
        (3, "plex", "delete item"),
    ):
        _insert(
            store,
            "deletion_steps",
            deletion_id=done,
            seq=seq,
            plugin=plugin,
            target="x",
            action=action,
            status="done",
            attempts=1,
            finished_at=now - DAY,
        )
    partial = _insert(
        store,
        "deletion_events",
        plan_id=plan,
        item_id=failing,
        server="home",
        rating_key="90004",
        title="Glass Kingdom 4 (2003)",
        rule="watched-movies-90d",
        action="delete",
        status="partial",
        actor="scheduler",
        created_at=now - 3600,
        updated_at=now - 1800,
    )
    _insert(
        store,
        "deletion_steps",
        deletion_id=partial,
        seq=1,
        plugin="overseerr",
        target="x",
        action="delete request",
        status="done",
        attempts=1,
    )
    _insert(
        store,
        "deletion_steps",
        deletion_id=partial,
        seq=2,
        plugin="radarr",
        target="x",
        action="delete movie and files",
        status="failed",
        attempts=3,
        next_attempt_at=now + 600,
        last_error="radarr answered 503 Service Unavailable",
    )
    _insert(
        store,
        "deletion_steps",
        deletion_id=partial,
        seq=3,
        plugin="plex",
        target="x",
        action="delete item",
        status="pending",
    )
    ids.update(done=done, partial=partial, retry_at=now + 600)

    _insert(
        store,
        "job_runs",
        job_id="sync:home",
        description="Plex sync home",
        next_run_at=now + 3 * 3600,
        last_run_at=now - 3 * 3600,
        last_status="ok",
    )
    _insert(
        store,
        "job_runs",
        job_id="rule:watched-movies-90d",
        description="rule watched-movies-90d",
        next_run_at=now + 7200,
        last_run_at=now - DAY,
        last_status="ok",
    )
    _insert(
        store,
        "ai_usage",
        ts=now - 60,
        model="gpt-4o-mini",
        prompt_tokens=1200,
        completion_tokens=300,
        cost_usd=0.42,
        status="ok",
    )
    return ids
