"""The daemon process: graceful stop, reload on SIGHUP, work left over from a previous run, retention.

Each story starts its own ``python -m smartplexd run`` against a simulated Plex on 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from daemon_harness import ADMIN, PLEX_TOKEN, REPO, VIEWER, auth, config_text, free_port, launch, start_daemon

from smartplexd import audit
from smartplexd.config import load_config
from smartplexd.daemon import cleanup_retention
from smartplexd.demo import plex
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.store import open_store


@pytest.fixture(scope="module")
def universe():
    return generate(seed=3, movies=40, shows=3, seasons_per_show=2, episodes_per_season=3)


@pytest.fixture
def plex_server(universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(plex.create_app(universe, token=PLEX_TOKEN)) as srv:
        yield srv


def test_sigterm_during_a_sync_finishes_it_releases_locks_and_exits_0(tmp_path, plex_server):
    httpx.post(f"{plex_server.url}/_sim/faults", json={"latency": 0.4})
    daemon = start_daemon(tmp_path, plex_server.url)
    r = httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN))
    assert r.status_code == 202, r.text
    sync_id = r.json()["sync_id"]
    assert daemon.query("SELECT name FROM locks") == [{"name": "sync:home"}]
    t0 = time.monotonic()
    daemon.signal(signal.SIGTERM)
    # No new connections once stopping...
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{daemon.url}/healthz", timeout=2)
    assert daemon.proc.wait(40) == 0
    assert time.monotonic() - t0 < 40
    # ...but the running sync was allowed to end, and nothing is left locked.
    assert daemon.query("SELECT name FROM locks") == []
    row = daemon.query("SELECT status FROM sync_events WHERE id = ?", (sync_id,))[0]
    assert row["status"] in ("ok", "error")
    actions = [r["action"] for r in daemon.query("SELECT action FROM audit_log ORDER BY seq")]
    assert actions[0] == "daemon.started" and actions[-1] == "daemon.stopped"
    assert "stopping: no new connections" in daemon.log_text()


def test_the_scheduler_runs_the_jobs_and_sigint_stops_gracefully(tmp_path, plex_server):
    daemon = start_daemon(tmp_path, plex_server.url)
    jobs = daemon.wait_for("SELECT job_id, next_run_at FROM job_runs ORDER BY job_id")
    assert {j["job_id"] for j in jobs} == {"health", "retention", "retries", "sync:home"}
    assert all(j["next_run_at"] > time.time() for j in jobs)
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(30) == 0
    assert "Traceback" not in daemon.log_text()


def test_sighup_with_a_broken_config_keeps_the_old_one(tmp_path, plex_server):
    daemon = start_daemon(tmp_path, plex_server.url)
    try:
        good = daemon.config_path.read_text()
        # An unknown key on line 4 (a typo), and a token too short for the rules.
        broken = good.replace("  sync_rate_limit_per_hour:", "  sync_rate_limt_per_hour:")
        daemon.config_path.write_text(broken)
        daemon.signal(signal.SIGHUP)
        log = daemon.wait_log("reload rejected")
        assert "config.yaml:4:" in log and "sync_rate_limt_per_hour" in log
        assert httpx.get(f"{daemon.url}/api/deletions", headers=auth(VIEWER)).status_code == 200
        daemon.wait_for("SELECT seq FROM audit_log WHERE action = 'config.reload_rejected'")

        # A broken rule file is rejected the same way.
        daemon.config_path.write_text(good)
        (daemon.folder / "rules" / "bad.yaml").write_text(
            "name: oops\nwhen: {fact: plex.no_such_fact, op: '>', value: 1}\n"
        )
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while daemon.log_text().count("reload rejected") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "bad.yaml:2" in daemon.log_text()
        (daemon.folder / "rules" / "bad.yaml").unlink()

        # A valid new config is taken: a new token works, the old viewer token is gone.
        new_token = "fresh-viewer-token-5544332211"
        daemon.config_path.write_text(good.replace(VIEWER, new_token))
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("configuration reloaded")
        assert httpx.get(f"{daemon.url}/api/deletions", headers=auth(new_token)).status_code == 200
        assert httpx.get(f"{daemon.url}/api/deletions", headers=auth(VIEWER)).status_code == 401
        daemon.wait_for("SELECT seq FROM audit_log WHERE action = 'config.reloaded'")
        assert new_token not in daemon.log_text()
    finally:
        assert daemon.stop() == 0


def test_webhooks_stored_by_a_previous_run_are_processed_at_start(tmp_path, plex_server, universe):
    movie = universe.movies[5]
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "config.yaml").write_text(config_text(port, plex_server.url))
    config = load_config(tmp_path / "config.yaml")
    payload = {"event": "media.scrobble", "Metadata": {"ratingKey": str(movie.rating_key), "type": "movie"}}
    with open_store(config.database_path) as store:
        store.execute(
            "INSERT INTO webhook_events (source, event_id, received_at, event_type, payload) VALUES (?, ?, ?, ?, ?)",
            ("plex", "left-over-1", time.time() - 60, "media.scrobble", json.dumps(payload)),
        )
    daemon = launch(tmp_path, port)
    try:
        done = daemon.wait_for(
            "SELECT status FROM webhook_events WHERE event_id = 'left-over-1' AND status != 'received'"
        )
        assert done == [{"status": "processed"}]
        assert daemon.query("SELECT title FROM media_items WHERE rating_key = ?", (str(movie.rating_key),)) == [
            {"title": movie.title}
        ]
    finally:
        assert daemon.stop() == 0


def test_an_invalid_config_at_start_exits_2_with_file_and_line(tmp_path):
    (tmp_path / "config.yaml").write_text("server:\n  listen: nowhere\n")
    result = subprocess.run(
        [sys.executable, "-m", "smartplexd", "-c", str(tmp_path / "config.yaml"), "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "config.yaml:2:" in result.stderr and "listen" in result.stderr


def test_an_invalid_rule_at_start_exits_2_with_file_and_line(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "typo.yaml").write_text("name: typo\nwhen: {fact: plex.view_cnt, op: '>', value: 1}\n")
    (tmp_path / "config.yaml").write_text(config_text(free_port(), "http://127.0.0.1:9"))
    result = subprocess.run(
        [sys.executable, "-m", "smartplexd", "-c", str(tmp_path / "config.yaml"), "run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "invalid rules" in result.stderr and "typo.yaml:2" in result.stderr
    assert "Traceback" not in result.stderr


def test_retention_deletes_old_rows_but_never_history(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "database: ./db.sqlite\nrules: []\nretention: {webhook_events: 1d, plans: 2d}\n"
    )
    config = load_config(tmp_path / "config.yaml")
    now = 1_800_000_000.0
    day = 86_400
    with open_store(config.database_path) as store:
        insert = "INSERT INTO webhook_events (source, event_id, received_at, status, payload) VALUES (?, ?, ?, ?, '{}')"
        store.execute(insert, ("plex", "old-done", now - 2 * day, "processed"))
        store.execute(insert, ("plex", "old-waiting", now - 2 * day, "retry"))
        store.execute(insert, ("plex", "new-done", now - 3600, "processed"))
        store.execute(
            "INSERT INTO sync_events (server, kind, started_at, finished_at, status) "
            "VALUES ('home', 'full', ?, ?, 'ok')",
            (now - 100 * day, now - 100 * day + 5),
        )
        store.execute(
            "INSERT INTO sync_events (server, kind, started_at, status) VALUES ('home', 'full', ?, 'running')",
            (now - 100 * day,),
        )
        store.execute("INSERT INTO events (ts, type) VALUES (?, 'sync.progress')", (now - 8 * day,))
        for plan_id in (1, 2):
            store.execute(
                "INSERT INTO plans (id, created_at, created_by) VALUES (?, ?, 'scheduler')", (plan_id, now - 5 * day)
            )
        store.execute(
            "INSERT INTO media_items (id, server, section_id, section_title, rating_key, type, title) "
            "VALUES (1, 'home', '1', 'Movies', '10', 'movie', 'Kept')"
        )
        store.execute(
            "INSERT INTO plan_items (plan_id, item_id, rule, action, status) VALUES (1, 1, 'r', 'delete', 'x')"
        )
        store.execute(
            "INSERT INTO plan_items (plan_id, item_id, rule, action, status) VALUES (2, 1, 'r', 'delete', 'x')"
        )
        store.execute(
            "INSERT INTO deletion_events (plan_id, item_id, server, rating_key, title, action, status, actor, "
            "created_at, updated_at) VALUES (2, 1, 'home', '10', 'Kept', 'delete', 'done', 'api:admin', ?, ?)",
            (now - 5 * day, now - 5 * day),
        )
        audit.record(store, "test", "something", None, {})

        deleted = cleanup_retention(config, store, now=now)

        assert deleted == {"webhook_events": 1, "sync_events": 1, "events": 1, "plans": 1}
        left = [r["event_id"] for r in store.query("SELECT event_id FROM webhook_events ORDER BY id")]
        assert left == ["old-waiting", "new-done"]  # unprocessed webhooks are never dropped
        assert [r["id"] for r in store.query("SELECT id FROM plans")] == [2]  # a deletion refers to plan 2
        assert store.query("SELECT COUNT(*) AS n FROM deletion_events")[0]["n"] == 1
        assert audit.verify(store).ok and audit.verify(store).rows == 1
