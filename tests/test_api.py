"""Admin API stories against a real daemon process: roles, CORS, the sync rate limit, audit of every write.

The daemon runs in front of a simulated Plex; a full sync through ``POST /api/sync`` fills the database
the other stories read.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from daemon_harness import (
    ADMIN,
    ADMIN2,
    ALLOWED_ORIGIN,
    PLEX_TOKEN,
    REQUESTER,
    VIEWER,
    DaemonProcess,
    auth,
    start_daemon,
)

from smartplexd import audit
from smartplexd.demo import plex
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.store import locks
from smartplexd.store.db import Store

RATE_LIMIT = 4
WRITES = [
    ("POST", "/api/sync", {}),
    ("POST", "/api/plans", {}),
    ("POST", "/api/plans/1/apply", {"confirm": "DELETE"}),
    ("POST", "/api/deletions/1/retry", {}),
    ("POST", "/api/ask", {"question": "what can I delete?"}),
]


@pytest.fixture(scope="module")
def universe():
    return generate(seed=11, movies=25, shows=2, seasons_per_show=2, episodes_per_season=2)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, universe) -> Iterator[DaemonProcess]:
    with ThreadedServer(plex.create_app(universe, token=PLEX_TOKEN)) as srv:
        d = start_daemon(tmp_path_factory.mktemp("api"), srv.url, rate_limit=RATE_LIMIT)
        try:
            yield d
        finally:
            assert d.stop() == 0


@pytest.fixture(scope="module")
def synced(daemon) -> int:
    """One full sync through the API (admin2, so the rate-limit story starts from zero for admin)."""
    r = httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN2), json={"server": "home"})
    assert r.status_code == 202, r.text
    sync_id = r.json()["sync_id"]
    assert isinstance(sync_id, int)
    daemon.wait_for("SELECT id FROM sync_events WHERE id = ? AND status = 'ok'", (sync_id,), timeout=60)
    return sync_id


def test_sync_starts_in_the_background_and_is_audited(daemon, synced, universe):
    row = daemon.query("SELECT server, kind, items_seen FROM sync_events WHERE id = ?", (synced,))[0]
    assert row["server"] == "home" and row["items_seen"] == universe.plex_item_count
    audits = daemon.query("SELECT actor, target FROM audit_log WHERE action = 'sync.requested'")
    assert {"actor": "api:admin2", "target": "home"} in audits
    assert not daemon.query("SELECT name FROM locks"), "the finished sync released its lock"


def test_no_token_or_a_wrong_token_is_401(daemon):
    for headers in ({}, auth("not-a-configured-token-123"), {"Authorization": f"Basic {ADMIN}"}):
        r = httpx.get(f"{daemon.url}/api/deletions", headers=headers)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "bearer token" in r.json()["error"]


def test_viewers_read_but_cannot_write(daemon):
    for path in ("/api/deletions", "/api/integrations/health", "/api/deletions?status=failed&limit=5"):
        assert httpx.get(f"{daemon.url}{path}", headers=auth(VIEWER)).status_code == 200
    before = daemon.query("SELECT COUNT(*) AS n FROM audit_log")[0]["n"]
    for method, path, body in [*WRITES, ("POST", "/api/requests", {"rating_key": "1"})]:
        r = httpx.request(method, f"{daemon.url}{path}", headers=auth(VIEWER), json=body)
        assert r.status_code == 403, (path, r.status_code, r.text)
        assert "role viewer" in r.json()["error"]
    assert daemon.query("SELECT COUNT(*) AS n FROM audit_log")[0]["n"] == before
    assert not daemon.query("SELECT id FROM sync_events WHERE id > 1")


def test_requesters_file_deletion_requests_but_nothing_else(daemon, synced, universe):
    movie = universe.movies[3]
    body = {"rating_key": str(movie.rating_key), "reason": "nobody likes it"}
    r = httpx.post(f"{daemon.url}/api/requests", headers=auth(REQUESTER), json=body)
    assert r.status_code == 201, r.text
    filed = r.json()
    assert filed["requested_by"] == "api:requester" and filed["server"] == "home" and filed["status"] == "open"
    again = httpx.post(f"{daemon.url}/api/requests", headers=auth(REQUESTER), json=body)
    assert again.status_code == 200 and again.json()["id"] == filed["id"]
    assert daemon.query("SELECT actor FROM audit_log WHERE action = 'request.filed'") == [{"actor": "api:requester"}]
    missing = httpx.post(f"{daemon.url}/api/requests", headers=auth(REQUESTER), json={"rating_key": "777777"})
    assert missing.status_code == 404
    bad = httpx.post(f"{daemon.url}/api/requests", headers=auth(REQUESTER), json={"server": "home"})
    assert bad.status_code == 400 and "rating_key" in bad.json()["error"]
    for method, path, body in WRITES:
        assert httpx.request(method, f"{daemon.url}{path}", headers=auth(REQUESTER), json=body).status_code == 403


def test_admin_makes_a_plan_and_apply_needs_the_typed_word(daemon, synced):
    r = httpx.post(f"{daemon.url}/api/plans", headers=auth(ADMIN), json={})
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["status"] == "draft" and plan["created_by"] == "api:admin"
    got = httpx.get(f"{daemon.url}/api/plans/{plan['id']}", headers=auth(VIEWER))
    assert got.status_code == 200 and got.json()["id"] == plan["id"]
    assert httpx.get(f"{daemon.url}/api/plans/999999", headers=auth(VIEWER)).status_code == 404
    assert httpx.get(f"{daemon.url}/api/plans/abc", headers=auth(VIEWER)).status_code == 400

    url = f"{daemon.url}/api/plans/{plan['id']}/apply"
    for body in (None, {}, {"confirm": "delete"}, {"confirm": "yes"}):
        r = httpx.post(url, headers=auth(ADMIN), json=body)
        assert r.status_code == 400 and "DELETE" in r.json()["error"]
    # deletion.enabled is false: the executor refuses, nothing is deleted, the refusal is audited.
    r = httpx.post(url, headers=auth(ADMIN), json={"confirm": "DELETE"})
    assert r.status_code == 403, r.text
    assert not daemon.query("SELECT id FROM deletion_events")
    assert daemon.query("SELECT actor FROM audit_log WHERE action = 'api.apply.refused'") == [{"actor": "api:admin"}]
    gone = httpx.post(f"{daemon.url}/api/plans/999999/apply", headers=auth(ADMIN), json={"confirm": "DELETE"})
    assert gone.status_code == 404
    unknown_rule = httpx.post(f"{daemon.url}/api/plans", headers=auth(ADMIN), json={"rules": ["nope"]})
    assert unknown_rule.status_code == 400 and "nope" in unknown_rule.json()["error"]


def test_retry_of_an_unknown_deletion_is_404_and_ask_without_assistant_409(daemon):
    assert httpx.post(f"{daemon.url}/api/deletions/424242/retry", headers=auth(ADMIN)).status_code == 404
    r = httpx.post(f"{daemon.url}/api/ask", headers=auth(ADMIN), json={"question": "what can go?"})
    assert r.status_code == 409 and "not configured" in r.json()["error"]
    assert httpx.post(f"{daemon.url}/api/ask", headers=auth(ADMIN), json={"question": ""}).status_code == 400
    assert httpx.post(f"{daemon.url}/api/ask", headers=auth(ADMIN), content=b"{oops").status_code == 400


def test_sync_while_one_runs_is_409_and_the_rate_limit_holds(daemon, synced):
    """A sync holds the server's lock (taken here as another process would): 409 with the running sync's
    id; after RATE_LIMIT requests in the hour the token gets 429 with Retry-After, another token does not."""
    store = Store(daemon.db_path)
    lock = locks.acquire(store, "sync:home", owner="another-process", details={"sync_id": 777})
    try:
        codes = []
        for _ in range(RATE_LIMIT):
            r = httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN))
            codes.append(r.status_code)
            assert r.status_code == 409 and r.json()["sync_id"] == 777 and "already running" in r.json()["error"]
        r = httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN))
        assert r.status_code == 429, r.text
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        assert "rate limit" in r.json()["error"]
        # Another token has its own budget (admin2 used one request for the initial sync).
        assert httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN2)).status_code == 409
    finally:
        lock.release()
        store.close()
    assert httpx.post(f"{daemon.url}/api/sync", headers=auth(ADMIN)).status_code == 429
    refused = daemon.query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'sync.refused' AND actor = 'api:admin'")
    assert refused[0]["n"] == RATE_LIMIT


def test_cors_only_for_configured_origins(daemon):
    ok = httpx.get(f"{daemon.url}/api/deletions", headers={**auth(VIEWER), "Origin": ALLOWED_ORIGIN})
    assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    other = httpx.get(f"{daemon.url}/api/deletions", headers={**auth(VIEWER), "Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    good = httpx.options(f"{daemon.url}/api/sync", headers={**preflight, "Origin": ALLOWED_ORIGIN})
    assert good.status_code == 204
    assert good.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Authorization" in good.headers["Access-Control-Allow-Headers"]
    bad = httpx.options(f"{daemon.url}/api/sync", headers={**preflight, "Origin": "https://evil.example"})
    assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers
    # Error answers to an allowed origin carry the header too (so the browser shows the message).
    denied = httpx.post(f"{daemon.url}/api/sync", headers={**auth(VIEWER), "Origin": ALLOWED_ORIGIN})
    assert denied.status_code == 403 and denied.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_bad_query_parameters_are_400_and_every_answer_has_a_request_id(daemon):
    r = httpx.get(f"{daemon.url}/api/deletions?status=bogus", headers=auth(VIEWER))
    assert r.status_code == 400 and "status must be one of" in r.json()["error"]
    assert r.headers["X-Request-Id"]
    r = httpx.get(f"{daemon.url}/api/deletions?limit=-3", headers=auth(VIEWER))
    assert r.status_code == 400
    r = httpx.get(f"{daemon.url}/api/deletions?limit=5000", headers=auth(VIEWER))
    assert r.status_code == 200


def test_integration_health_lists_the_stored_checks(daemon, synced):
    r = httpx.get(f"{daemon.url}/api/integrations/health", headers=auth(VIEWER))
    names = {i["name"]: i for i in r.json()["integrations"]}
    assert names["plex:home"]["status"] == "ok"  # the sync recorded Plex as healthy
    assert isinstance(names["plex:home"]["details"], dict | list)


def test_healthz_and_metrics(daemon, synced):
    assert httpx.get(f"{daemon.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{daemon.url}/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'smartplexd_sync_items{server="home",kind="full"}' in text
    assert 'smartplexd_syncs_total{server="home",status="ok"}' in text
    assert 'smartplexd_integration_up{name="plex:home",plugin="plex"} 1' in text
    assert "smartplexd_retry_queue_depth 0" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("smartplexd_"), line
    seen_types = [line for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(seen_types) == len({line.split()[2] for line in seen_types})


def test_every_write_is_audited_with_the_token_name(daemon, synced):
    actors = {r["actor"] for r in daemon.query("SELECT actor FROM audit_log WHERE actor LIKE 'api:%'")}
    assert actors >= {"api:admin", "api:admin2", "api:requester"}
    with Store(daemon.db_path) as store:
        assert audit.verify(store).ok


def test_an_unexpected_error_is_a_logged_500_with_a_request_id_never_a_traceback(caplog):
    """The last guard (handlers answer 4xx themselves): the request-id middleware of the daemon's app."""
    from aiohttp import web

    from smartplexd.web.app import request_ids

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = web.Application(middlewares=[request_ids])
    app.router.add_get("/broken", broken)
    with ThreadedServer(app) as srv:
        r = httpx.get(f"{srv.url}/broken", headers={"X-Request-Id": "abc123"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the daemon log has the details", "request_id": "abc123"}
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert any("abc123" in rec.getMessage() for rec in caplog.records)
