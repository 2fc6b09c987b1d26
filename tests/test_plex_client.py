"""The Plex client against the simulated PMS over real HTTP: paging, 404s, retries, 401, deletes, collections.

Every test talks to ``smartplexd.demo.plex`` on 127.0.0.1; faults come from the simulator's own knobs.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import httpx
import pytest

from smartplexd.config import PlexServerConfig
from smartplexd.demo import plex
from smartplexd.demo.faults import FAULTS, Faults
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate
from smartplexd.errors import EXIT_PLEX_UNAUTHORIZED, EXIT_REFUSED, PlexUnauthorized
from smartplexd.plex.client import PlexClient, PlexDeletionDisabled, PlexError, RetryPolicy

TOKEN = "client-test-token-7f3a9c"
NOW = 1_700_000_000
FAST = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02)


@pytest.fixture
def universe() -> Universe:
    return generate(seed=5, movies=30, shows=3, seasons_per_show=2, episodes_per_season=3, now=NOW)


@pytest.fixture
def server(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(plex.create_app(universe, token=TOKEN)) as srv:
        yield srv
        # A hanging handler would hold up the server's shutdown.
        srv.app[FAULTS].hang = False


@pytest.fixture
def state(server: ThreadedServer) -> plex.PlexState:
    return server.app[plex.PLEX_STATE]


@pytest.fixture
def faults(server: ThreadedServer) -> Faults:
    return server.app[FAULTS]


def config(url: str, **overrides: object) -> PlexServerConfig:
    return PlexServerConfig.model_validate({"name": "home", "url": url, "token": TOKEN, **overrides})


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[PlexClient]:
    with PlexClient(config(server.url), retry=FAST) as c:
        yield c


def sim_requests(server: ThreadedServer) -> list[dict]:
    return httpx.get(f"{server.url}/_sim/requests").json()


def clear_requests(server: ThreadedServer) -> None:
    httpx.delete(f"{server.url}/_sim/requests")


def test_identity_and_sections_describe_the_server(client: PlexClient, universe: Universe) -> None:
    identity = client.identity()
    assert identity["machineIdentifier"] == universe.machine_identifier
    assert identity["version"] == plex.VERSION
    sections = {s["title"]: s for s in client.sections()}
    assert sections["Movies"]["type"] == "movie" and sections["Movies"]["key"] == "1"
    assert sections["TV Shows"]["type"] == "show"


def test_iter_section_pages_through_every_item_of_a_type(
    client: PlexClient, server: ThreadedServer, universe: Universe
) -> None:
    clear_requests(server)
    movies = list(client.iter_section("1", "movie", page_size=7))
    assert sorted(m["ratingKey"] for m in movies) == sorted(str(m.rating_key) for m in universe.movies)
    assert all(m["Guid"] for m in movies), "listings ask for includeGuids=1"
    starts = [r["query"]["X-Plex-Container-Start"] for r in sim_requests(server)]
    assert starts == ["0", "7", "14", "21", "28"]
    episodes = list(client.iter_section(2, 4, page_size=5))
    assert len(episodes) == sum(len(s.episodes) for s in universe.shows)
    assert client.count("1", "movie") == 30
    assert client.count("2", "season") == 6


def test_fetch_item_returns_full_metadata_or_none_when_plex_has_no_such_item(
    client: PlexClient, universe: Universe
) -> None:
    movie = universe.movies[0]
    item = client.fetch_item(movie.rating_key)
    assert item is not None
    assert item["title"] == movie.title
    assert item["librarySectionID"] == 1 and item["librarySectionTitle"] == "Movies"
    assert item["Media"][0]["Part"][0]["size"] == movie.size
    assert client.fetch_item(999_999) is None
    show = universe.shows[0]
    assert [c["ratingKey"] for c in client.children(show.rating_key)] == [str(s.rating_key) for s in show.seasons]
    assert len(client.all_leaves(show.rating_key)) == len(show.episodes)
    assert client.children(999_999) == []


def test_a_rejected_token_raises_plex_unauthorized_with_how_to_fix_it(server: ThreadedServer) -> None:
    bad = PlexServerConfig.model_validate({"name": "home", "url": server.url, "token": "not-the-token"})
    with PlexClient(bad, retry=FAST) as c, pytest.raises(PlexUnauthorized) as caught:
        c.sections()
    assert caught.value.exit_code == EXIT_PLEX_UNAUTHORIZED
    assert "'home' rejected the token" in str(caught.value)
    assert "plex.servers[home].token" in str(caught.value)


def test_a_revoked_token_is_not_retried(client: PlexClient, server: ThreadedServer, faults: Faults) -> None:
    faults.revoke_auth = True
    clear_requests(server)
    with pytest.raises(PlexUnauthorized):
        client.fetch_page("1", "movie", 0, 10)
    assert len(sim_requests(server)) == 1


def test_server_errors_are_retried_until_plex_recovers(
    client: PlexClient, server: ThreadedServer, faults: Faults
) -> None:
    faults.fail_next = 2
    clear_requests(server)
    assert len(client.sections()) == 2
    assert [r["path"] for r in sim_requests(server)] == ["/library/sections"] * 3


def test_server_errors_that_persist_are_reported_after_the_retries(
    client: PlexClient, server: ThreadedServer, faults: Faults
) -> None:
    faults.error_rate, faults.error_status = 1.0, 502
    clear_requests(server)
    with pytest.raises(PlexError) as caught:
        client.fetch_page("1", "movie", 0, 10)
    assert caught.value.status == 502
    message = str(caught.value)
    assert "'home'" in message and "HTTP 502" in message and "gave up after 3 attempts" in message
    assert "/library/sections/1/all" in message
    assert len(sim_requests(server)) == 3


def test_timeouts_are_retried_then_reported(server: ThreadedServer, faults: Faults) -> None:
    faults.hang, faults.hang_seconds = True, 1.0
    clear_requests(server)
    with PlexClient(config(server.url, timeout=0.2), retry=FAST) as c, pytest.raises(PlexError) as caught:
        c.identity()
    assert "no answer within 0.2 s" in str(caught.value)
    assert len(sim_requests(server)) == 3


def test_an_unreachable_server_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with PlexClient(config(f"http://127.0.0.1:{port}"), retry=FAST) as c, pytest.raises(PlexError) as caught:
        c.identity()
    assert "connection failed" in str(caught.value)


def test_client_errors_are_not_retried(client: PlexClient, server: ThreadedServer) -> None:
    clear_requests(server)
    with pytest.raises(PlexError) as caught:
        client.fetch_page("99", "movie", 0, 10)
    assert caught.value.status == 404
    assert len(sim_requests(server)) == 1


def test_delete_item_deletes_once_and_then_reports_already_gone(
    client: PlexClient, state: plex.PlexState, universe: Universe
) -> None:
    movie = universe.movies[3]
    assert client.delete_item(movie.rating_key) is True
    assert movie.rating_key in state.deleted
    assert client.fetch_item(movie.rating_key) is None
    assert client.delete_item(str(movie.rating_key)) is False
    show = universe.shows[0]
    assert client.delete_item(show.rating_key) is True
    assert all(e.rating_key in state.deleted for e in show.episodes)


def test_delete_is_refused_clearly_when_plex_does_not_allow_media_deletion(
    client: PlexClient, state: plex.PlexState, universe: Universe
) -> None:
    state.allow_media_deletion = False
    movie = universe.movies[4]
    with pytest.raises(PlexDeletionDisabled) as caught:
        client.delete_item(movie.rating_key)
    assert caught.value.exit_code == EXIT_REFUSED
    assert caught.value.status == 400
    assert "Allow media deletion is off in Plex (Settings → Server → Library" in str(caught.value)
    assert client.fetch_item(movie.rating_key) is not None


def test_collections_are_created_when_missing_filled_and_emptied(client: PlexClient, universe: Universe) -> None:
    a, b, c = (m.rating_key for m in universe.movies[:3])

    def collections_of(key: int) -> list[str]:
        item = client.fetch_item(key)
        assert item is not None
        return [t["tag"] for t in item.get("Collection", [])]

    assert client.add_to_collection("1", "Leaving Soon", [a, b]) == 2
    assert "Leaving Soon" in collections_of(a) and "Leaving Soon" in collections_of(b)
    assert client.add_to_collection(1, "Leaving Soon", [str(c), 999_999]) == 1
    assert "Leaving Soon" in collections_of(c)
    assert client.remove_from_collection("1", "Leaving Soon", [a, c]) == 2
    assert "Leaving Soon" not in collections_of(a)
    assert "Leaving Soon" in collections_of(b)
    assert client.remove_from_collection("1", "No Such Collection", [b]) == 0
    assert client.add_to_collection("1", "Leaving Soon", []) == 0
    show = universe.shows[1]
    assert client.add_to_collection("2", "Leaving Soon", [show.rating_key]) == 1
    assert "Leaving Soon" in collections_of(show.rating_key)


def test_the_token_travels_only_in_the_header(
    client: PlexClient, server: ThreadedServer, universe: Universe, caplog: pytest.LogCaptureFixture
) -> None:
    # Every library that could print a URL or a header, at DEBUG (the CLI's log setup may have quietened them).
    for name in ("", "httpx", "httpcore", "plexapi", "urllib3", "smartplexd"):
        caplog.set_level(logging.DEBUG, logger=name)
    clear_requests(server)
    server.app[FAULTS].fail_next = 1  # the retry warning names the request
    client.identity()
    list(client.iter_section("1", "movie", page_size=10))
    client.fetch_item(universe.movies[0].rating_key)
    client.add_to_collection("1", "Leaving Soon", [universe.movies[0].rating_key])
    client.remove_from_collection("1", "Leaving Soon", [universe.movies[0].rating_key])
    client.delete_item(universe.movies[1].rating_key)
    logged = sim_requests(server)
    assert len(logged) > 8
    for request in logged:
        assert "x-plex-token" in request["header_names"]
        assert TOKEN not in request["path"]
        assert TOKEN not in str(request["query"])
        assert TOKEN not in str(request["headers"])
    assert caplog.records, "debug logging was on"
    assert TOKEN not in caplog.text
