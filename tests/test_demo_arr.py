"""The simulated Sonarr and Radarr keep the API v3 contract (tests/contracts/sonarr.md, radarr.md).

Proved with pyarr 5.x (a client nobody here wrote) and raw httpx against real servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyarr import RadarrAPI, SonarrAPI
from pyarr.exceptions import PyarrBadRequest, PyarrResourceNotFound, PyarrUnauthorizedError

from smartplexd.demo import radarr, sonarr
from smartplexd.demo.arr import ARR_STATE
from smartplexd.demo.faults import FAULTS
from smartplexd.demo.serving import ThreadedServer
from smartplexd.demo.universe import Universe, generate

RADARR_KEY = "demo-radarr-key"
SONARR_KEY = "demo-sonarr-key"
CONTRACTS = Path(__file__).resolve().parent / "contracts"

# pyarr prints its parameters and warns about its own deprecated helpers; neither is our concern.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def universe() -> Universe:
    return generate(seed=7, movies=80, shows=6, seasons_per_show=2, episodes_per_season=4, now=1_700_000_000)


@pytest.fixture
def radarr_srv(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(radarr.create_app(universe)) as srv:
        yield srv


@pytest.fixture
def sonarr_srv(universe: Universe) -> Iterator[ThreadedServer]:
    with ThreadedServer(sonarr.create_app(universe)) as srv:
        yield srv


def rstate(srv: ThreadedServer) -> radarr.RadarrState:
    state = srv.app[ARR_STATE]
    assert isinstance(state, radarr.RadarrState)
    return state


def sstate(srv: ThreadedServer) -> sonarr.SonarrState:
    state = srv.app[ARR_STATE]
    assert isinstance(state, sonarr.SonarrState)
    return state


def raw(srv: ThreadedServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"X-Api-Key": key})


# ------------------------------------------------------------------------------------------- Radarr


def test_radarr_lists_exactly_its_instance_movies(radarr_srv: ThreadedServer, universe: Universe) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movies = api.get_movie()
    expected = {m.tmdb: m for m in universe.movies if m.radarr == "radarr"}
    assert {m["tmdbId"] for m in movies} == set(expected)

    first = movies[0]
    source = expected[first["tmdbId"]]
    assert first["title"] == source.title and first["year"] == source.year
    assert first["imdbId"] == source.imdb
    assert first["hasFile"] is True and first["sizeOnDisk"] == source.size == first["movieFile"]["size"]
    assert first["movieFile"]["path"] == source.file
    assert first["monitored"] is source.monitored
    assert first["qualityProfileId"] == source.quality_profile_id
    assert first["added"].endswith("Z") and first["path"] == source.file.rsplit("/", 1)[0]
    tag_labels = {t["id"]: t["label"] for t in api.get_tag()}
    assert [tag_labels[t] for t in first["tags"]] == source.tags

    assert api.get_movie(first["id"])["tmdbId"] == first["tmdbId"]
    assert [m["id"] for m in api.get_movie(first["tmdbId"], tmdb=True)] == [first["id"]]
    assert api.get_movie(999_999, tmdb=True) == []


def test_radarr4k_instance_holds_only_its_movies(universe: Universe) -> None:
    with ThreadedServer(radarr.create_app(universe, instance="radarr4k", api_key="k4")) as srv:
        api = RadarrAPI(srv.url, "k4")
        held = {m["tmdbId"] for m in api.get_movie()}
        assert held == {m.tmdb for m in universe.movies if m.radarr == "radarr4k"}
        assert held and held.isdisjoint({m.tmdb for m in universe.movies if m.radarr == "radarr"})
        assert api.get_system_status()["instanceName"] == "Radarr4k"
        assert {m["movieFile"]["quality"]["quality"]["resolution"] for m in api.get_movie()} == {2160}
        with pytest.raises(PyarrUnauthorizedError):
            RadarrAPI(srv.url, RADARR_KEY).get_movie()


def test_radarr_status_health_tags_and_disk_space(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    status = api.get_system_status()
    assert status["appName"] == "Radarr" and status["version"].startswith("5.")
    assert api.get_health() == []

    warning = {
        "source": "IndexerStatusCheck",
        "type": "warning",
        "message": "Indexers unavailable due to failures: NZBgeek",
        "wikiUrl": "https://wiki.servarr.com/radarr/system#indexers-are-unavailable-due-to-failures",
    }
    with httpx.Client(base_url=radarr_srv.url) as sim:
        assert sim.post("/_sim/arr/health", json=[warning]).status_code == 200
        assert sim.post("/_sim/arr/system", json={"version": "4.7.5.7809"}).status_code == 200
    assert api.get_health() == [warning]
    assert api.get_system_status()["version"] == "4.7.5.7809"

    tag = api.create_tag("Keep")
    assert tag == {"id": tag["id"], "label": "keep"} and tag in api.get_tag()

    disks = {d["path"]: d for d in api.get_disk_space()}
    media = disks[radarr.ROOT_FOLDER]
    assert set(media) == {"path", "label", "freeSpace", "totalSpace"}
    assert 0 < media["freeSpace"] < media["totalSpace"]
    radarr_srv.call(rstate(radarr_srv).set_free_space, 123 * 2**30)
    assert {d["path"]: d for d in api.get_disk_space()}[radarr.ROOT_FOLDER]["freeSpace"] == 123 * 2**30
    with httpx.Client(base_url=radarr_srv.url) as sim:
        sim.post("/_sim/arr/diskspace", json={"freeSpace": 5 * 2**40, "totalSpace": 8 * 2**40})
    media = {d["path"]: d for d in api.get_disk_space()}[radarr.ROOT_FOLDER]
    assert (media["freeSpace"], media["totalSpace"]) == (5 * 2**40, 8 * 2**40)
    assert api.get_root_folder()[0]["freeSpace"] == 5 * 2**40
    assert {p["id"] for p in api.get_quality_profile()} == {1, 4, 5}


def test_radarr_delete_with_files_and_exclusion_then_404(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movie = api.get_movie()[3]
    free_before = rstate(radarr_srv).free_space()

    api.del_movie(movie["id"], delete_files=True, add_exclusion=True)

    with pytest.raises(PyarrResourceNotFound):
        api.get_movie(movie["id"])
    assert movie["tmdbId"] not in {m["tmdbId"] for m in api.get_movie()}
    assert rstate(radarr_srv).free_space() == free_before + movie["sizeOnDisk"]
    with raw(radarr_srv, RADARR_KEY) as client:
        assert client.get("/api/v3/exclusions").json() == [
            {"id": 1, "tmdbId": movie["tmdbId"], "movieTitle": movie["title"], "movieYear": movie["year"]}
        ]
        again = client.delete(f"/api/v3/movie/{movie['id']}", params={"deleteFiles": "true"})
        assert again.status_code == 404
        assert again.json() == {"message": f"Movie with ID {movie['id']} does not exist"}
    with pytest.raises(PyarrResourceNotFound):
        api.del_movie(movie["id"], delete_files=True)

    (deleted,) = rstate(radarr_srv).deletes
    assert deleted["kind"] == "movie" and deleted["tmdbId"] == movie["tmdbId"]
    assert deleted["deleteFiles"] is True and deleted["addImportExclusion"] is True
    assert deleted["size"] == movie["sizeOnDisk"]


def test_radarr_delete_without_files_keeps_disk_space(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movie = api.get_movie()[0]
    free_before = rstate(radarr_srv).free_space()
    api.del_movie(movie["id"])
    assert rstate(radarr_srv).free_space() == free_before
    assert rstate(radarr_srv).deletes[0]["deleteFiles"] is False
    with raw(radarr_srv, RADARR_KEY) as client:
        assert client.get("/api/v3/exclusions").json() == []


def test_radarr_movie_files(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movie = api.get_movie()[1]
    (file,) = api.get_movie_files_by_movie_id(movie["id"])
    assert file == movie["movieFile"] and file["movieId"] == movie["id"]
    assert file["id"] == movie["movieFileId"] != movie["id"]
    assert api.get_movie_file(file["id"]) == file
    assert api.get_movie_file([file["id"]]) == [file]

    api.del_movie_file(file["id"])

    after = api.get_movie(movie["id"])
    assert (after["hasFile"], after["sizeOnDisk"], after["movieFileId"]) == (False, 0, 0)
    assert "movieFile" not in after
    assert api.get_movie_files_by_movie_id(movie["id"]) == []
    assert rstate(radarr_srv).deletes[0]["kind"] == "moviefile"
    with raw(radarr_srv, RADARR_KEY) as client:
        gone = client.delete(f"/api/v3/moviefile/{file['id']}")
        assert (gone.status_code, gone.json()) == (404, {"message": "Movie file not found"})
        missing = client.get("/api/v3/moviefile")
        assert (missing.status_code, missing.json()) == (400, {"message": "movieId or movieFileIds must be provided"})


def test_radarr_unmonitor_through_put(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movie = next(m for m in api.get_movie() if m["monitored"])
    catalogue_before = api.get_movie()

    movie["monitored"] = False
    updated = api.upd_movie(movie)

    assert updated["monitored"] is False and updated["id"] == movie["id"]
    assert api.get_movie(movie["id"])["monitored"] is False
    # The cached catalogue is re-rendered for the changed movie only.
    after = {m["id"]: m for m in api.get_movie()}
    assert after[movie["id"]]["monitored"] is False
    assert all(after[m["id"]] == m for m in catalogue_before if m["id"] != movie["id"])
    with raw(radarr_srv, RADARR_KEY) as client:
        r = client.put(f"/api/v3/movie/{movie['id']}", json={**movie, "monitored": True})
        assert r.status_code == 202 and r.json()["monitored"] is True
        assert client.put("/api/v3/movie/99999", json=movie).status_code == 404


def test_radarr_restore_adds_back_and_searches(radarr_srv: ThreadedServer, universe: Universe) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    movie = api.get_movie()[2]
    api.del_movie(movie["id"], delete_files=True, add_exclusion=True)

    (found,) = api.lookup_movie(f"tmdb:{movie['tmdbId']}")
    assert "id" not in found and found["title"] == movie["title"]
    added = api.add_movie(found, root_dir="/data/movies", quality_profile_id=4, search_for_movie=True)

    assert added["id"] > max(m["id"] for m in api.get_movie() if m["id"] != added["id"])
    assert (added["tmdbId"], added["hasFile"], added["sizeOnDisk"], added["monitored"]) == (
        movie["tmdbId"],
        False,
        0,
        True,
    )
    assert added["path"] == movie["path"]
    (search,) = rstate(radarr_srv).searches
    assert search["body"]["movieIds"] == [added["id"]]
    # A lookup of a held movie answers with the library resource.
    assert api.lookup_movie(f"tmdb:{movie['tmdbId']}")[0]["id"] == added["id"]

    with pytest.raises(PyarrBadRequest):
        api.add_movie(found, root_dir="/data/movies", quality_profile_id=4)
    with raw(radarr_srv, RADARR_KEY) as client:
        dup = client.post("/api/v3/movie", json={**found, "qualityProfileId": 4, "rootFolderPath": "/data/movies"})
        assert dup.status_code == 400
        (failure,) = dup.json()
        assert failure["propertyName"] == "TmdbId"
        assert failure["errorMessage"] == "This movie has already been added"

        # Any universe movie can be added, even one another instance holds.
        other = next(m for m in universe.movies if m.radarr != "radarr")
        bad = client.post("/api/v3/movie", json={"tmdbId": other.tmdb, "title": other.title})
        assert bad.status_code == 400
        assert {f["propertyName"] for f in bad.json()} == {"QualityProfileId", "Path", "RootFolderPath"}
        ok = client.post(
            "/api/v3/movie",
            json={"tmdbId": other.tmdb, "qualityProfileId": 5, "rootFolderPath": "/data/movies", "monitored": False},
        )
        assert ok.status_code == 201 and ok.json()["monitored"] is False
        unknown = client.post("/api/v3/movie", json={"tmdbId": 42, "qualityProfileId": 4, "rootFolderPath": "/m"})
        assert unknown.json()[0]["errorMessage"] == "A movie with this ID was not found"


def test_radarr_search_command(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    command = api.post_command("MoviesSearch", movieIds=[1, 2])
    assert command["name"] == "MoviesSearch" and command["body"]["movieIds"] == [1, 2]
    assert api.get_command(command["id"])["status"] == "completed"
    assert [c["body"]["movieIds"] for c in rstate(radarr_srv).searches] == [[1, 2]]


def test_radarr_rejects_bad_keys_like_servarr(radarr_srv: ThreadedServer) -> None:
    with pytest.raises(PyarrUnauthorizedError):
        RadarrAPI(radarr_srv.url, "wrong-key").get_movie()
    with httpx.Client(base_url=radarr_srv.url) as client:
        missing = client.get("/api/v3/system/status")
        assert (missing.status_code, missing.content) == (401, b"")
        assert client.get("/api/v3/system/status", params={"apikey": RADARR_KEY}).status_code == 200
        bearer = client.get("/api/v3/system/status", headers={"Authorization": f"Bearer {RADARR_KEY}"})
        assert bearer.status_code == 200


def test_radarr_fault_knobs(radarr_srv: ThreadedServer) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    radarr_srv.app[FAULTS].revoke_auth = True
    with pytest.raises(PyarrUnauthorizedError):
        api.get_system_status()
    radarr_srv.app[FAULTS].revoke_auth = False
    assert api.get_system_status()["appName"] == "Radarr"

    with httpx.Client(base_url=radarr_srv.url, headers={"X-Api-Key": RADARR_KEY}) as client:
        client.post("/_sim/faults", json={"fail_next": 2, "error_status": 503})
        assert [client.get("/api/v3/movie").status_code for _ in range(3)] == [503, 503, 200]
        client.post("/_sim/faults", json={"latency": 0.2})
        started = time.monotonic()
        assert client.get("/api/v3/health").status_code == 200
        assert time.monotonic() - started >= 0.2
        paths = [entry["path"] for entry in client.get("/_sim/requests").json()]
        assert paths.count("/api/v3/movie") == 3


def test_radarr_sim_control_routes(radarr_srv: ThreadedServer, universe: Universe) -> None:
    api = RadarrAPI(radarr_srv.url, RADARR_KEY)
    victim = api.get_movie()[0]
    outsider = next(m for m in universe.movies if m.radarr is None)
    with httpx.Client(base_url=radarr_srv.url) as sim:
        assert sim.post("/_sim/arr/remove", json={"id": victim["id"]}).status_code == 200
        added = sim.post("/_sim/arr/add", json={"tmdbId": outsider.tmdb}).json()
        assert added["hasFile"] is True and added["sizeOnDisk"] == outsider.size
        api.del_movie(added["id"], delete_files=True, add_exclusion=True)
        state = sim.get("/_sim/arr/state").json()
    assert state["movieCount"] == len(api.get_movie())
    assert [d["tmdbId"] for d in state["deletes"]] == [outsider.tmdb]  # the /_sim removal is not a delete
    assert state["exclusions"][0]["tmdbId"] == outsider.tmdb


def test_radarr_serves_20000_movies_from_cache() -> None:
    big = generate(seed=1, movies=20_000, shows=1, seasons_per_show=1, episodes_per_season=1, now=1_700_000_000)
    with ThreadedServer(radarr.create_app(big)) as srv, raw(srv, RADARR_KEY) as client:
        first = client.get("/api/v3/movie")
        count = len(rstate(srv).movies)
        assert count > 15_000 and len(first.json()) == count
        started = time.monotonic()
        again = client.get("/api/v3/movie")
        assert time.monotonic() - started < 0.5
        assert again.content == first.content
        client.delete("/api/v3/movie/10")
        started = time.monotonic()
        assert len(client.get("/api/v3/movie").json()) == count - 1
        assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------------------------------- Sonarr


def test_sonarr_lists_exactly_its_series(sonarr_srv: ThreadedServer, universe: Universe) -> None:
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    series = api.get_series()
    expected = {s.tvdb: s for s in universe.shows if s.sonarr == "sonarr"}
    assert {s["tvdbId"] for s in series} == set(expected)

    first = series[0]
    show = expected[first["tvdbId"]]
    assert (first["title"], first["tmdbId"], first["imdbId"], first["status"]) == (
        show.title,
        show.tmdb,
        show.imdb,
        show.status,
    )
    stats = first["statistics"]
    assert stats["sizeOnDisk"] == show.size
    assert stats["episodeFileCount"] == stats["totalEpisodeCount"] == len(show.episodes)
    assert stats["seasonCount"] == len(show.seasons) == len(first["seasons"])
    assert [s["statistics"]["sizeOnDisk"] for s in first["seasons"]] == [
        sum(e.size for e in season.episodes) for season in show.seasons
    ]
    assert api.get_series(first["id"]) == first
    assert [s["id"] for s in api.get_series(first["tvdbId"], tvdb=True)] == [first["id"]]
    with pytest.raises(PyarrResourceNotFound):
        api.get_series(99_999)


def test_sonarr_episodes_and_episode_files(sonarr_srv: ThreadedServer, universe: Universe) -> None:
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    series = api.get_series()[0]
    show = next(s for s in universe.shows if s.tvdb == series["tvdbId"])

    episodes = api.get_episode(series["id"], series=True)
    assert [(e["seasonNumber"], e["episodeNumber"]) for e in episodes] == [
        (season.index, ep.index) for season in show.seasons for ep in season.episodes
    ]
    assert all(e["hasFile"] and e["episodeFileId"] and e["seriesId"] == series["id"] for e in episodes)

    files = api.get_episode_file(series["id"], series=True)
    assert {f["id"] for f in files} == {e["episodeFileId"] for e in episodes}
    assert sorted(f["size"] for f in files) == sorted(e.size for e in show.episodes)
    assert api.get_episode_file(files[0]["id"]) == files[0]


def test_sonarr_episode_file_delete_keeps_statistics_consistent(sonarr_srv: ThreadedServer) -> None:
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    # Monitored, so its episode without a file still counts (Sonarr: monitored and aired, or has a file).
    series = next(s for s in api.get_series() if s["monitored"])
    episode = api.get_episode(series["id"], series=True)[0]
    file = api.get_episode_file(episode["episodeFileId"])
    free_before = sstate(sonarr_srv).free_space()

    api.del_episode_file(file["id"])

    after = api.get_series(series["id"])
    assert after["statistics"]["episodeFileCount"] == series["statistics"]["episodeFileCount"] - 1
    assert after["statistics"]["sizeOnDisk"] == series["statistics"]["sizeOnDisk"] - file["size"]
    season = next(s for s in after["seasons"] if s["seasonNumber"] == episode["seasonNumber"])
    before = next(s for s in series["seasons"] if s["seasonNumber"] == episode["seasonNumber"])
    assert season["statistics"]["sizeOnDisk"] == before["statistics"]["sizeOnDisk"] - file["size"]
    assert season["statistics"]["percentOfEpisodes"] < 100
    refreshed = api.get_episode(episode["id"])
    assert (refreshed["hasFile"], refreshed["episodeFileId"], refreshed["monitored"]) == (False, 0, True)
    assert sstate(sonarr_srv).free_space() == free_before + file["size"]
    assert sstate(sonarr_srv).deletes[0]["kind"] == "episodefile"

    with pytest.raises(PyarrResourceNotFound):
        api.del_episode_file(file["id"])
    with raw(sonarr_srv, SONARR_KEY) as client:
        gone = client.delete(f"/api/v3/episodefile/{file['id']}")
        assert gone.status_code == 404 and gone.json()["message"] == "Episode file not found"
        missing = client.get("/api/v3/episodefile")
        assert missing.status_code == 400
        if (CONTRACTS / "sonarr/error_400_episodefile.json").exists():
            assert missing.json() == json.loads((CONTRACTS / "sonarr/error_400_episodefile.json").read_text())

        rest = [f["id"] for f in api.get_episode_file(series["id"], series=True)][:3]
        assert client.request("DELETE", "/api/v3/episodefile/bulk", json={"episodeFileIds": rest}).status_code == 200
    assert api.get_series(series["id"])["statistics"]["episodeFileCount"] == (
        series["statistics"]["episodeFileCount"] - 4
    )


def test_sonarr_episode_monitoring(sonarr_srv: ThreadedServer) -> None:
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    series = next(s for s in api.get_series() if s["monitored"])
    ids = [e["id"] for e in api.get_episode(series["id"], series=True)][:2]

    changed = api.upd_episode_monitor(ids, monitored=False)

    assert [(e["id"], e["monitored"]) for e in changed] == [(i, False) for i in ids]
    assert [e["monitored"] for e in api.get_episode(series["id"], series=True)][:3] == [False, False, True]
    with raw(sonarr_srv, SONARR_KEY) as client:
        body = {"episodeIds": ids, "monitored": True}
        r = client.put("/api/v3/episode/monitor", json=body)
        assert r.status_code == 202 and all(e["monitored"] for e in r.json())

    # Unmonitoring a season through the series resource takes its episodes along.
    series = api.get_series(series["id"])
    series["seasons"][0]["monitored"] = False
    updated = api.upd_series(series)
    assert updated["seasons"][0]["monitored"] is False
    season_one = [e for e in api.get_episode(series["id"], series=True) if e["seasonNumber"] == 1]
    assert season_one and not any(e["monitored"] for e in season_one)


def test_sonarr_delete_series_then_add_it_back(sonarr_srv: ThreadedServer) -> None:
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    series = api.get_series()[1]

    api.del_series(series["id"], delete_files=True)

    with pytest.raises(PyarrResourceNotFound):
        api.get_series(series["id"])
    with pytest.raises(PyarrResourceNotFound):
        api.del_series(series["id"], delete_files=True)
    (deleted,) = sstate(sonarr_srv).deletes
    assert (deleted["kind"], deleted["tvdbId"], deleted["deleteFiles"]) == ("series", series["tvdbId"], True)
    assert deleted["size"] == series["statistics"]["sizeOnDisk"]

    (found,) = api.lookup_series(id_=series["tvdbId"])
    assert "id" not in found
    added = api.add_series(found, 4, 1, "/data/tv", search_for_missing_episodes=True)
    assert added["tvdbId"] == series["tvdbId"] and added["id"] != series["id"]
    assert added["path"] == series["path"]
    assert added["statistics"]["episodeFileCount"] == 0
    assert added["statistics"]["totalEpisodeCount"] == series["statistics"]["totalEpisodeCount"]
    (search,) = sstate(sonarr_srv).commands_named("MissingEpisodeSearch")
    assert search["body"]["seriesId"] == added["id"]
    with pytest.raises(PyarrBadRequest):
        api.add_series(found, 4, 1, "/data/tv")

    with raw(sonarr_srv, SONARR_KEY) as client:
        r = client.delete(f"/api/v3/series/{added['id']}", params={"addImportListExclusion": "true"})
        assert r.status_code == 200
        assert client.get("/api/v3/importlistexclusion").json() == [
            {"id": 1, "tvdbId": series["tvdbId"], "title": series["title"]}
        ]
        dup = client.post("/api/v3/series", json={"title": "x", "tvdbId": 1, "qualityProfileId": 99})
        assert {f["propertyName"] for f in dup.json()} == {"QualityProfileId", "Path", "RootFolderPath"}


def test_sonarr_rejects_bad_keys_and_honours_faults(sonarr_srv: ThreadedServer) -> None:
    with pytest.raises(PyarrUnauthorizedError):
        SonarrAPI(sonarr_srv.url, "nope").get_series()
    api = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    assert api.get_system_status()["appName"] == "Sonarr"
    assert {d["path"] for d in api.get_disk_space()} >= {"/", sonarr.ROOT_FOLDER}
    sonarr_srv.app[FAULTS].revoke_auth = True
    with pytest.raises(PyarrUnauthorizedError):
        api.get_series()


# ----------------------------------------------------------------------------------- contract shapes


def _schema_properties(service: str, name: str) -> set[str]:
    spec = json.loads((CONTRACTS / service / "openapi.json").read_text())
    return set(spec["components"]["schemas"][name]["properties"])


@pytest.mark.skipif(not CONTRACTS.exists(), reason="needs the verbatim OpenAPI specs in tests/contracts")
def test_every_emitted_field_is_in_the_upstream_openapi(radarr_srv: ThreadedServer, sonarr_srv: ThreadedServer) -> None:
    r = RadarrAPI(radarr_srv.url, RADARR_KEY)
    s = SonarrAPI(sonarr_srv.url, SONARR_KEY)
    movie = r.get_movie()[0]
    series = s.get_series()[0]
    episode = s.get_episode(series["id"], series=True)[0]
    checks: list[tuple[str, str, dict[str, Any]]] = [
        ("radarr", "MovieResource", movie),
        ("radarr", "MovieFileResource", movie["movieFile"]),
        ("radarr", "SystemResource", r.get_system_status()),
        ("radarr", "DiskSpaceResource", r.get_disk_space()[0]),
        ("radarr", "RootFolderResource", r.get_root_folder()[0]),
        ("radarr", "QualityProfileResource", r.get_quality_profile()[0]),
        ("sonarr", "SeriesResource", series),
        ("sonarr", "SeasonResource", series["seasons"][0]),
        ("sonarr", "SeasonStatisticsResource", series["seasons"][0]["statistics"]),
        ("sonarr", "SeriesStatisticsResource", series["statistics"]),
        ("sonarr", "EpisodeResource", episode),
        ("sonarr", "EpisodeFileResource", s.get_episode_file(episode["episodeFileId"])),
        ("sonarr", "SystemResource", s.get_system_status()),
        ("sonarr", "DiskSpaceResource", s.get_disk_space()[0]),
    ]
    for service, schema, resource in checks:
        unknown = set(resource) - _schema_properties(service, schema)
        assert not unknown, f"{service} {schema} has fields the real API does not: {unknown}"
    example = json.loads((CONTRACTS / "radarr/movie.json").read_text())[0]
    assert {k for k in example if k != "collection"} <= set(movie)
