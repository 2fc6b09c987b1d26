"""The simulated Overseerr keeps the API v1 contract (tests/contracts/overseerr.md).

Proved with python-overseerr (a client nobody here wrote) and raw httpx against a real server on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from python_overseerr import OverseerrClient
from python_overseerr.exceptions import OverseerrAuthenticationError, OverseerrConnectionError
from python_overseerr.models import MediaType, RequestFilterStatus, RequestStatus

from smartplexd.demo import overseerr
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Movie, Show, Universe, generate

KEY = "demo-overseerr-key"
FORBIDDEN = {"status": 403, "error": "You do not have permission to access this endpoint"}


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=7, movies=150, shows=12, now=1_700_000_000)


@pytest.fixture
def server(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(overseerr.create_app(universe)) as srv:
        yield srv


@pytest.fixture
def api(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", headers={"X-Api-Key": KEY}) as client:
        yield client


def requested(universe: Universe) -> list[Movie | Show]:
    return [i for i in [*universe.movies, *universe.shows] if i.request is not None]


def client_for(server: ThreadedServer, api_key: str = KEY) -> OverseerrClient:
    port = int(server.url.rsplit(":", 1)[1])
    return OverseerrClient(host="127.0.0.1", port=port, api_key=api_key, ssl=False)


def all_pages(api: httpx.Client, path: str, take: int, **params: str) -> tuple[list[dict], list[dict]]:
    """Walk a paged list; returns (every result, every pageInfo)."""
    results: list[dict] = []
    infos: list[dict] = []
    skip = 0
    while True:
        body = api.get(path, params={"take": take, "skip": skip, **params}).json()
        infos.append(body["pageInfo"])
        results += body["results"]
        skip += take
        if skip >= body["pageInfo"]["results"]:
            return results, infos


async def test_python_overseerr_reads_status_counts_and_requests(server: ThreadedServer, universe: Universe) -> None:
    items = requested(universe)
    async with client_for(server) as client:
        status = await client.get_status()
        count = await client.get_request_count()
        pending = await client.get_requests(status=RequestFilterStatus.PENDING)
        approved = await client.get_requests(status=RequestFilterStatus.APPROVED)

    assert status.version == overseerr.VERSION and status.update_available is False
    assert count.total == len(items)
    assert count.movie == sum(1 for i in items if isinstance(i, Movie))
    assert count.tv == sum(1 for i in items if isinstance(i, Show))
    assert count.pending == sum(1 for i in items if i.request.status == 1)
    assert count.declined == sum(1 for i in items if i.request.status == 3)

    # The client asks without take, so it gets Overseerr's default page of 10, newest request id first.
    pending_ids = sorted((i.request.id for i in items if i.request.status == 1), reverse=True)
    assert [r.id for r in pending] == pending_ids[:10]
    assert all(r.status is RequestStatus.PENDING_APPROVAL for r in pending)
    assert all(r.status is RequestStatus.APPROVED for r in approved)
    by_id = {i.request.id: i for i in items}
    for r in pending + approved:
        item = by_id[r.id]
        assert r.media.tmdb_id == item.tmdb
        assert r.media.media_type is (MediaType.MOVIE if isinstance(item, Movie) else MediaType.TV)
        assert r.requested_by.plex_username == item.request.user


async def test_python_overseerr_reports_a_wrong_key_as_authentication_error(server: ThreadedServer) -> None:
    async with client_for(server, api_key="wrong") as client:
        with pytest.raises(OverseerrAuthenticationError):
            await client.get_request_count()
        # /status is public, so it still answers.
        assert (await client.get_status()).version == overseerr.VERSION


def test_missing_or_wrong_key_is_403_with_overseerr_body(server: ThreadedServer) -> None:
    for headers in ({}, {"X-Api-Key": "nope"}):
        for path in ("/api/v1/request", "/api/v1/media", "/api/v1/user", "/api/v1/request/1"):
            r = httpx.get(server.url + path, headers=headers)
            assert r.status_code == 403 and r.json() == FORBIDDEN
    r = httpx.delete(server.url + "/api/v1/request/1")
    assert r.status_code == 403
    status = httpx.get(server.url + "/api/v1/status")
    assert status.status_code == 200
    assert set(status.json()) == {
        "version",
        "commitTag",
        "updateAvailable",
        "commitsBehind",
        "restartRequired",
    }


def test_header_name_is_case_insensitive(server: ThreadedServer) -> None:
    r = httpx.get(server.url + "/api/v1/request/count", headers={"x-api-key": KEY})
    assert r.status_code == 200


def test_request_pages_cover_every_request_once_newest_first(api: httpx.Client, universe: Universe) -> None:
    results, infos = all_pages(api, "/request", take=7)
    total = len(requested(universe))
    ids = [r["id"] for r in results]
    assert ids == sorted({i.request.id for i in requested(universe)}, reverse=True)
    assert [i["page"] for i in infos] == list(range(1, len(infos) + 1))
    assert all(i == {"pages": -(-total // 7), "pageSize": 7, "results": total, "page": i["page"]} for i in infos)

    default = api.get("/request").json()
    assert default["pageInfo"]["pageSize"] == 10 and len(default["results"]) == 10
    beyond = api.get("/request", params={"take": 10, "skip": total + 5}).json()
    assert beyond["results"] == [] and beyond["pageInfo"]["results"] == total


def test_request_rows_carry_plex_rating_key_and_external_ids(api: httpx.Client, universe: Universe) -> None:
    results, _ = all_pages(api, "/request", take=50)
    by_id = {r["id"]: r for r in results}
    for item in requested(universe):
        row = by_id[item.request.id]
        media = row["media"]
        assert row["status"] == item.request.status
        assert row["requestedBy"]["plexUsername"] == item.request.user
        assert row["requestedBy"]["displayName"] == item.request.user
        assert row["createdAt"] == overseerr.iso(item.request.created_at)
        assert row["createdAt"].endswith(".000Z")
        assert media["ratingKey"] == str(item.rating_key)
        assert media["tmdbId"] == item.tmdb
        if isinstance(item, Movie):
            assert row["type"] == media["mediaType"] == "movie"
            assert media["tvdbId"] is None and media["imdbId"] == item.imdb
            assert row["seasons"] == [] and row["seasonCount"] == 0
        else:
            assert row["type"] == media["mediaType"] == "tv"
            assert media["tvdbId"] == item.tvdb
            assert [s["seasonNumber"] for s in row["seasons"]] == [s.index for s in item.seasons]
            assert [s["seasonNumber"] for s in media["seasons"]] == [s.index for s in item.seasons]
        assert media["status"] in {1, 2, 3, 4, 5}


def test_request_filters_follow_overseerr_semantics(api: httpx.Client, universe: Universe) -> None:
    def statuses(filter_: str) -> list[tuple[int, int]]:
        rows, _ = all_pages(api, "/request", take=100, filter=filter_)
        return [(r["status"], r["media"]["status"]) for r in rows]

    items = requested(universe)
    assert len(statuses("all")) == len(items)
    assert {s for s, _ in statuses("pending")} == {1}
    assert len(statuses("pending")) == sum(1 for i in items if i.request.status == 1)
    assert {s for s, _ in statuses("approved")} == {2}
    assert all(s in {2, 5} and m == 5 for s, m in statuses("available"))
    completed = statuses("completed")
    assert completed and {s for s, _ in completed} == {5}
    assert len(completed) == sum(1 for i in items if i.request.status == 5)
    assert statuses("failed") == []
    assert all(s in {1, 2} and m in {1, 2, 3, 4} for s, m in statuses("unavailable"))

    alice = api.get("/request", params={"take": 100, "requestedBy": 2}).json()["results"]
    assert alice and {r["requestedBy"]["plexUsername"] for r in alice} == {"alice"}


def test_get_request_by_id_and_404_shape(api: httpx.Client, universe: Universe) -> None:
    item = requested(universe)[0]
    row = api.get(f"/request/{item.request.id}").json()
    assert row["id"] == item.request.id and row["media"]["ratingKey"] == str(item.rating_key)
    missing = api.get("/request/999999")
    assert missing.status_code == 404 and missing.json() == {"message": "Request not found."}


def test_deleted_request_is_gone_but_its_media_stays(
    server: ThreadedServer, api: httpx.Client, universe: Universe
) -> None:
    item = requested(universe)[0]
    rid = item.request.id
    before = api.get("/request/count").json()["total"]

    gone = api.delete(f"/request/{rid}")
    assert gone.status_code == 204 and gone.content == b""
    assert api.get(f"/request/{rid}").status_code == 404
    again = api.delete(f"/request/{rid}")
    assert again.status_code == 404 and again.json() == {"message": "Request not found."}
    assert api.get("/request/count").json()["total"] == before - 1
    rows, _ = all_pages(api, "/request", take=100)
    assert rid not in {r["id"] for r in rows}

    media, _ = all_pages(api, "/media", take=100)
    assert str(item.rating_key) in {m["ratingKey"] for m in media}

    deletions = httpx.get(server.url + "/_sim/overseerr/deletions").json()
    assert deletions == [
        {
            "kind": "request",
            "id": rid,
            "media_id": deletions[0]["media_id"],
            "rating_key": str(item.rating_key),
            "tmdb_id": item.tmdb,
        }
    ]


def test_deleting_media_cascades_to_its_requests(server: ThreadedServer, api: httpx.Client, universe: Universe) -> None:
    item = requested(universe)[1]
    state = server.app[overseerr.OVERSEERR_STATE]
    second = server.call(state.add_request, item.rating_key, "bob", 1)
    row = api.get(f"/request/{second.id}").json()
    media_id = row["media"]["id"]
    assert api.get(f"/request/{item.request.id}").json()["media"]["id"] == media_id  # one media row per item

    assert api.delete(f"/media/{media_id}").status_code == 204
    assert api.get(f"/request/{item.request.id}").status_code == 404
    assert api.get(f"/request/{second.id}").status_code == 404
    missing = api.delete(f"/media/{media_id}")
    assert missing.status_code == 404 and missing.json() == {"message": "Media not found"}
    kinds = [(d["kind"], d.get("requests")) for d in state.deletions]
    assert kinds == [("media", sorted([item.request.id, second.id]))]


def test_media_list_pages_and_filters(api: httpx.Client, universe: Universe) -> None:
    items = requested(universe)
    media, infos = all_pages(api, "/media", take=9)
    assert len(media) == len(items) and infos[0]["pageSize"] == 9
    assert [m["id"] for m in media] == sorted((m["id"] for m in media), reverse=True)
    assert {m["ratingKey"] for m in media} == {str(i.rating_key) for i in items}
    assert "requests" not in media[0]
    assert api.get("/media").json()["pageInfo"]["pageSize"] == 20
    available, _ = all_pages(api, "/media", take=100, filter="available")
    assert available and {m["status"] for m in available} == {5}
    pending, _ = all_pages(api, "/media", take=100, filter="pending")
    assert {m["status"] for m in pending} <= {2}

    target = media[0]["id"]
    changed = api.post(f"/media/{target}/processing")
    assert changed.status_code == 200 and changed.json()["status"] == 3


def test_users_are_paged_and_match_request_authors(api: httpx.Client) -> None:
    users, infos = all_pages(api, "/user", take=2)
    assert [u["plexUsername"] for u in users] == ["admin", "alice", "bob", "carol", "dave"]
    assert infos[-1] == {"pages": 3, "pageSize": 2, "results": 5, "page": 3}
    assert users[0]["id"] == 1 and users[0]["permissions"] == 2
    assert api.get("/user/3").json()["displayName"] == "bob"
    assert api.get("/user/99").status_code == 404
    about = api.get("/settings/about").json()
    assert about["version"] == overseerr.VERSION and about["totalRequests"] >= 1


def test_bad_paging_parameters_answer_400(api: httpx.Client) -> None:
    r = api.get("/request", params={"take": "lots"})
    assert r.status_code == 400 and "take" in r.json()["message"]


def test_sim_routes_add_and_list_requests(server: ThreadedServer, api: httpx.Client, universe: Universe) -> None:
    unrequested = next(m for m in universe.movies if m.request is None)
    r = httpx.post(
        server.url + "/_sim/overseerr/requests", json={"rating_key": unrequested.rating_key, "user": "carol"}
    )
    assert r.status_code == 201
    created = r.json()
    assert created["status"] == 1 and created["media"]["tmdbId"] == unrequested.tmdb
    assert api.get("/request", params={"take": 1}).json()["results"][0]["id"] == created["id"]
    listed = httpx.get(server.url + "/_sim/overseerr/requests").json()
    assert created["id"] in {x["id"] for x in listed}

    unknown = httpx.post(server.url + "/_sim/overseerr/requests", json={"rating_key": 1})
    assert unknown.status_code == 404
    bad = httpx.post(server.url + "/_sim/overseerr/requests", json={"user": "carol"})
    assert bad.status_code == 400


def test_fault_knobs_fail_then_recover_and_revoke_auth(server: ThreadedServer, api: httpx.Client) -> None:
    httpx.post(server.url + "/_sim/faults", json={"fail_next": 2}).raise_for_status()
    assert api.get("/request").status_code == 503
    assert api.get("/status").status_code == 503
    assert api.get("/request").status_code == 200

    server.app[FAULTS].revoke_auth = True
    r = api.get("/request")
    assert r.status_code == 403 and r.json() == FORBIDDEN
    server.app[FAULTS].revoke_auth = False
    assert api.get("/request").status_code == 200


async def test_python_overseerr_sees_a_failing_service_as_connection_error(server: ThreadedServer) -> None:
    server.app[FAULTS].fail_next = 1
    async with client_for(server) as client:
        with pytest.raises(OverseerrConnectionError):
            await client.get_request_count()
        assert (await client.get_request_count()).total >= 1


def test_module_runs_as_a_program() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "smartplexd.demo.overseerr",
        "--port",
        str(port),
        "--movies",
        "20",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/request/count", headers={"X-Api-Key": KEY})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["total"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
