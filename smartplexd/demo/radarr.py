"""A simulated Radarr (API v3) serving one instance's view of a :class:`~smartplexd.demo.universe.Universe`.

``create_app(universe, instance="radarr4k")`` holds only the movies whose ``Movie.radarr`` is that
instance; every movie of the universe can be looked up and added (the universe plays TMDB). Behaviour
follows tests/contracts/radarr.md: whole-catalogue ``GET /api/v3/movie`` (no paging), deletes with
``deleteFiles``/``addImportExclusion``, ``POST /api/v3/movie`` with Servarr validation errors, commands.

Tests read and change ``app[ARR_STATE]`` (a :class:`RadarrState`); another process uses ``/_sim/arr/*``
(see :mod:`smartplexd.demo.arr`) plus ``POST /_sim/arr/add {"tmdbId": N, "hasFile"?: true}`` and
``POST /_sim/arr/remove {"id": N}``.

Run one for a benchmark::

    python -m smartplexd.demo.radarr --port 7878 --movies 20000 --seed 1
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from smartplexd.demo import faults as faults_mod
from smartplexd.demo.arr import (
    API,
    ARR_STATE,
    ArrState,
    add_exclusion_routes,
    error,
    install,
    iso,
    json_body,
    json_bytes_response,
    json_response,
    not_found,
    path_id,
    query_bool,
    query_int,
    query_ints,
    query_value,
    validation_error,
    validation_failure,
)
from smartplexd.demo.universe import QUALITY_PROFILES, Movie, Universe, generate

ROOT_FOLDER = "/data/movies"

# Radarr quality ids: (name, source, resolution)
_QUALITIES = {
    3: ("WEBDL-1080p", "webdl", 1080),
    7: ("Bluray-1080p", "bluray", 1080),
    19: ("Bluray-2160p", "bluray", 2160),
}
_RELEASE_GROUPS = ("SPARKS", "FLUX", "NTb", "playWEB", "FraMeSToR")
_ENGLISH = {"id": 1, "name": "English"}


@dataclass(slots=True)
class RadarrMovie:
    id: int
    source: Movie
    """The universe movie this is (metadata: title, year, ids)."""
    monitored: bool
    quality_profile_id: int
    tags: list[int]
    added: float
    path: str
    root_folder_path: str
    minimum_availability: str = "released"
    file_id: int = 0


@dataclass(slots=True)
class RadarrMovieFile:
    id: int
    movie_id: int
    path: str
    size: int
    date_added: float
    quality_id: int
    release_group: str


@dataclass(slots=True)
class _Exclusion:
    id: int
    tmdb_id: int
    title: str
    year: int

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "tmdbId": self.tmdb_id, "movieTitle": self.title, "movieYear": self.year}


class RadarrState(ArrState):
    """One Radarr instance: its movies, movie files, import exclusions and the shared ArrState parts.

    ``deletes`` records every API deletion (``kind`` ``movie`` or ``moviefile``); deleting files frees
    their bytes on the disk reported by ``/api/v3/diskspace``.
    """

    def __init__(self, universe: Universe, *, instance: str = "radarr", api_key: str = "demo-radarr-key") -> None:
        mine = [m for m in universe.movies if m.radarr == instance]
        super().__init__(
            app_name="Radarr",
            instance=instance,
            api_key=api_key,
            version="5.14.0.9383",
            root_folder=ROOT_FOLDER,
            used_bytes=sum(m.size for m in mine),
            render=self.render_movie,
            tag_labels=(t for m in mine for t in m.tags),
        )
        self.universe = universe
        self.catalogue: dict[int, Movie] = {m.tmdb: m for m in universe.movies}
        """What lookups and adds can find, by tmdb id (the universe plays TMDB)."""
        self.movies: dict[int, RadarrMovie] = {}
        self.files: dict[int, RadarrMovieFile] = {}
        self.by_tmdb: dict[int, int] = {}
        self.exclusions: dict[int, _Exclusion] = {}
        self._next_movie_id = 1
        # File ids run on their own sequence, as in real Radarr, so a client that confuses a movie id
        # with a movie-file id gets a wrong answer rather than a lucky one.
        self._next_file_id = 1001
        self._next_exclusion_id = 1
        for m in mine:
            self.add(
                m.tmdb,
                monitored=m.monitored,
                quality_profile_id=m.quality_profile_id,
                tags=[self.tag_id(t) for t in m.tags],
                added=m.added_at,
                has_file=True,
            )

    # ------------------------------------------------------------------------------------ mutations
    def add(
        self,
        tmdb_id: int,
        *,
        monitored: bool = True,
        quality_profile_id: int = 4,
        tags: list[int] | None = None,
        root_folder_path: str = ROOT_FOLDER,
        path: str | None = None,
        minimum_availability: str = "released",
        added: float | None = None,
        has_file: bool = False,
    ) -> RadarrMovie:
        """Add the universe movie ``tmdb_id`` (KeyError if the universe has none, ValueError if this
        instance already holds it). ``has_file`` gives it its universe file, as if imported."""
        source = self.catalogue[tmdb_id]
        if tmdb_id in self.by_tmdb:
            raise ValueError(f"tmdb {tmdb_id} is already in {self.instance}")
        folder = os.path.dirname(source.file) if root_folder_path == ROOT_FOLDER else None
        movie = RadarrMovie(
            id=self._next_movie_id,
            source=source,
            monitored=monitored,
            quality_profile_id=quality_profile_id,
            tags=list(tags or []),
            added=time.time() if added is None else added,
            path=path or folder or f"{root_folder_path.rstrip('/')}/{source.title} ({source.year})",
            root_folder_path=root_folder_path,
            minimum_availability=minimum_availability,
        )
        self._next_movie_id += 1
        self.movies[movie.id] = movie
        self.by_tmdb[tmdb_id] = movie.id
        if has_file:
            file = RadarrMovieFile(
                id=self._next_file_id,
                movie_id=movie.id,
                path=f"{movie.path}/{os.path.basename(source.file)}",
                size=source.size,
                date_added=movie.added + 3600,
                quality_id=19 if source.quality_profile_id == 5 else (7 if movie.id % 3 else 3),
                release_group=_RELEASE_GROUPS[movie.id % len(_RELEASE_GROUPS)],
            )
            self._next_file_id += 1
            self.files[file.id] = file
            movie.file_id = file.id
        self.cache.invalidate(movie.id)
        return movie

    def remove(self, movie_id: int) -> RadarrMovie:
        """Drop a movie without recording anything (removed outside the API). KeyError if unknown."""
        movie = self.movies.pop(movie_id)
        del self.by_tmdb[movie.source.tmdb]
        self.files.pop(movie.file_id, None)
        self.cache.invalidate(movie_id)
        return movie

    def delete_movie(self, movie_id: int, *, delete_files: bool = False, add_exclusion: bool = False) -> None:
        """``DELETE /api/v3/movie/{id}``: remove, free the file's space when ``delete_files``, exclude."""
        movie = self.movies[movie_id]
        size = self.files[movie.file_id].size if movie.file_id in self.files else 0
        self.remove(movie_id)
        if delete_files and size:
            self.release_space(movie.path, size)
        if add_exclusion and not any(e.tmdb_id == movie.source.tmdb for e in self.exclusions.values()):
            exclusion = _Exclusion(self._next_exclusion_id, movie.source.tmdb, movie.source.title, movie.source.year)
            self._next_exclusion_id += 1
            self.exclusions[exclusion.id] = exclusion
        self.record_delete(
            "movie",
            id=movie_id,
            tmdbId=movie.source.tmdb,
            title=movie.source.title,
            deleteFiles=delete_files,
            addImportExclusion=add_exclusion,
            size=size if delete_files else 0,
        )

    def delete_file(self, file_id: int) -> None:
        """``DELETE /api/v3/moviefile/{id}``: the movie stays, without a file. KeyError if unknown."""
        file = self.files.pop(file_id)
        movie = self.movies[file.movie_id]
        movie.file_id = 0
        self.release_space(file.path, file.size)
        self.cache.invalidate(movie.id)
        self.record_delete(
            "moviefile",
            id=file_id,
            movieId=movie.id,
            tmdbId=movie.source.tmdb,
            path=file.path,
            size=file.size,
        )

    # -------------------------------------------------------------------------------------- queries
    def movie_by_tmdb(self, tmdb_id: int) -> RadarrMovie | None:
        movie_id = self.by_tmdb.get(tmdb_id)
        return None if movie_id is None else self.movies[movie_id]

    @property
    def searches(self) -> list[dict[str, Any]]:
        """Recorded ``MoviesSearch`` commands (explicit, or queued by an add with searchForMovie)."""
        return self.commands_named("MoviesSearch")

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            "movieCount": len(self.movies),
            "movieFileCount": len(self.files),
            "exclusions": [e.resource() for e in self.exclusions.values()],
        }

    # ------------------------------------------------------------------------------------ rendering
    def render_file(self, file_id: int) -> dict[str, Any]:
        file = self.files[file_id]
        name, source, resolution = _QUALITIES[file.quality_id]
        return {
            "id": file.id,
            "movieId": file.movie_id,
            "relativePath": os.path.basename(file.path),
            "path": file.path,
            "size": file.size,
            "dateAdded": iso(file.date_added),
            "releaseGroup": file.release_group,
            "edition": "",
            "languages": [_ENGLISH],
            "quality": {
                "quality": {
                    "id": file.quality_id,
                    "name": name,
                    "source": source,
                    "resolution": resolution,
                    "modifier": "none",
                },
                "revision": {"version": 1, "real": 0, "isRepack": False},
            },
            "customFormats": [],
            "customFormatScore": 0,
            "indexerFlags": 0,
            "mediaInfo": {
                "audioChannels": 5.1,
                "audioCodec": "DTS" if source == "bluray" else "EAC3",
                "audioLanguages": "eng",
                "videoCodec": "x265" if resolution == 2160 else "x264",
                "videoDynamicRange": "HDR" if resolution == 2160 else "",
                "resolution": "3840x2160" if resolution == 2160 else "1920x1080",
                "runTime": "1:40:00",
                "subtitles": "eng",
            },
            "qualityCutoffNotMet": False,
        }

    def render_movie(self, movie_id: int) -> dict[str, Any]:
        movie = self.movies[movie_id]
        out = _metadata(movie.source)
        file = self.files.get(movie.file_id)
        size = file.size if file else 0
        out.update(
            {
                "id": movie.id,
                "sizeOnDisk": size,
                "path": movie.path,
                "qualityProfileId": movie.quality_profile_id,
                "hasFile": file is not None,
                "movieFileId": movie.file_id,
                "monitored": movie.monitored,
                "minimumAvailability": movie.minimum_availability,
                "folderName": movie.path,
                "rootFolderPath": movie.root_folder_path,
                "tags": list(movie.tags),
                "added": iso(movie.added),
            }
        )
        if file is not None:
            out["movieFile"] = self.render_file(file.id)
        out["statistics"] = {
            "movieFileCount": 1 if file else 0,
            "sizeOnDisk": size,
            "releaseGroups": [file.release_group] if file else [],
        }
        return out

    def lookup(self, term: str) -> list[dict[str, Any]]:
        """``GET /movie/lookup?term=``: ``tmdb:N``, ``imdb:ttN`` or words of the title. Movies this
        instance holds come back as library resources (with ``id``), others as bare metadata."""
        term = term.strip()
        if term.lower().startswith("tmdb:"):
            try:
                found = [self.catalogue[int(term[5:])]] if int(term[5:]) in self.catalogue else []
            except ValueError:
                found = []
        elif term.lower().startswith("imdb:"):
            found = [m for m in self.catalogue.values() if m.imdb == term[5:].strip()]
        else:
            words = term.lower().split()
            found = [m for m in self.catalogue.values() if all(w in m.title.lower() for w in words)][:20]
        return [self.lookup_resource(m) for m in found]

    def lookup_resource(self, source: Movie) -> dict[str, Any]:
        movie = self.movie_by_tmdb(source.tmdb)
        if movie is not None:
            return self.render_movie(movie.id)
        out = _metadata(source)
        out.update(
            {
                "sizeOnDisk": 0,
                "qualityProfileId": 0,
                "hasFile": False,
                "movieFileId": 0,
                "monitored": False,
                "minimumAvailability": "tba",
                "folder": f"{source.title} ({source.year})",
                "tags": [],
                "added": "0001-01-01T00:00:00Z",
            }
        )
        return out


def _metadata(source: Movie) -> dict[str, Any]:
    """The TMDB-derived part of a MovieResource."""
    release = f"{source.year}-06-01T00:00:00Z"
    return {
        "title": source.title,
        "originalTitle": source.title,
        "originalLanguage": _ENGLISH,
        "alternateTitles": [],
        "secondaryYearSourceId": 0,
        "sortTitle": source.title.lower(),
        "status": "released",
        "overview": f"{source.title} ({source.year}), a film of the simulated universe.",
        "inCinemas": f"{source.year}-03-01T00:00:00Z",
        "physicalRelease": release,
        "digitalRelease": release,
        "releaseDate": release,
        "images": [
            {
                "coverType": "poster",
                "url": f"/MediaCover/{source.tmdb}/poster.jpg",
                "remoteUrl": f"https://image.tmdb.org/t/p/original/{source.tmdb}.jpg",
            }
        ],
        "website": "",
        "year": source.year,
        "youTubeTrailerId": "",
        "studio": "Simulated Pictures",
        "isAvailable": True,
        "runtime": 100,
        "cleanTitle": "".join(ch for ch in source.title.lower() if ch.isalnum()),
        "imdbId": source.imdb,
        "tmdbId": source.tmdb,
        "titleSlug": str(source.tmdb),
        "certification": "PG-13",
        "genres": ["Drama"],
        "keywords": [],
        "ratings": {"tmdb": {"votes": 1000, "value": 7.0, "type": "user"}},
        "popularity": 10.0,
    }


# ------------------------------------------------------------------------------------------- routes


def _state(request: web.Request) -> RadarrState:
    state = request.app[ARR_STATE]
    assert isinstance(state, RadarrState)
    return state


async def _movies(request: web.Request) -> web.Response:
    state = _state(request)
    tmdb_id = query_int(request, "tmdbId")
    if tmdb_id is not None:
        movie = state.movie_by_tmdb(tmdb_id)
        return json_bytes_response(b"[" + state.cache.item(movie.id) + b"]" if movie else b"[]")
    return json_bytes_response(state.cache.all(state.movies))


async def _movie(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.movies:
        raise not_found("Movie", path_id(request))
    return json_bytes_response(state.cache.item(path_id(request)))


async def _update_movie(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise error(400, "Request body must be a MovieResource object")
    movie_id = path_id(request) if "id" in request.match_info else int(body.get("id") or 0)
    movie = state.movies.get(movie_id)
    if movie is None:
        raise not_found("Movie", movie_id)
    profile = body.get("qualityProfileId", movie.quality_profile_id)
    if profile not in QUALITY_PROFILES:
        raise validation_error(
            [
                validation_failure(
                    "QualityProfileId",
                    "Quality Profile does not exist",
                    profile,
                    "QualityProfileExistsValidator",
                )
            ]
        )
    movie.monitored = bool(body.get("monitored", movie.monitored))
    movie.quality_profile_id = int(profile)
    movie.tags = [int(t) for t in body.get("tags", movie.tags)]
    movie.minimum_availability = str(body.get("minimumAvailability", movie.minimum_availability))
    if body.get("path") and query_bool(request, "moveFiles"):
        movie.path = str(body["path"])
    state.cache.invalidate(movie.id)
    return json_bytes_response(state.cache.item(movie.id), status=202)


async def _delete_movie(request: web.Request) -> web.Response:
    state = _state(request)
    movie_id = path_id(request)
    if movie_id not in state.movies:
        raise not_found("Movie", movie_id)
    state.delete_movie(
        movie_id,
        delete_files=query_bool(request, "deleteFiles"),
        add_exclusion=query_bool(request, "addImportExclusion"),
    )
    return web.Response(status=200)


async def _delete_movies_bulk(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    ids = [int(i) for i in (body or {}).get("movieIds") or []]
    for movie_id in ids:
        if movie_id in state.movies:
            state.delete_movie(
                movie_id,
                delete_files=bool(body.get("deleteFiles")),
                add_exclusion=bool(body.get("addImportExclusion")),
            )
    return web.Response(status=200)


async def _add_movie(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise error(400, "Request body must be a MovieResource object")
    failures = []
    tmdb_id = body.get("tmdbId") or 0
    profile = body.get("qualityProfileId") or 0
    root = body.get("rootFolderPath") or ""
    path = body.get("path") or ""
    if not isinstance(profile, int) or profile <= 0:
        failures.append(
            validation_failure(
                "QualityProfileId",
                "'Quality Profile Id' must be greater than '0'.",
                profile,
                "GreaterThanValidator",
            )
        )
    elif profile not in QUALITY_PROFILES:
        failures.append(
            validation_failure(
                "QualityProfileId", "Quality Profile does not exist", profile, "QualityProfileExistsValidator"
            )
        )
    if not root and not path:
        failures.append(validation_failure("Path", "Invalid Path", path, "PathValidator"))
        failures.append(validation_failure("RootFolderPath", "Invalid Path", root, "PathValidator"))
    elif (root and not str(root).startswith("/")) or (path and not str(path).startswith("/")):
        failures.append(
            validation_failure("RootFolderPath" if root else "Path", "Invalid Path", root or path, "PathValidator")
        )
    if not isinstance(tmdb_id, int) or tmdb_id <= 0:
        failures.append(validation_failure("TmdbId", "'Tmdb Id' must not be empty.", tmdb_id, "NotEmptyValidator"))
    elif tmdb_id in state.by_tmdb:
        failures.append(
            validation_failure("TmdbId", "This movie has already been added", tmdb_id, "MovieExistsValidator")
        )
    if failures:
        raise validation_error(failures)
    if tmdb_id not in state.catalogue:
        raise validation_error(
            [validation_failure("TmdbId", "A movie with this ID was not found", tmdb_id, "MovieNotFoundValidator")]
        )
    movie = state.add(
        tmdb_id,
        monitored=bool(body.get("monitored", True)),
        quality_profile_id=profile,
        tags=[int(t) for t in body.get("tags") or []],
        root_folder_path=str(root or os.path.dirname(str(path).rstrip("/"))),
        path=str(path) or None,
        minimum_availability=str(body.get("minimumAvailability") or "released"),
    )
    options = body.get("addOptions") or {}
    if options.get("searchForMovie"):
        # Radarr queues this itself once the new movie is scanned.
        state.record_command("MoviesSearch", {"movieIds": [movie.id]}, trigger="unspecified")
    return json_bytes_response(state.cache.item(movie.id), status=201)


async def _lookup(request: web.Request) -> web.Response:
    term = query_value(request, "term") or ""
    return json_response(_state(request).lookup(term))


async def _lookup_tmdb(request: web.Request) -> web.Response:
    state = _state(request)
    tmdb_id = query_int(request, "tmdbId")
    if tmdb_id is None or tmdb_id not in state.catalogue:
        raise error(404, "Movie not found")
    return json_response(state.lookup_resource(state.catalogue[tmdb_id]))


async def _movie_files(request: web.Request) -> web.Response:
    state = _state(request)
    movie_ids = query_ints(request, "movieId")
    file_ids = query_ints(request, "movieFileIds")
    if not movie_ids and not file_ids:
        raise error(400, "movieId or movieFileIds must be provided")
    if movie_ids:
        file_ids = [state.movies[m].file_id for m in movie_ids if m in state.movies]
    return json_response([state.render_file(f) for f in file_ids if f in state.files])


async def _movie_file(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.files:
        raise not_found("MovieFile", path_id(request))
    return json_response(state.render_file(path_id(request)))


async def _delete_movie_file(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.files:
        raise error(404, "Movie file not found")
    state.delete_file(path_id(request))
    return web.Response(status=200)


async def _delete_movie_files_bulk(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    for file_id in [int(i) for i in (body or {}).get("movieFileIds") or []]:
        if file_id in state.files:
            state.delete_file(file_id)
    return web.Response(status=200)


async def _sim_add(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    try:
        movie = state.add(int(body["tmdbId"]), has_file=bool(body.get("hasFile", True)))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"cannot add: {exc!r}"}, 400)
    return json_response(state.render_movie(movie.id))


async def _sim_remove(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        _state(request).remove(int(body["id"]))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"no such movie: {exc!r}"}, 404)
    return json_response({})


def create_app(
    universe: Universe,
    *,
    instance: str = "radarr",
    api_key: str = "demo-radarr-key",
    faults: faults_mod.Faults | None = None,
) -> web.Application:
    """A Radarr holding the universe movies whose ``radarr`` is ``instance``."""
    app = web.Application()
    faults_mod.install(app, faults)
    install(app, RadarrState(universe, instance=instance, api_key=api_key))
    r = app.router
    r.add_get(f"{API}/movie", _movies)
    r.add_post(f"{API}/movie", _add_movie)
    r.add_put(f"{API}/movie", _update_movie)
    r.add_get(f"{API}/movie/lookup", _lookup)
    r.add_get(f"{API}/movie/lookup/tmdb", _lookup_tmdb)
    r.add_delete(f"{API}/movie/editor", _delete_movies_bulk)
    r.add_get(API + r"/movie/{id:\d+}", _movie)
    r.add_put(API + r"/movie/{id:\d+}", _update_movie)
    r.add_delete(API + r"/movie/{id:\d+}", _delete_movie)
    r.add_get(f"{API}/moviefile", _movie_files)
    r.add_delete(f"{API}/moviefile/bulk", _delete_movie_files_bulk)
    r.add_get(API + r"/moviefile/{id:\d+}", _movie_file)
    r.add_delete(API + r"/moviefile/{id:\d+}", _delete_movie_file)
    add_exclusion_routes(app, "exclusions")
    r.add_post("/_sim/arr/add", _sim_add)
    r.add_post("/_sim/arr/remove", _sim_remove)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated Radarr on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.radarr", description=main.__doc__)
    parser.add_argument("--port", type=int, default=7878)
    parser.add_argument("--movies", type=int, default=200)
    parser.add_argument("--shows", type=int, default=20, help="shows in the universe (keeps ids in step with Plex)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--now", type=int, default=None, help="epoch seconds anchoring the universe's dates")
    parser.add_argument("--instance", default="radarr")
    parser.add_argument("--api-key", default="demo-radarr-key")
    args = parser.parse_args(argv)
    universe = generate(seed=args.seed, movies=args.movies, shows=args.shows, now=args.now)
    app = create_app(universe, instance=args.instance, api_key=args.api_key)
    state = app[ARR_STATE]
    assert isinstance(state, RadarrState)
    print(f"radarr ({args.instance}): {len(state.movies)} movies on http://127.0.0.1:{args.port}")
    state.cache.all(state.movies)  # render the catalogue now, not on the first benchmark request
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
