"""A simulated Sonarr (API v3, as served by Sonarr v4) for one instance's view of a
:class:`~smartplexd.demo.universe.Universe`.

``create_app(universe, instance="sonarr")`` holds the universe shows whose ``Show.sonarr`` is that
instance, with one episode file per universe episode; every universe show can be looked up and added
(the universe plays TVDB). Behaviour follows tests/contracts/sonarr.md: whole-catalogue
``GET /api/v3/series``, episodes and episode files per series, ``PUT /api/v3/episode/monitor`` (202 with
the episodes), deletes with ``deleteFiles``/``addImportListExclusion``, Servarr validation errors.
Series and season ``statistics`` are computed from the episodes and files, so they stay right when
files are deleted or episodes unmonitored.

Tests read and change ``app[ARR_STATE]`` (a :class:`SonarrState`); another process uses ``/_sim/arr/*``
(see :mod:`smartplexd.demo.arr`) plus ``POST /_sim/arr/add {"tvdbId": N, "hasFile"?: true}`` and
``POST /_sim/arr/remove {"id": N}``.

Run one for a benchmark::

    python -m smartplexd.demo.sonarr --port 8989 --shows 5000 --seed 1
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
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
from smartplexd.demo.universe import DAY, QUALITY_PROFILES, Show, Universe, generate

ROOT_FOLDER = "/data/tv"

# Sonarr quality ids: (name, source, resolution)
_QUALITIES = {
    3: ("WEBDL-1080p", "web", 1080),
    7: ("Bluray-1080p", "bluray", 1080),
    9: ("HDTV-1080p", "television", 1080),
}
_RELEASE_GROUPS = ("NTb", "FLUX", "NOGRP", "KiNGS", "EDITH")
_ENGLISH = {"id": 1, "name": "English"}


@dataclass(slots=True)
class SonarrEpisode:
    id: int
    series_id: int
    season_number: int
    episode_number: int
    title: str
    tvdb_id: int
    air_date: float
    monitored: bool
    file_id: int = 0


@dataclass(slots=True)
class SonarrEpisodeFile:
    id: int
    series_id: int
    season_number: int
    episode_id: int
    path: str
    relative_path: str
    size: int
    date_added: float
    quality_id: int
    release_group: str


@dataclass(slots=True)
class SonarrSeries:
    id: int
    source: Show
    """The universe show this is (metadata: title, year, ids, seasons)."""
    monitored: bool
    quality_profile_id: int
    tags: list[int]
    added: float
    path: str
    root_folder_path: str
    season_monitored: dict[int, bool]
    episode_ids: list[int] = field(default_factory=list)
    season_folder: bool = True
    series_type: str = "standard"


@dataclass(slots=True)
class _Exclusion:
    id: int
    tvdb_id: int
    title: str

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "tvdbId": self.tvdb_id, "title": self.title}


class SonarrState(ArrState):
    """One Sonarr instance: series, episodes, episode files, import-list exclusions, shared ArrState.

    ``deletes`` records every API deletion (``kind`` ``series`` or ``episodefile``); deleting files frees
    their bytes on the disk reported by ``/api/v3/diskspace``.
    """

    def __init__(self, universe: Universe, *, instance: str = "sonarr", api_key: str = "demo-sonarr-key") -> None:
        mine = [s for s in universe.shows if s.sonarr == instance]
        super().__init__(
            app_name="Sonarr",
            instance=instance,
            api_key=api_key,
            version="4.0.14.2939",
            root_folder=ROOT_FOLDER,
            used_bytes=sum(s.size for s in mine),
            render=self.render_series,
            tag_labels=(t for s in mine for t in s.tags),
        )
        self.universe = universe
        self.catalogue: dict[int, Show] = {s.tvdb: s for s in universe.shows}
        """What lookups and adds can find, by tvdb id (the universe plays TVDB)."""
        self.series: dict[int, SonarrSeries] = {}
        self.episodes: dict[int, SonarrEpisode] = {}
        self.files: dict[int, SonarrEpisodeFile] = {}
        self.by_tvdb: dict[int, int] = {}
        self.exclusions: dict[int, _Exclusion] = {}
        self._next_series_id = 1
        self._next_episode_id = 1
        # Own sequence, as in real Sonarr: an episode id used as a file id must miss.
        self._next_file_id = 5001
        self._next_exclusion_id = 1
        for show in mine:
            self.add(
                show.tvdb,
                monitored=show.monitored,
                quality_profile_id=show.quality_profile_id,
                tags=[self.tag_id(t) for t in show.tags],
                added=show.added_at,
                has_files=True,
            )

    # ------------------------------------------------------------------------------------ mutations
    def add(
        self,
        tvdb_id: int,
        *,
        monitored: bool = True,
        quality_profile_id: int = 4,
        tags: list[int] | None = None,
        root_folder_path: str = ROOT_FOLDER,
        path: str | None = None,
        season_monitored: dict[int, bool] | None = None,
        added: float | None = None,
        has_files: bool = False,
    ) -> SonarrSeries:
        """Add the universe show ``tvdb_id`` with all its episodes (KeyError if the universe has none,
        ValueError if already held). ``has_files`` gives every episode its universe file."""
        source = self.catalogue[tvdb_id]
        if tvdb_id in self.by_tvdb:
            raise ValueError(f"tvdb {tvdb_id} is already in {self.instance}")
        seasons = {s.index: monitored for s in source.seasons}
        seasons.update(season_monitored or {})
        series = SonarrSeries(
            id=self._next_series_id,
            source=source,
            monitored=monitored,
            quality_profile_id=quality_profile_id,
            tags=list(tags or []),
            added=time.time() if added is None else added,
            path=path or f"{root_folder_path.rstrip('/')}/{source.title}",
            root_folder_path=root_folder_path,
            season_monitored=seasons,
        )
        self._next_series_id += 1
        for season in source.seasons:
            for ep in season.episodes:
                episode = SonarrEpisode(
                    id=self._next_episode_id,
                    series_id=series.id,
                    season_number=season.index,
                    episode_number=ep.index,
                    title=ep.title,
                    tvdb_id=10_000_000 + ep.rating_key,
                    air_date=ep.added_at - DAY,
                    monitored=seasons[season.index],
                )
                self._next_episode_id += 1
                self.episodes[episode.id] = episode
                series.episode_ids.append(episode.id)
                if has_files:
                    relative = f"Season {season.index:02d}/{os.path.basename(ep.file)}"
                    file = SonarrEpisodeFile(
                        id=self._next_file_id,
                        series_id=series.id,
                        season_number=season.index,
                        episode_id=episode.id,
                        path=f"{series.path}/{relative}",
                        relative_path=relative,
                        size=ep.size,
                        date_added=ep.added_at,
                        quality_id=(3, 7, 9)[episode.id % 3],
                        release_group=_RELEASE_GROUPS[series.id % len(_RELEASE_GROUPS)],
                    )
                    self._next_file_id += 1
                    self.files[file.id] = file
                    episode.file_id = file.id
        self.series[series.id] = series
        self.by_tvdb[tvdb_id] = series.id
        self.cache.invalidate(series.id)
        return series

    def remove(self, series_id: int) -> SonarrSeries:
        """Drop a series without recording anything (removed outside the API). KeyError if unknown."""
        series = self.series.pop(series_id)
        del self.by_tvdb[series.source.tvdb]
        for episode_id in series.episode_ids:
            episode = self.episodes.pop(episode_id)
            self.files.pop(episode.file_id, None)
        self.cache.invalidate(series_id)
        return series

    def delete_series(self, series_id: int, *, delete_files: bool = False, add_exclusion: bool = False) -> None:
        """``DELETE /api/v3/series/{id}``: remove it, free its files' space when ``delete_files``."""
        series = self.series[series_id]
        size = self.size_on_disk(series_id)
        self.remove(series_id)
        if delete_files and size:
            self.release_space(series.path, size)
        if add_exclusion and not any(e.tvdb_id == series.source.tvdb for e in self.exclusions.values()):
            exclusion = _Exclusion(self._next_exclusion_id, series.source.tvdb, series.source.title)
            self._next_exclusion_id += 1
            self.exclusions[exclusion.id] = exclusion
        self.record_delete(
            "series",
            id=series_id,
            tvdbId=series.source.tvdb,
            title=series.source.title,
            deleteFiles=delete_files,
            addImportListExclusion=add_exclusion,
            size=size if delete_files else 0,
        )

    def delete_file(self, file_id: int) -> None:
        """``DELETE /api/v3/episodefile/{id}``: its episode stays (still monitored), without a file."""
        file = self.files.pop(file_id)
        self.episodes[file.episode_id].file_id = 0
        self.release_space(file.path, file.size)
        self.cache.invalidate(file.series_id)
        self.record_delete(
            "episodefile",
            id=file_id,
            seriesId=file.series_id,
            tvdbId=self.series[file.series_id].source.tvdb,
            seasonNumber=file.season_number,
            episodeIds=[file.episode_id],
            path=file.path,
            size=file.size,
        )

    def set_monitored(self, episode_ids: list[int], monitored: bool) -> list[SonarrEpisode]:
        """Monitor or unmonitor episodes; unknown ids are skipped, as Sonarr does."""
        changed = [self.episodes[i] for i in episode_ids if i in self.episodes]
        for episode in changed:
            episode.monitored = monitored
            self.cache.invalidate(episode.series_id)
        return changed

    # -------------------------------------------------------------------------------------- queries
    def series_by_tvdb(self, tvdb_id: int) -> SonarrSeries | None:
        series_id = self.by_tvdb.get(tvdb_id)
        return None if series_id is None else self.series[series_id]

    def size_on_disk(self, series_id: int) -> int:
        return sum(
            self.files[e.file_id].size
            for e in (self.episodes[i] for i in self.series[series_id].episode_ids)
            if e.file_id
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            **super().snapshot(),
            "seriesCount": len(self.series),
            "episodeCount": len(self.episodes),
            "episodeFileCount": len(self.files),
            "exclusions": [e.resource() for e in self.exclusions.values()],
        }

    # ------------------------------------------------------------------------------------ rendering
    def render_file(self, file_id: int) -> dict[str, Any]:
        file = self.files[file_id]
        name, source, resolution = _QUALITIES[file.quality_id]
        return {
            "id": file.id,
            "seriesId": file.series_id,
            "seasonNumber": file.season_number,
            "relativePath": file.relative_path,
            "path": file.path,
            "size": file.size,
            "dateAdded": iso(file.date_added),
            "releaseGroup": file.release_group,
            "languages": [_ENGLISH],
            "quality": {
                "quality": {"id": file.quality_id, "name": name, "source": source, "resolution": resolution},
                "revision": {"version": 1, "real": 0, "isRepack": False},
            },
            "customFormats": [],
            "customFormatScore": 0,
            "indexerFlags": 0,
            "releaseType": "singleEpisode",
            "mediaInfo": {
                "audioChannels": 5.1,
                "audioCodec": "EAC3",
                "audioLanguages": "eng",
                "videoCodec": "h264",
                "videoDynamicRange": "",
                "resolution": "1920x1080",
                "runTime": "44:00",
                "subtitles": "eng",
            },
            "qualityCutoffNotMet": False,
        }

    def render_episode(self, episode_id: int, *, with_file: bool = False) -> dict[str, Any]:
        episode = self.episodes[episode_id]
        out: dict[str, Any] = {
            "id": episode.id,
            "seriesId": episode.series_id,
            "tvdbId": episode.tvdb_id,
            "episodeFileId": episode.file_id,
            "seasonNumber": episode.season_number,
            "episodeNumber": episode.episode_number,
            "title": episode.title,
            "airDate": iso(episode.air_date)[:10],
            "airDateUtc": iso(episode.air_date),
            "runtime": 45,
            "overview": f"{episode.title} of season {episode.season_number}.",
            "hasFile": episode.file_id != 0,
            "monitored": episode.monitored,
            "unverifiedSceneNumbering": False,
        }
        if with_file and episode.file_id:
            out["episodeFile"] = self.render_file(episode.file_id)
        return out

    def _statistics(self, episodes: list[SonarrEpisode]) -> dict[str, Any]:
        # Sonarr's SeriesStatistics SQL: an episode counts when it is monitored and aired, or has a file.
        now = time.time()
        files = [self.files[e.file_id] for e in episodes if e.file_id]
        counted = sum(1 for e in episodes if e.file_id or (e.monitored and e.air_date <= now))
        aired = [e.air_date for e in episodes if e.air_date <= now]
        out: dict[str, Any] = {
            "episodeFileCount": len(files),
            "episodeCount": counted,
            "totalEpisodeCount": len(episodes),
            "sizeOnDisk": sum(f.size for f in files),
            "releaseGroups": sorted({f.release_group for f in files}),
            "percentOfEpisodes": round(100.0 * len(files) / counted, 2) if counted else 0.0,
        }
        if aired:
            out["previousAiring"] = iso(max(aired))
        return out

    def render_series(self, series_id: int) -> dict[str, Any]:
        series = self.series[series_id]
        episodes = [self.episodes[i] for i in series.episode_ids]
        out = _metadata(series.source)
        seasons = []
        for number in sorted(series.season_monitored):
            stats = self._statistics([e for e in episodes if e.season_number == number])
            seasons.append({"seasonNumber": number, "monitored": series.season_monitored[number], "statistics": stats})
        statistics = self._statistics(episodes)
        statistics.pop("previousAiring", None)
        statistics = {"seasonCount": sum(1 for n in series.season_monitored if n > 0), **statistics}
        out.update(
            {
                "id": series.id,
                "seasons": seasons,
                "path": series.path,
                "qualityProfileId": series.quality_profile_id,
                "seasonFolder": series.season_folder,
                "monitored": series.monitored,
                "monitorNewItems": "all",
                "seriesType": series.series_type,
                "rootFolderPath": series.root_folder_path,
                "tags": list(series.tags),
                "added": iso(series.added),
                "statistics": statistics,
                "languageProfileId": 1,
            }
        )
        if episodes:
            aired = [e.air_date for e in episodes]
            out["firstAired"] = iso(min(aired))
            out["lastAired"] = iso(max(aired))
            out["previousAiring"] = iso(max(aired))
        return out

    def lookup(self, term: str) -> list[dict[str, Any]]:
        """``GET /series/lookup?term=``: ``tvdb:N`` or words of the title. Series this instance holds
        come back as library resources (with ``id``), others as bare metadata."""
        term = term.strip()
        if term.lower().startswith("tvdb:"):
            try:
                tvdb_id = int(term[5:])
            except ValueError:
                return []
            found = [self.catalogue[tvdb_id]] if tvdb_id in self.catalogue else []
        else:
            words = term.lower().split()
            found = [s for s in self.catalogue.values() if all(w in s.title.lower() for w in words)][:20]
        return [self.lookup_resource(s) for s in found]

    def lookup_resource(self, source: Show) -> dict[str, Any]:
        series = self.series_by_tvdb(source.tvdb)
        if series is not None:
            return self.render_series(series.id)
        out = _metadata(source)
        out.update(
            {
                "seasons": [{"seasonNumber": s.index, "monitored": True} for s in source.seasons],
                "qualityProfileId": 0,
                "seasonFolder": False,
                "monitored": False,
                "monitorNewItems": "all",
                "seriesType": "standard",
                "folder": source.title,
                "tags": [],
                "added": "0001-01-01T00:00:00Z",
                "statistics": {
                    "seasonCount": len(source.seasons),
                    "episodeFileCount": 0,
                    "episodeCount": 0,
                    "totalEpisodeCount": 0,
                    "sizeOnDisk": 0,
                    "percentOfEpisodes": 0.0,
                },
                "languageProfileId": 0,
            }
        )
        return out


def _metadata(source: Show) -> dict[str, Any]:
    """The TVDB-derived part of a SeriesResource."""
    clean = "".join(ch for ch in source.title.lower() if ch.isalnum())
    return {
        "title": source.title,
        "alternateTitles": [],
        "sortTitle": source.title.lower(),
        "status": source.status,
        "ended": source.status == "ended",
        "overview": f"{source.title}, a series of the simulated universe.",
        "network": "Simulated TV",
        "airTime": "21:00",
        "images": [
            {
                "coverType": "poster",
                "url": f"/MediaCover/{source.tvdb}/poster.jpg",
                "remoteUrl": f"https://artworks.thetvdb.com/banners/posters/{source.tvdb}-1.jpg",
            }
        ],
        "originalLanguage": _ENGLISH,
        "year": source.year,
        "useSceneNumbering": False,
        "runtime": 45,
        "tvdbId": source.tvdb,
        "tvRageId": 0,
        "tvMazeId": 0,
        "tmdbId": source.tmdb,
        "cleanTitle": clean,
        "imdbId": source.imdb,
        "titleSlug": "-".join(source.title.lower().split()),
        "certification": "TV-14",
        "genres": ["Drama"],
        "ratings": {"votes": 100, "value": 7.5},
    }


# ------------------------------------------------------------------------------------------- routes


def _state(request: web.Request) -> SonarrState:
    state = request.app[ARR_STATE]
    assert isinstance(state, SonarrState)
    return state


async def _series_list(request: web.Request) -> web.Response:
    state = _state(request)
    tvdb_id = query_int(request, "tvdbId")
    if tvdb_id is not None:
        series = state.series_by_tvdb(tvdb_id)
        return json_bytes_response(b"[" + state.cache.item(series.id) + b"]" if series else b"[]")
    return json_bytes_response(state.cache.all(state.series))


async def _series(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.series:
        raise not_found("Series", path_id(request))
    return json_bytes_response(state.cache.item(path_id(request)))


def _quality_profile_failure(profile: Any) -> dict[str, Any] | None:
    if not isinstance(profile, int) or profile <= 0:
        return validation_failure(
            "QualityProfileId",
            "'Quality Profile Id' must be greater than '0'.",
            profile,
            "GreaterThanValidator",
        )
    if profile not in QUALITY_PROFILES:
        return validation_failure(
            "QualityProfileId", "Quality Profile does not exist", profile, "QualityProfileExistsValidator"
        )
    return None


async def _update_series(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise error(400, "Request body must be a SeriesResource object")
    series_id = path_id(request) if "id" in request.match_info else int(body.get("id") or 0)
    series = state.series.get(series_id)
    if series is None:
        raise not_found("Series", series_id)
    failure = _quality_profile_failure(body.get("qualityProfileId", series.quality_profile_id))
    if failure:
        raise validation_error([failure])
    series.monitored = bool(body.get("monitored", series.monitored))
    series.quality_profile_id = int(body.get("qualityProfileId", series.quality_profile_id))
    series.tags = [int(t) for t in body.get("tags", series.tags)]
    series.season_folder = bool(body.get("seasonFolder", series.season_folder))
    for season in body.get("seasons") or []:
        number, monitored = season.get("seasonNumber"), season.get("monitored")
        if number in series.season_monitored and monitored is not None and series.season_monitored[number] != monitored:
            # Sonarr's UpdateSeries(updateEpisodesToMatchSeason: true): a season whose flag changed takes
            # its episodes with it.
            series.season_monitored[number] = bool(monitored)
            for episode_id in series.episode_ids:
                if state.episodes[episode_id].season_number == number:
                    state.episodes[episode_id].monitored = bool(monitored)
    if body.get("path") and query_bool(request, "moveFiles"):
        series.path = str(body["path"])
    state.cache.invalidate(series.id)
    return json_bytes_response(state.cache.item(series.id), status=202)


async def _delete_series(request: web.Request) -> web.Response:
    state = _state(request)
    series_id = path_id(request)
    if series_id not in state.series:
        raise not_found("Series", series_id)
    state.delete_series(
        series_id,
        delete_files=query_bool(request, "deleteFiles"),
        add_exclusion=query_bool(request, "addImportListExclusion"),
    )
    return web.Response(status=200)


async def _add_series(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise error(400, "Request body must be a SeriesResource object")
    failures = []
    tvdb_id = body.get("tvdbId") or 0
    profile = body.get("qualityProfileId") or 0
    root = body.get("rootFolderPath") or ""
    path = body.get("path") or ""
    failure = _quality_profile_failure(profile)
    if failure:
        failures.append(failure)
    if not root and not path:
        failures.append(validation_failure("Path", "Invalid Path", path, "PathValidator"))
        failures.append(validation_failure("RootFolderPath", "Invalid Path", root, "PathValidator"))
    elif not str(root or path).startswith("/"):
        failures.append(
            validation_failure("RootFolderPath" if root else "Path", "Invalid Path", root or path, "PathValidator")
        )
    if not body.get("title"):
        failures.append(validation_failure("Title", "'Title' must not be empty.", "", "NotEmptyValidator"))
    if not isinstance(tvdb_id, int) or tvdb_id <= 0:
        failures.append(
            validation_failure("TvdbId", "'Tvdb Id' must be greater than '0'.", tvdb_id, "GreaterThanValidator")
        )
    elif tvdb_id in state.by_tvdb:
        failures.append(
            validation_failure("TvdbId", "This series has already been added", tvdb_id, "SeriesExistsValidator")
        )
    if failures:
        raise validation_error(failures)
    if tvdb_id not in state.catalogue:
        raise validation_error(
            [validation_failure("TvdbId", "A series with this ID was not found", tvdb_id, "SeriesNotFoundValidator")]
        )
    monitored = bool(body.get("monitored", True))
    options = body.get("addOptions") or {}
    seasons = {
        int(s["seasonNumber"]): bool(s.get("monitored", monitored))
        for s in body.get("seasons") or []
        if "seasonNumber" in s
    }
    if options.get("monitor") == "none":
        seasons = {s.index: False for s in state.catalogue[tvdb_id].seasons}
    series = state.add(
        tvdb_id,
        monitored=monitored,
        quality_profile_id=profile,
        tags=[int(t) for t in body.get("tags") or []],
        root_folder_path=str(root or os.path.dirname(str(path).rstrip("/"))),
        path=str(path) or None,
        season_monitored=seasons,
    )
    if options.get("searchForMissingEpisodes"):
        # Sonarr queues this itself once the new series is scanned.
        state.record_command("MissingEpisodeSearch", {"seriesId": series.id}, trigger="unspecified")
    return json_bytes_response(state.cache.item(series.id), status=201)


async def _lookup(request: web.Request) -> web.Response:
    return json_response(_state(request).lookup(query_value(request, "term") or ""))


async def _episodes(request: web.Request) -> web.Response:
    state = _state(request)
    series_id = query_int(request, "seriesId")
    episode_ids = query_ints(request, "episodeIds")
    file_id = query_int(request, "episodeFileId")
    with_file = query_bool(request, "includeEpisodeFile")
    if series_id is not None:
        if series_id not in state.series:
            raise not_found("Series", series_id)
        season = query_int(request, "seasonNumber")
        ids = [
            i
            for i in state.series[series_id].episode_ids
            if season is None or state.episodes[i].season_number == season
        ]
    elif episode_ids:
        ids = [i for i in episode_ids if i in state.episodes]
    elif file_id is not None:
        ids = [state.files[file_id].episode_id] if file_id in state.files else []
    else:
        raise error(400, "seriesId or episodeIds must be provided")
    return json_response([state.render_episode(i, with_file=with_file) for i in ids])


async def _episode(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.episodes:
        raise not_found("Episode", path_id(request))
    return json_response(state.render_episode(path_id(request), with_file=True))


async def _update_episode(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.episodes:
        raise not_found("Episode", path_id(request))
    body = await json_body(request)
    if isinstance(body, dict) and "monitored" in body:
        state.set_monitored([path_id(request)], bool(body["monitored"]))
    return json_response(state.render_episode(path_id(request)), status=202)


async def _monitor_episodes(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("episodeIds"), list):
        raise error(400, "episodeIds must be provided")
    changed = state.set_monitored([int(i) for i in body["episodeIds"]], bool(body.get("monitored")))
    # The OpenAPI document says 200 without content; the controller returns Accepted(resources).
    return json_response([state.render_episode(e.id) for e in changed], status=202)


async def _episode_files(request: web.Request) -> web.Response:
    state = _state(request)
    series_id = query_int(request, "seriesId")
    file_ids = query_ints(request, "episodeFileIds")
    if series_id is not None:
        series = state.series.get(series_id)
        ids = [state.episodes[i].file_id for i in series.episode_ids] if series else []
        ids = [i for i in ids if i]
    elif file_ids:
        ids = [i for i in file_ids if i in state.files]
    else:
        raise error(400, "seriesId or episodeFileIds must be provided")
    return json_response([state.render_file(i) for i in ids])


async def _episode_file(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.files:
        raise not_found("EpisodeFile", path_id(request))
    return json_response(state.render_file(path_id(request)))


async def _delete_episode_file(request: web.Request) -> web.Response:
    state = _state(request)
    if path_id(request) not in state.files:
        raise error(
            404,
            "Episode file not found",
            "NzbDrone.Core.Exceptions.NzbDroneClientException: Episode file not found\n"
            "   at Sonarr.Api.V3.EpisodeFiles.EpisodeFileController.DeleteEpisodeFile(Int32 id)",
        )
    state.delete_file(path_id(request))
    return web.Response(status=200)


async def _delete_episode_files_bulk(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    ids = [int(i) for i in (body or {}).get("episodeFileIds") or []]
    if not ids:
        raise error(400, "episodeFileIds must be provided")
    for file_id in ids:
        if file_id in state.files:
            state.delete_file(file_id)
    return web.Response(status=200)


async def _sim_add(request: web.Request) -> web.Response:
    state = _state(request)
    body = await json_body(request)
    try:
        series = state.add(int(body["tvdbId"]), has_files=bool(body.get("hasFile", True)))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"cannot add: {exc!r}"}, 400)
    return json_response(state.render_series(series.id))


async def _sim_remove(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        _state(request).remove(int(body["id"]))
    except (KeyError, TypeError, ValueError) as exc:
        return json_response({"error": f"no such series: {exc!r}"}, 404)
    return json_response({})


def create_app(
    universe: Universe,
    *,
    instance: str = "sonarr",
    api_key: str = "demo-sonarr-key",
    faults: faults_mod.Faults | None = None,
) -> web.Application:
    """A Sonarr holding the universe shows whose ``sonarr`` is ``instance``."""
    app = web.Application()
    faults_mod.install(app, faults)
    install(app, SonarrState(universe, instance=instance, api_key=api_key))
    r = app.router
    r.add_get(f"{API}/series", _series_list)
    r.add_post(f"{API}/series", _add_series)
    r.add_put(f"{API}/series", _update_series)
    r.add_get(f"{API}/series/lookup", _lookup)
    r.add_get(API + r"/series/{id:\d+}", _series)
    r.add_put(API + r"/series/{id:\d+}", _update_series)
    r.add_delete(API + r"/series/{id:\d+}", _delete_series)
    r.add_get(f"{API}/episode", _episodes)
    r.add_put(f"{API}/episode/monitor", _monitor_episodes)
    r.add_get(API + r"/episode/{id:\d+}", _episode)
    r.add_put(API + r"/episode/{id:\d+}", _update_episode)
    r.add_get(f"{API}/episodefile", _episode_files)
    r.add_delete(f"{API}/episodefile/bulk", _delete_episode_files_bulk)
    r.add_get(API + r"/episodefile/{id:\d+}", _episode_file)
    r.add_delete(API + r"/episodefile/{id:\d+}", _delete_episode_file)
    add_exclusion_routes(app, "importlistexclusion")
    r.add_post("/_sim/arr/add", _sim_add)
    r.add_post("/_sim/arr/remove", _sim_remove)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated Sonarr on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.sonarr", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8989)
    parser.add_argument("--movies", type=int, default=200, help="movies in the universe (ids stay in step)")
    parser.add_argument("--shows", type=int, default=20)
    parser.add_argument("--seasons", type=int, default=3, help="seasons per show")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per season")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--now", type=int, default=None, help="epoch seconds anchoring the universe's dates")
    parser.add_argument("--instance", default="sonarr")
    parser.add_argument("--api-key", default="demo-sonarr-key")
    args = parser.parse_args(argv)
    universe = generate(
        seed=args.seed,
        movies=args.movies,
        shows=args.shows,
        seasons_per_show=args.seasons,
        episodes_per_season=args.episodes,
        now=args.now,
    )
    app = create_app(universe, instance=args.instance, api_key=args.api_key)
    state = app[ARR_STATE]
    assert isinstance(state, SonarrState)
    print(f"sonarr ({args.instance}): {len(state.series)} series on http://127.0.0.1:{args.port}")
    state.cache.all(state.series)  # render the catalogue now, not on the first benchmark request
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
