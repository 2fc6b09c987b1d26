"""Webhook stories against a real daemon process: every sender, good and bad, and nothing lost.

One daemon (``python -m smartplexd run``) serves the whole module, in front of a simulated Plex. Payloads
are the contract fixtures in tests/contracts; signatures are made with the ``standardwebhooks``
package, so our verifier is checked against the reference implementation, not against itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from daemon_harness import (
    CONTRACTS,
    HMAC_SECRET,
    HMAC_SECRET_OLD,
    OVERSEERR_SECRET,
    PLEX_HOOK,
    PLEX_TOKEN,
    RADARR_PASSWORD,
    SONARR_PASSWORD,
    TAUTULLI_SECRET,
    DaemonProcess,
    start_daemon,
)
from standardwebhooks import Webhook

from smartplexd.demo import plex
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import generate
from smartplexd.store import locks
from smartplexd.store.db import Store
from smartplexd.web.auth import WebhookAuthError, hmac_key, sign, verify_standard_webhook

MAX_BYTES = 1_048_576
NO_PAYLOAD = b'--b\r\nContent-Disposition: form-data; name="thumb"\r\n\r\nx\r\n--b--\r\n'


@pytest.fixture(scope="module")
def universe():
    return generate(seed=7, movies=30, shows=3, seasons_per_show=2, episodes_per_season=3)


@pytest.fixture(scope="module")
def plex_server(universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(plex.create_app(universe, token=PLEX_TOKEN)) as srv:
        yield srv


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, plex_server) -> Iterator[DaemonProcess]:
    d = start_daemon(tmp_path_factory.mktemp("webhooks"), plex_server.url)
    try:
        yield d
    finally:
        assert d.stop() == 0


def rows(daemon: DaemonProcess, source: str) -> list[dict]:
    return daemon.query("SELECT * FROM webhook_events WHERE source = ? ORDER BY id", (source,))


def rejected_audits(daemon: DaemonProcess, source: str) -> int:
    return len(
        daemon.query(
            "SELECT seq FROM audit_log WHERE actor = ? AND action = 'webhook.rejected'", (f"webhook:{source}",)
        )
    )


def fixture(path: str) -> bytes:
    return (CONTRACTS / path).read_bytes()


def signed(body: bytes, msg_id: str | None = None, secret: str = HMAC_SECRET, at: datetime | None = None) -> dict:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def unique_json(kind: str = "test.event") -> bytes:
    return json.dumps({"type": kind, "data": {"n": uuid.uuid4().hex}}).encode()


def plex_multipart(payload: dict | bytes, boundary: str = "------------------------4d2b1c3e5f6a7b8c") -> tuple:
    """The multipart body Plex sends (contract webhook_multipart_example.http), with a small JPEG part."""
    text = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="payload"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode()
        + text
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="thumb"; filename="image.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + b"\xff\xd8\xff\xe0fakejpeg\xff\xd9"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# --- Standard Webhooks verification --------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector():
    vector = json.loads(fixture("standard-webhooks/test_vector.json"))
    key = hmac_key(vector["secret"])
    body = vector["payload"].encode()
    assert sign(key, vector["msg_id"], vector["timestamp"], body) == vector["expected_signature"]
    # The reference implementation agrees on the same vector.
    at = datetime.fromtimestamp(vector["timestamp"], UTC)
    assert Webhook(vector["secret"]).sign(vector["msg_id"], at, vector["payload"]) == vector["expected_signature"]
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": "v1,bm90LXRoaXMtb25l " + vector["expected_signature"],  # rotation: any v1 may match
    }
    assert verify_standard_webhook(body, headers, [key], now=vector["timestamp"] + 299) == vector["msg_id"]
    with pytest.raises(WebhookAuthError, match="too old"):
        verify_standard_webhook(body, headers, [key], now=vector["timestamp"] + 301)
    with pytest.raises(WebhookAuthError, match="too new"):
        verify_standard_webhook(body, headers, [key], now=vector["timestamp"] - 301)
    with pytest.raises(WebhookAuthError, match="no matching signature"):
        verify_standard_webhook(body + b" ", headers, [key], now=vector["timestamp"])


# --- hmac (Standard Webhooks) --------------------------------------------------------------------------


def test_signed_webhook_is_stored_before_202_and_a_resend_is_a_duplicate(daemon):
    body = unique_json()
    headers = signed(body)
    r = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "accepted", "event_id": headers["webhook-id"]}
    # Stored before the answer: the row is there the moment the 202 arrived.
    stored = daemon.query("SELECT payload FROM webhook_events WHERE event_id = ?", (headers["webhook-id"],))
    assert [json.loads(r["payload"]) for r in stored] == [json.loads(body)]

    # The sender retries the same message (same id, new timestamp and signature): 200 and ignored.
    again = signed(body, msg_id=headers["webhook-id"])
    r2 = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=again)
    assert r2.status_code == 200 and r2.json()["status"] == "duplicate"
    assert len(daemon.query("SELECT id FROM webhook_events WHERE event_id = ?", (headers["webhook-id"],))) == 1


def test_a_rotated_out_secret_still_verifies(daemon):
    body = unique_json()
    r = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=signed(body, secret=HMAC_SECRET_OLD))
    assert r.status_code == 202


@pytest.mark.parametrize(
    "case",
    ["unsigned", "forged", "other secret", "tampered body", "stale (replayed after 5 min)", "from the future"],
)
def test_bad_signatures_are_401_audited_and_not_stored(daemon, case):
    body = unique_json()
    now = datetime.now(UTC)
    headers = signed(body)
    if case == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif case == "forged":
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    elif case == "other secret":
        headers = signed(body, secret="whsec_" + base64.b64encode(b"another-secret-entirely!").decode())
    elif case == "tampered body":
        body = body.replace(b"test.event", b"test.evil!")
    elif case == "stale (replayed after 5 min)":
        headers = signed(body, at=datetime.fromtimestamp(now.timestamp() - 301, UTC))
    elif case == "from the future":
        headers = signed(body, at=datetime.fromtimestamp(now.timestamp() + 400, UTC))
    before_rows, before_audit = len(rows(daemon, "generic")), rejected_audits(daemon, "generic")
    r = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert "authentication failed" in r.json()["error"]
    assert len(rows(daemon, "generic")) == before_rows
    assert rejected_audits(daemon, "generic") == before_audit + 1


def test_a_captured_request_replayed_verbatim_is_not_applied_twice(daemon):
    body = unique_json()
    headers = signed(body)
    first = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=headers)
    replay = httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=headers)
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json()["status"] == "duplicate"
    stored = daemon.query("SELECT attempts FROM webhook_events WHERE event_id = ?", (headers["webhook-id"],))
    assert len(stored) == 1


# --- Plex (url_token, multipart) -----------------------------------------------------------------------


def test_plex_multipart_with_url_token_is_parsed_and_the_token_never_logged(daemon, universe):
    movie = universe.movies[0]
    payload = json.loads(fixture("plex/webhook_media_play.json"))
    payload["Metadata"]["ratingKey"] = str(movie.rating_key)
    payload["Server"]["title"] = "home"
    body, headers = plex_multipart(payload)
    r = httpx.post(f"{daemon.url}/hooks/plex?token={PLEX_HOOK}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    event_id = r.json()["event_id"]
    # Only the JSON part is stored, and the event id is its hash (the boundary changes per request).
    stored = daemon.query("SELECT payload, event_type FROM webhook_events WHERE event_id = ?", (event_id,))
    assert json.loads(stored[0]["payload"]) == payload and stored[0]["event_type"] == "media.play"
    body2, headers2 = plex_multipart(payload, boundary="XyZ-other-boundary")
    r2 = httpx.post(f"{daemon.url}/hooks/plex?token={PLEX_HOOK}", content=body2, headers=headers2)
    assert r2.status_code == 200 and r2.json()["status"] == "duplicate"

    # Processing: media.play = item.watched → the item is synced from Plex into media_items.
    done = daemon.wait_for(
        "SELECT status, attempts FROM webhook_events WHERE event_id = ? AND status NOT IN ('received')",
        (event_id,),
    )
    assert done == [{"status": "processed", "attempts": 1}]
    item = daemon.query(
        "SELECT title FROM media_items WHERE server = 'home' AND rating_key = ?", (str(movie.rating_key),)
    )
    assert item == [{"title": movie.title}]

    for token in ("wrong-token", ""):
        bad = httpx.post(f"{daemon.url}/hooks/plex?token={token}", content=body, headers=headers)
        assert bad.status_code == 401
    assert httpx.post(f"{daemon.url}/hooks/plex", content=body, headers=headers).status_code == 401
    log = daemon.wait_log("/hooks/plex?token=REDACTED")
    assert PLEX_HOOK not in log
    assert "token=wrong-token" not in log


def test_plex_library_new_for_an_unknown_key_is_processed_without_error(daemon):
    payload = json.loads(fixture("plex/webhook_library_new.json"))
    payload["Metadata"]["ratingKey"] = "999999"  # the simulated Plex does not have it
    body, headers = plex_multipart(payload)
    r = httpx.post(f"{daemon.url}/hooks/plex?token={PLEX_HOOK}", content=body, headers=headers)
    assert r.status_code == 202
    done = daemon.wait_for(
        "SELECT status, error FROM webhook_events WHERE event_id = ? AND status != 'received'", (r.json()["event_id"],)
    )
    assert done[0]["status"] == "processed", done


def test_plex_webhook_during_a_full_sync_waits_and_is_applied_once(daemon, universe):
    """The full sync holds the server's lock: the webhook is stored (202), deferred while the lock is held,
    then applied exactly once after the sync ends."""
    movie = universe.movies[1]
    store = Store(daemon.db_path)
    lock = locks.acquire(store, "sync:home", owner="test-full-sync", details={"sync_id": 4242})
    try:
        payload = json.loads(fixture("plex/webhook_media_scrobble_episode.json"))
        payload["Metadata"] = {"ratingKey": str(movie.rating_key), "type": "movie", "title": movie.title}
        body, headers = plex_multipart(payload)
        r = httpx.post(f"{daemon.url}/hooks/plex?token={PLEX_HOOK}", content=body, headers=headers)
        assert r.status_code == 202
        event_id = r.json()["event_id"]
        deferred = daemon.wait_for(
            "SELECT status, attempts, error FROM webhook_events WHERE event_id = ? AND status = 'retry'", (event_id,)
        )
        assert deferred[0]["attempts"] == 0 and "full sync of home is running" in deferred[0]["error"]
        assert not daemon.query("SELECT id FROM media_items WHERE rating_key = ?", (str(movie.rating_key),))
    finally:
        lock.release()
        store.close()
    done = daemon.wait_for(
        "SELECT status, attempts FROM webhook_events WHERE event_id = ? AND status = 'processed'", (event_id,), 15
    )
    assert done == [{"status": "processed", "attempts": 1}]
    assert len(daemon.query("SELECT id FROM media_items WHERE rating_key = ?", (str(movie.rating_key),))) == 1


# --- Sonarr / Radarr (basic) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "password", "files"),
    [
        ("sonarr", SONARR_PASSWORD, ["sonarr/webhook_download.json", "sonarr/webhook_test.json"]),
        ("radarr", RADARR_PASSWORD, ["radarr/webhook_download.json", "radarr/webhook_moviedelete.json"]),
    ],
)
def test_arr_webhooks_with_basic_auth(daemon, source, password, files):
    for name in files:
        body = fixture(name)
        r = httpx.post(f"{daemon.url}/hooks/{source}", content=body, auth=(source, password))
        assert r.status_code in (200, 202), r.text  # 200 if an earlier run of the test stored it
        event_id = r.json()["event_id"]
        assert event_id.startswith("sha256:")
        # Every stored event is eventually processed or ignored (a Test event, an unknown series).
        final = daemon.wait_for(
            "SELECT status FROM webhook_events WHERE event_id = ? AND status IN ('processed', 'ignored')",
            (event_id,),
        )
        assert final
    before = len(rows(daemon, source))
    body = fixture(files[0])
    assert httpx.post(f"{daemon.url}/hooks/{source}", content=body, auth=(source, "wrong")).status_code == 401
    assert httpx.post(f"{daemon.url}/hooks/{source}", content=body, auth=("someone", password)).status_code == 401
    assert httpx.post(f"{daemon.url}/hooks/{source}", content=body).status_code == 401
    bad_header = {"Authorization": "Basic !!!not-base64"}
    assert httpx.post(f"{daemon.url}/hooks/{source}", content=body, headers=bad_header).status_code == 401
    assert len(rows(daemon, source)) == before


# --- Overseerr / Tautulli (header) ---------------------------------------------------------------------


def test_overseerr_authorization_header_bare_or_bearer(daemon):
    body = fixture("overseerr/webhook_media_available.json")
    r = httpx.post(f"{daemon.url}/hooks/overseerr", content=body, headers={"Authorization": OVERSEERR_SECRET})
    assert r.status_code in (200, 202)
    body2 = fixture("overseerr/webhook_media_pending.json")
    bearer = {"Authorization": f"Bearer {OVERSEERR_SECRET}"}
    assert httpx.post(f"{daemon.url}/hooks/overseerr", content=body2, headers=bearer).status_code in (200, 202)
    test_body = fixture("overseerr/webhook_test.json")
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{daemon.url}/hooks/overseerr", content=test_body, headers=wrong).status_code == 401
    assert httpx.post(f"{daemon.url}/hooks/overseerr", content=test_body).status_code == 401
    assert rejected_audits(daemon, "overseerr") >= 2


def test_tautulli_custom_header(daemon):
    body = fixture("tautulli/webhook_example_rendered.json")
    ok = {"X-Webhook-Secret": TAUTULLI_SECRET, "Content-Type": "application/json"}
    assert httpx.post(f"{daemon.url}/hooks/tautulli", content=body, headers=ok).status_code in (200, 202)
    assert (
        httpx.post(f"{daemon.url}/hooks/tautulli", content=body, headers={"X-Webhook-Secret": "x"}).status_code == 401
    )


# --- size, format, routing -----------------------------------------------------------------------------


def _raw_post(daemon: DaemonProcess, path: str, headers: dict[str, str], body_parts: list[bytes]) -> bytes:
    """POST over a raw socket, sending ``body_parts`` one by one; returns what the server answered."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(head.encode() + b"\r\n")
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: it did not read the rest
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_oversized_bodies_get_413_without_being_read(daemon):
    before = len(rows(daemon, "generic"))
    # Declared too large: answered from the headers alone (only 1 KiB of the 2 MiB is ever sent).
    answer = _raw_post(
        daemon,
        f"/hooks/plex?token={PLEX_HOOK}",
        {"Content-Type": "application/json", "Content-Length": str(2 * MAX_BYTES)},
        [b"{" + b" " * 1023],
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Chunked with no length: cut off as soon as the limit is passed.
    chunk = b"x" * 65536
    parts = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 20 + [b"0\r\n\r\n"]
    body = unique_json()
    headers = {k: v for k, v in signed(body).items()}
    headers["Transfer-Encoding"] = "chunked"
    answer = _raw_post(daemon, "/hooks/generic", headers, parts)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Just under the limit is fine.
    big = json.dumps({"type": "big", "pad": "y" * (MAX_BYTES - 100)}).encode()
    assert len(big) <= MAX_BYTES
    r = httpx.post(f"{daemon.url}/hooks/generic", content=big, headers=signed(big))
    assert r.status_code == 202
    assert len(rows(daemon, "generic")) == before + 1


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "not JSON"),
        (b"[1, 2, 3]", "application/json", "must be an object"),
        (b"\xff\xfe\x00", "application/json", "not UTF-8"),
        (
            b'--b\r\nContent-Disposition: form-data; name="thumb"\r\n\r\nx\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            "payload",
        ),
        (b"garbage", "multipart/form-data; boundary=zzz", "multipart"),
    ],
)
def test_malformed_bodies_are_400(daemon, body, content_type, message):
    r = httpx.post(f"{daemon.url}/hooks/plex?token={PLEX_HOOK}", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_unknown_source_is_404_and_wrong_method_405(daemon):
    r = httpx.post(f"{daemon.url}/hooks/jellyfin", content=b"{}")
    assert r.status_code == 404 and "jellyfin" in r.json()["error"]
    assert httpx.get(f"{daemon.url}/hooks/plex").status_code == 405


def test_a_burst_of_concurrent_signed_webhooks_loses_nothing(daemon):
    """500 distinct signed webhooks on 50 connections: every one answered 202 and stored exactly once."""
    bodies = [unique_json("burst") for _ in range(500)]
    requests = [(b, signed(b)) for b in bodies]

    async def fire() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=daemon.url, limits=limits, timeout=30) as client:
            answers = await asyncio.gather(*(client.post("/hooks/generic", content=b, headers=h) for b, h in requests))
        return [a.status_code for a in answers]

    t0 = time.monotonic()
    codes = asyncio.run(fire())
    assert codes == [202] * 500, sorted(set(codes))
    ids = [h["webhook-id"] for _, h in requests]
    marks = ",".join("?" * len(ids))
    stored = daemon.query(f"SELECT COUNT(*) AS n FROM webhook_events WHERE event_id IN ({marks})", ids)
    assert stored[0]["n"] == 500
    assert time.monotonic() - t0 < 60


def test_metrics_count_webhooks_by_source_and_result(daemon):
    body = unique_json()
    httpx.post(f"{daemon.url}/hooks/generic", content=body, headers=signed(body))
    httpx.post(f"{daemon.url}/hooks/generic", content=body, headers={"Content-Type": "application/json"})
    text = httpx.get(f"{daemon.url}/metrics").text
    assert 'smartplexd_webhooks_total{source="generic",result="accepted"}' in text
    assert 'smartplexd_webhooks_total{source="generic",result="unauthorized"}' in text
    assert 'smartplexd_webhook_events{source="generic",status=' in text


def test_the_contract_multipart_example_verbatim(daemon):
    """contracts/plex/webhook_multipart_example.http, sent as written (line ends as CRLF on the wire)."""
    text = fixture("plex/webhook_multipart_example.http").decode().replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    content_type = next(line.split(": ", 1)[1] for line in head.splitlines() if line.startswith("Content-Type"))
    r = httpx.post(
        f"{daemon.url}/hooks/plex?token={PLEX_HOOK}",
        content=body.replace("\n", "\r\n").encode(),
        headers={"Content-Type": content_type},
    )
    assert r.status_code in (200, 202), r.text
    stored = daemon.query("SELECT payload FROM webhook_events WHERE event_id = ?", (r.json()["event_id"],))
    assert json.loads(stored[0]["payload"])["Metadata"]["title"] == "Blade Runner 2049"
