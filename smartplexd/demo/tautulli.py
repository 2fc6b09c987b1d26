"""A simulated Tautulli (API v2) rendering the watch history of a :class:`~smartplexd.demo.universe.Universe`.

One endpoint, ``GET /api/v2?apikey=<key>&cmd=<command>&...``, answers the envelope
``{"response": {"result": "success"|"error", "message": str|null, "data": ...}}`` with the status codes of
``tests/contracts/tautulli.md``: missing key → 401 ``Parameter apikey is required``, missing or unknown
``cmd`` → 400, wrong key → 401 ``Invalid apikey``, a command failing on bad parameters → 500
``Check the logs for errors``. Every view in the universe (movies and episodes) is one history row.

Commands: ``get_history``, ``get_library_media_info``, ``get_item_watch_time_stats``,
``get_item_user_stats``, ``get_libraries``, ``get_users``, ``get_server_info``, ``get_activity``,
``get_home_stats``, ``get_tautulli_info``, ``status``, ``arnold``.

Library sections are fixed, as in the simulated Plex: ``1`` = Movies, ``2`` = TV Shows. A user's
``user_id`` is their position in ``universe.USERS`` (1-based) — the simulated Plex's account id and the
simulated Overseerr's ``plexId`` — and ``friendly_name`` is the capitalised username. Relative time
("last 7 days") is measured from ``universe.now``.

History and library rows are built once and then sliced, so paging a large library stays cheap. Tests add
plays through ``app[TAUTULLI_STATE].add_play(...)`` or, from another process, through routes that need no
key and ignore faults::

    GET  /_sim/tautulli/history      every history row, newest first
    POST /_sim/tautulli/history      {"rating_key": 1001, "user": "bob", "stopped": 1700000000,
                                      "percent_complete": 100} → the new row

Run one on its own: ``python -m smartplexd.demo.tautulli --port 8181 --movies 200 --seed 1``.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from smartplexd.demo import faults as faults_mod
from smartplexd.demo.universe import DAY, USERS, Episode, Movie, Season, Show, Universe, View

DEFAULT_API_KEY = "demo-tautulli-key"
MOVIES_SECTION = 1
SHOWS_SECTION = 2
WATCHED_PERCENT = 85
"""Tautulli's default movie/tv "watched" threshold (percent)."""

USER_IDS = {name: i for i, name in enumerate(USERS, start=1)}
"""Username → Plex account id, the same numbers the simulated Plex and Overseerr use."""

_HISTORY_ORDER = {
    "date",
    "friendly_name",
    "ip_address",
    "platform",
    "player",
    "full_title",
    "started",
    "paused_counter",
    "stopped",
    "duration",
}
_MEDIA_ORDER = {
    "added_at",
    "sort_title",
    "container",
    "bitrate",
    "video_codec",
    "video_resolution",
    "video_framerate",
    "audio_codec",
    "audio_channels",
    "file_size",
    "last_played",
    "play_count",
}
_ARNOLD = (
    "Get to the chopper!",
    "I'll be back.",
    "Hasta la vista, baby.",
    "It's not a tumor!",
    "Consider that a divorce.",
)


class CommandError(ValueError):
    """A parameter a command cannot use (Tautulli answers 500 "Check the logs for errors")."""


def watched_status(percent_complete: int, threshold: int = WATCHED_PERCENT) -> float:
    """Tautulli's ``watched_status``: 1 when watched, else the quarter of the threshold reached."""
    if percent_complete >= threshold:
        return 1
    for quarter in (0.75, 0.5, 0.25):
        if percent_complete >= threshold * quarter:
            return quarter
    return 0


def human_duration(seconds: int) -> str:
    """Tautulli's ``total_duration`` text, e.g. ``"42 days 5 hrs 18 mins"``."""
    days, rest = divmod(int(seconds), DAY)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    for value, unit in ((days, "day"), (hours, "hr"), (minutes, "min")):
        if value:
            parts.append(f"{value} {unit}{'s' if value > 1 else ''}")
    return " ".join(parts) or "0 mins"


def _guid(kind: str, rating_key: int) -> str:
    return f"plex://{kind}/{hashlib.sha1(str(rating_key).encode()).hexdigest()[:24]}"


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _user_json(name: str) -> dict[str, Any]:
    uid = USER_IDS[name]
    return {
        "row_id": USERS.index(name) + 1,
        "user_id": uid,
        "username": name,
        "friendly_name": name.capitalize(),
        "email": f"{name}@example.com",
        "thumb": f"https://plex.tv/users/{uid:x}/avatar?c=1",
        "is_active": 1,
        "is_admin": 1 if name == USERS[0] else 0,
        "is_home_user": 1,
        "is_allow_sync": 1,
        "is_restricted": 0,
        "do_notify": 1,
        "keep_history": 1,
        "allow_guest": 0,
        "server_token": None,
        "shared_libraries": [str(MOVIES_SECTION), str(SHOWS_SECTION)],
        "filter_all": "",
        "filter_movies": "",
        "filter_music": "",
        "filter_photos": "",
        "filter_tv": "",
    }


@dataclass(slots=True)
class _Play:
    """One history row plus what filters need that the row does not carry."""

    row: dict[str, Any]
    section_id: int
    day: str
    keys: tuple[int, ...]  # rating_key, then parent and grandparent for episodes


class TautulliState:
    """History and library rows of one simulated Tautulli, with indexes for cheap filtering and paging."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self.now = universe.now
        self._movies = {m.rating_key: m for m in universe.movies}
        self._shows = {s.rating_key: s for s in universe.shows}
        self._seasons: dict[int, tuple[Show, Season]] = {}
        self._episodes: dict[int, tuple[Show, Season, Episode]] = {}
        for show in universe.shows:
            for season in show.seasons:
                self._seasons[season.rating_key] = (show, season)
                for ep in season.episodes:
                    self._episodes[ep.rating_key] = (show, season, ep)
        raw: list[tuple[View, int]] = [(v, m.rating_key) for m in universe.movies for v in m.views]
        raw += [(v, e.rating_key) for e in self._episode_list() for v in e.views]
        # Row ids follow time, as they would in a database that recorded the plays as they happened.
        raw.sort(key=lambda pair: (pair[0].at - pair[0].duration, pair[1]))
        self._plays: list[_Play] = [self._play(i, view, key) for i, (view, key) in enumerate(raw, start=1)]
        self._reindex()

    def _episode_list(self) -> list[Episode]:
        return [e for _, _, e in self._episodes.values()]

    # --- history ---------------------------------------------------------------------------------------

    def _play(self, row_id: int, view: View, rating_key: int) -> _Play:
        started = view.at - view.duration
        user = view.user
        common: dict[str, Any] = {
            "reference_id": row_id,
            "row_id": row_id,
            "id": row_id,
            "date": started,
            "started": started,
            "stopped": view.at,
            "duration": view.duration,
            "play_duration": view.duration,
            "paused_counter": 0,
            "user_id": USER_IDS[user],
            "user": user,
            "friendly_name": user.capitalize(),
            "user_thumb": f"https://plex.tv/users/{USER_IDS[user]:x}/avatar?c=1",
            "platform": "Chrome" if row_id % 3 else "Android",
            "product": "Plex Web" if row_id % 3 else "Plex for Android (TV)",
            "player": "Chrome" if row_id % 3 else "SHIELD Android TV",
            "ip_address": f"10.0.0.{10 + USERS.index(user)}",
            "live": 0,
            "machine_id": hashlib.sha1(f"{user}-{row_id % 3}".encode()).hexdigest()[:18],
            "location": "lan",
            "secure": 1,
            "relayed": 0,
            "percent_complete": view.percent_complete,
            "watched_status": watched_status(view.percent_complete),
            "transcode_decision": "direct play" if row_id % 4 else "transcode",
            "original_title": "",
            "group_count": 1,
            "group_ids": str(row_id),
            "state": None,
            "session_key": None,
        }
        if rating_key in self._movies:
            m = self._movies[rating_key]
            row = common | {
                "media_type": "movie",
                "rating_key": m.rating_key,
                "parent_rating_key": "",
                "grandparent_rating_key": "",
                "full_title": m.title,
                "title": m.title,
                "parent_title": "",
                "grandparent_title": "",
                "year": m.year,
                "media_index": "",
                "parent_media_index": "",
                "thumb": f"/library/metadata/{m.rating_key}/thumb/{m.added_at}",
                "originally_available_at": f"{m.year}-01-01",
                "guid": _guid("movie", m.rating_key),
            }
            return _Play(row, MOVIES_SECTION, _day(started), (m.rating_key,))
        show, season, ep = self._episodes[rating_key]
        row = common | {
            "media_type": "episode",
            "rating_key": ep.rating_key,
            "parent_rating_key": season.rating_key,
            "grandparent_rating_key": show.rating_key,
            "full_title": f"{show.title} - {ep.title}",
            "title": ep.title,
            "parent_title": f"Season {season.index}",
            "grandparent_title": show.title,
            "year": show.year,
            "media_index": ep.index,
            "parent_media_index": season.index,
            "thumb": f"/library/metadata/{season.rating_key}/thumb/{ep.added_at}",
            "originally_available_at": _day(ep.added_at),
            "guid": _guid("episode", ep.rating_key),
        }
        return _Play(row, SHOWS_SECTION, _day(started), (ep.rating_key, season.rating_key, show.rating_key))

    def _reindex(self) -> None:
        # Newest first is Tautulli's default order; every index keeps positions in that order.
        self._plays.sort(key=lambda p: (p.row["date"], p.row["id"]), reverse=True)
        self._by_key: dict[str, dict[int, list[int]]] = {
            "rating_key": defaultdict(list),
            "parent_rating_key": defaultdict(list),
            "grandparent_rating_key": defaultdict(list),
        }
        self._by_any_key: dict[int, list[int]] = defaultdict(list)
        self._by_user: dict[str, list[int]] = defaultdict(list)
        self._stats: dict[int, tuple[int, int | None, int]] = {}  # key → plays, last played, seconds
        for pos, play in enumerate(self._plays):
            row = play.row
            for column in self._by_key:
                if row[column] != "":
                    self._by_key[column][row[column]].append(pos)
            for key in play.keys:
                self._by_any_key[key].append(pos)
                plays, last, seconds = self._stats.get(key, (0, None, 0))
                self._stats[key] = (plays + 1, max(last or 0, row["stopped"]), seconds + row["duration"])
            self._by_user[row["user"]].append(pos)
        self._order_cache: dict[tuple[str, bool], list[_Play]] = {}
        self._media_cache: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def add_play(
        self, rating_key: int, user: str, stopped: int | None = None, percent_complete: int = 100
    ) -> dict[str, Any]:
        """Record that ``user`` watched the movie or episode ``rating_key``; returns the new history row.

        ``stopped`` defaults to ``universe.now``. Raises ``KeyError`` for an unknown rating key or user.
        """
        if rating_key not in self._movies and rating_key not in self._episodes:
            raise KeyError(f"no movie or episode with rating key {rating_key}")
        if user not in USER_IDS:
            raise KeyError(f"unknown user {user!r}; known: {', '.join(USERS)}")
        full = 6000 if rating_key in self._movies else 2700
        duration = full * percent_complete // 100
        at = stopped if stopped is not None else self.now
        row_id = max((p.row["id"] for p in self._plays), default=0) + 1
        play = self._play(row_id, View(user, at, percent_complete, duration), rating_key)
        self._plays.append(play)
        self._reindex()
        return play.row

    def history_rows(self) -> list[dict[str, Any]]:
        """Every history row, newest first."""
        return [p.row for p in self._plays]

    def history(self, q: MultiDictProxy[str]) -> dict[str, Any]:
        """``cmd=get_history``: filter, order and slice the history rows."""
        positions: list[int] | None = None

        def narrow(found: list[int]) -> None:
            nonlocal positions
            positions = found if positions is None else sorted(set(positions) & set(found))

        for column in ("rating_key", "parent_rating_key", "grandparent_rating_key"):
            if q.get(column):
                keys = _int_list(q[column], column)
                narrow(sorted({pos for k in keys for pos in self._by_key[column].get(k, [])}))
        if q.get("user_id"):
            ids = set(_int_list(q["user_id"], "user_id"))
            names = [n for n, uid in USER_IDS.items() if uid in ids]
            narrow(sorted({pos for n in names for pos in self._by_user.get(n, [])}))
        elif q.get("user"):
            names = [n.strip() for n in q["user"].split(",")]
            narrow(sorted({pos for n in names for pos in self._by_user.get(n, [])}))

        plays = self._plays if positions is None else [self._plays[p] for p in positions]
        media_types = set(q["media_type"].split(",")) if q.get("media_type") else None
        section = _int(q.get("section_id"), "section_id") if q.get("section_id") else None
        after, before, on = q.get("after"), q.get("before"), q.get("start_date")
        search = (q.get("search") or "").lower()
        if media_types or section or after or before or on or search:
            plays = [
                p
                for p in plays
                if (media_types is None or p.row["media_type"] in media_types)
                and (section is None or p.section_id == section)
                and (not after or p.day >= after)
                and (not before or p.day <= before)
                and (not on or p.day == on)
                and (not search or search in p.row["full_title"].lower())
            ]

        column = q.get("order_column") or "date"
        if column not in _HISTORY_ORDER:
            column = "date"
        descending = (q.get("order_dir") or "desc").lower() != "asc"
        if column != "date" or not descending:
            filtered = plays is self._plays
            cached = self._order_cache.get((column, descending)) if filtered else None
            if cached is None:
                cached = sorted(plays, key=lambda p: (p.row[column], p.row["id"]), reverse=descending)
                if filtered:
                    self._order_cache[(column, descending)] = cached
            plays = cached

        start = _int(q.get("start"), "start", 0)
        length = _int(q.get("length"), "length", 25)
        page = plays[start:] if length < 0 else plays[start : start + length]
        return {
            "draw": _int(q.get("draw"), "draw", 1),
            "recordsTotal": len(self._plays),
            "recordsFiltered": len(plays),
            "total_duration": human_duration(sum(p.row["duration"] for p in self._plays)),
            "filter_duration": human_duration(sum(p.row["duration"] for p in plays)),
            "data": [p.row for p in page],
        }

    def item_watch_time_stats(self, q: MultiDictProxy[str]) -> list[dict[str, int]]:
        """``cmd=get_item_watch_time_stats``: plays and seconds of ``rating_key`` per ``query_days``."""
        key = _int(q.get("rating_key"), "rating_key")
        days = _int_list(q.get("query_days") or "1,7,30,0", "query_days")
        plays = [self._plays[pos].row for pos in self._by_any_key.get(key, [])]
        out = []
        for d in days:
            since = self.now - d * DAY if d > 0 else None
            chosen = [r for r in plays if since is None or r["stopped"] >= since]
            out.append(
                {
                    "query_days": d,
                    "total_time": sum(r["duration"] for r in chosen),
                    "total_plays": len(chosen),
                }
            )
        return out

    def item_user_stats(self, q: MultiDictProxy[str]) -> list[dict[str, Any]]:
        """``cmd=get_item_user_stats``: plays and seconds of ``rating_key`` per user, most plays first."""
        key = _int(q.get("rating_key"), "rating_key")
        per_user: dict[str, list[int]] = {}
        for pos in self._by_any_key.get(key, []):
            row = self._plays[pos].row
            per_user.setdefault(row["user"], []).append(row["duration"])
        out = [
            {
                "friendly_name": name.capitalize(),
                "user_id": USER_IDS[name],
                "user_thumb": f"https://plex.tv/users/{USER_IDS[name]:x}/avatar?c=1",
                "username": name,
                "total_plays": len(durations),
                "total_time": sum(durations),
            }
            for name, durations in per_user.items()
        ]
        out.sort(key=lambda r: (-r["total_plays"], r["username"]))
        return out

    # --- library media info ----------------------------------------------------------------------------

    def _media_row(self, section: int, media_type: str, rating_key: int, **fields: Any) -> dict[str, Any]:
        plays, last, _ = self._stats.get(rating_key, (0, None, 0))
        return {
            "section_id": section,
            "section_type": "movie" if section == MOVIES_SECTION else "show",
            "media_type": media_type,
            "rating_key": str(rating_key),
            "parent_rating_key": "",
            "grandparent_rating_key": "",
            "media_index": "",
            "parent_media_index": "",
            "container": "",
            "bitrate": "",
            "video_codec": "",
            "video_resolution": "",
            "video_framerate": "",
            "audio_codec": "",
            "audio_channels": "",
            "last_played": last,
            "play_count": plays or None,
        } | fields

    def _movie_row(self, m: Movie) -> dict[str, Any]:
        uhd = m.radarr == "radarr4k"
        return self._media_row(
            MOVIES_SECTION,
            "movie",
            m.rating_key,
            added_at=str(m.added_at),
            title=m.title,
            sort_title=m.title,
            year=str(m.year),
            thumb=f"/library/metadata/{m.rating_key}/thumb/{m.added_at}",
            container="mkv",
            bitrate=str(m.size * 8 // 6000 // 1000),
            video_codec="hevc" if uhd else "h264",
            video_resolution="4k" if uhd else "1080",
            video_framerate="24p",
            audio_codec="truehd" if uhd else "eac3",
            audio_channels="8" if uhd else "6",
            file_size=m.size,
        )

    def _show_row(self, s: Show) -> dict[str, Any]:
        return self._media_row(
            SHOWS_SECTION,
            "show",
            s.rating_key,
            added_at=str(s.added_at),
            title=s.title,
            sort_title=s.title,
            year=str(s.year),
            thumb=f"/library/metadata/{s.rating_key}/thumb/{s.added_at}",
            file_size=s.size,
        )

    def _season_row(self, show: Show, season: Season) -> dict[str, Any]:
        added = min((e.added_at for e in season.episodes), default=show.added_at)
        return self._media_row(
            SHOWS_SECTION,
            "season",
            season.rating_key,
            added_at=str(added),
            parent_rating_key=str(show.rating_key),
            title=f"Season {season.index}",
            sort_title=f"Season {season.index:04d}",
            year=str(show.year),
            media_index=str(season.index),
            thumb=f"/library/metadata/{season.rating_key}/thumb/{added}",
            file_size=sum(e.size for e in season.episodes),
        )

    def _episode_row(self, show: Show, season: Season, ep: Episode) -> dict[str, Any]:
        return self._media_row(
            SHOWS_SECTION,
            "episode",
            ep.rating_key,
            added_at=str(ep.added_at),
            parent_rating_key=str(season.rating_key),
            grandparent_rating_key=str(show.rating_key),
            title=ep.title,
            sort_title=f"{ep.index:04d}",
            year=str(show.year),
            media_index=str(ep.index),
            parent_media_index=str(season.index),
            thumb=f"/library/metadata/{ep.rating_key}/thumb/{ep.added_at}",
            container="mkv",
            bitrate=str(ep.size * 8 // 2700 // 1000),
            video_codec="h264",
            video_resolution="1080",
            video_framerate="24p",
            audio_codec="eac3",
            audio_channels="6",
            file_size=ep.size,
        )

    def _media_rows(self, scope: str, key: int) -> list[dict[str, Any]] | None:
        """All rows of a section (``scope="section"``) or the children of a show/season; None if unknown."""
        cached = self._media_cache.get((scope, key))
        if cached is not None:
            return cached
        if scope == "section" and key == MOVIES_SECTION:
            rows = [self._movie_row(m) for m in self.universe.movies]
        elif scope == "section" and key == SHOWS_SECTION:
            rows = [self._show_row(s) for s in self.universe.shows]
        elif scope == "children" and key in self._shows:
            show = self._shows[key]
            rows = [self._season_row(show, season) for season in show.seasons]
        elif scope == "children" and key in self._seasons:
            show, season = self._seasons[key]
            rows = [self._episode_row(show, season, ep) for ep in season.episodes]
        else:
            return None
        self._media_cache[(scope, key)] = rows
        return rows

    def library_media_info(self, q: MultiDictProxy[str]) -> dict[str, Any]:
        """``cmd=get_library_media_info``: rows of a section or of a show/season's children, paged."""
        empty = {
            "draw": 0,
            "last_refreshed": None,
            "recordsTotal": 0,
            "recordsFiltered": 0,
            "filtered_file_size": 0,
            "total_file_size": 0,
            "data": [],
        }
        if q.get("rating_key"):
            scope, key = "children", _int(q["rating_key"], "rating_key")
        elif q.get("section_id"):
            scope, key = "section", _int(q["section_id"], "section_id")
        else:
            return empty
        rows = self._media_rows(scope, key)
        if rows is None:
            return empty
        all_rows = rows
        search = (q.get("search") or "").lower()
        if search:
            rows = [r for r in rows if search in r["title"].lower()]
        column = q.get("order_column") or "sort_title"
        if column not in _MEDIA_ORDER:
            column = "sort_title"
        descending = (q.get("order_dir") or "asc").lower() == "desc"
        cache_key = (f"{scope}:{column}:{'desc' if descending else 'asc'}", key)
        ordered = self._media_cache.get(cache_key) if not search else None
        if ordered is None:
            ordered = sorted(rows, key=lambda r: (_sortable(r[column]), r["rating_key"]), reverse=descending)
            if not search:
                self._media_cache[cache_key] = ordered
        start = _int(q.get("start"), "start", 0)
        length = _int(q.get("length"), "length", 25)
        page = ordered[start:] if length < 0 else ordered[start : start + length]
        return {
            "draw": _int(q.get("draw"), "draw", 1),
            "last_refreshed": self.now,
            "recordsTotal": len(all_rows),
            "recordsFiltered": len(ordered),
            "filtered_file_size": sum(r["file_size"] for r in ordered),
            "total_file_size": sum(r["file_size"] for r in all_rows),
            "data": page,
        }

    # --- small commands --------------------------------------------------------------------------------

    def libraries(self) -> list[dict[str, Any]]:
        """``cmd=get_libraries``."""
        episodes = len(self._episodes)
        return [
            {
                "section_id": str(MOVIES_SECTION),
                "section_name": "Movies",
                "section_type": "movie",
                "agent": "tv.plex.agents.movie",
                "count": str(len(self.universe.movies)),
                "parent_count": "",
                "child_count": "",
                "is_active": 1,
                "art": "/:/resources/movie-fanart.jpg",
                "thumb": "/:/resources/movie.png",
            },
            {
                "section_id": str(SHOWS_SECTION),
                "section_name": "TV Shows",
                "section_type": "show",
                "agent": "tv.plex.agents.series",
                "count": str(len(self.universe.shows)),
                "parent_count": str(len(self._seasons)),
                "child_count": str(episodes),
                "is_active": 1,
                "art": "/:/resources/show-fanart.jpg",
                "thumb": "/:/resources/show.png",
            },
        ]

    def server_info(self) -> dict[str, Any]:
        """``cmd=get_server_info``."""
        return {
            "pms_identifier": self.universe.machine_identifier,
            "pms_ip": "127.0.0.1",
            "pms_is_remote": 0,
            "pms_name": "Simulated Plex",
            "pms_platform": "Linux",
            "pms_plexpass": 1,
            "pms_port": 32400,
            "pms_ssl": 0,
            "pms_url": "http://127.0.0.1:32400",
            "pms_url_manual": 0,
            "pms_version": "1.40.2.8395-c67dce28e",
        }

    def home_stats(self, q: MultiDictProxy[str]) -> list[dict[str, Any]]:
        """``cmd=get_home_stats``: top movies, shows and users over the last ``time_range`` days."""
        days = _int(q.get("time_range"), "time_range", 30)
        count = _int(q.get("stats_count"), "stats_count", 10)
        since = self.now - days * DAY
        rows = [p.row for p in self._plays if p.row["stopped"] >= since]
        by_movie: dict[int, list[dict[str, Any]]] = defaultdict(list)
        by_show: dict[int, list[dict[str, Any]]] = defaultdict(list)
        by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["media_type"] == "movie":
                by_movie[r["rating_key"]].append(r)
            else:
                by_show[r["grandparent_rating_key"]].append(r)
            by_user[r["user"]].append(r)

        def top(groups: dict[Any, list[dict[str, Any]]], render: Any) -> list[dict[str, Any]]:
            ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:count]
            return [
                render(key, plays)
                | {
                    "total_plays": len(plays),
                    "total_duration": sum(p["duration"] for p in plays),
                    "last_play": max(p["stopped"] for p in plays),
                }
                for key, plays in ranked
            ]

        return [
            {
                "stat_id": "top_movies",
                "stat_type": "total_plays",
                "stat_title": f"Most Watched Movies (last {days} days)",
                "rows": top(
                    by_movie,
                    lambda key, plays: {
                        "rating_key": key,
                        "title": plays[0]["title"],
                        "year": plays[0]["year"],
                        "media_type": "movie",
                        "section_id": MOVIES_SECTION,
                    },
                ),
            },
            {
                "stat_id": "top_tv",
                "stat_type": "total_plays",
                "stat_title": f"Most Watched TV Shows (last {days} days)",
                "rows": top(
                    by_show,
                    lambda key, plays: {
                        "rating_key": key,
                        "grandparent_rating_key": str(key),
                        "title": plays[0]["grandparent_title"],
                        "year": plays[0]["year"],
                        "media_type": "episode",
                        "section_id": SHOWS_SECTION,
                    },
                ),
            },
            {
                "stat_id": "top_users",
                "stat_type": "total_plays",
                "stat_title": f"Most Active Users (last {days} days)",
                "rows": top(
                    by_user,
                    lambda name, plays: {
                        "user": name.capitalize(),
                        "user_id": USER_IDS[name],
                        "friendly_name": name.capitalize(),
                    },
                ),
            },
        ]


def _sortable(value: Any) -> tuple[int, Any]:
    # Tautulli stores numbers as strings in places; None (never played) sorts before everything.
    if value is None or value == "":
        return (0, 0)
    if isinstance(value, str) and value.isdigit():
        return (1, int(value))
    return (1, value) if isinstance(value, int) else (2, value)


def _int(raw: str | None, name: str, default: int | None = None) -> int:
    if raw is None or raw == "":
        if default is None:
            raise CommandError(f"missing required parameter {name}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise CommandError(f"{name} must be an integer, got {raw!r}") from None


def _int_list(raw: str, name: str) -> list[int]:
    return [_int(part.strip(), name) for part in raw.split(",") if part.strip()]


TAUTULLI_STATE = web.AppKey("tautulli_state", TautulliState)
_API_KEY = web.AppKey("tautulli_api_key", str)
_COMMANDS = web.AppKey("tautulli_commands", dict)


def _envelope(result: str, message: str | None, data: Any, status: int = 200) -> web.Response:
    return web.json_response({"response": {"result": result, "message": message, "data": data}}, status=status)


def _commands(state: TautulliState) -> dict[str, Any]:
    """Command name → function(query) returning ``data`` (or a (message, data) tuple)."""
    return {
        "get_history": state.history,
        "get_library_media_info": state.library_media_info,
        "get_item_watch_time_stats": state.item_watch_time_stats,
        "get_item_user_stats": state.item_user_stats,
        "get_libraries": lambda q: state.libraries(),
        "get_users": lambda q: [_user_json(n) for n in USERS],
        "get_server_info": lambda q: state.server_info(),
        "get_activity": lambda q: {
            "lan_bandwidth": 0,
            "sessions": [],
            "stream_count": "0",
            "stream_count_direct_play": 0,
            "stream_count_direct_stream": 0,
            "stream_count_transcode": 0,
            "total_bandwidth": 0,
            "wan_bandwidth": 0,
        },
        "get_home_stats": state.home_stats,
        "get_tautulli_info": lambda q: {
            "tautulli_install_type": "docker",
            "tautulli_version": "v2.14.3",
            "tautulli_branch": "master",
            "tautulli_python_version": "3.11.9",
        },
        "status": lambda q: ("Ok", {}),
        "arnold": lambda q: _ARNOLD[state.now // 3600 % len(_ARNOLD)],
    }


async def _api(request: web.Request) -> web.Response:
    q = request.query
    commands = request.app[_COMMANDS]
    # Validation order is Tautulli's (api2._api_validate): key present, cmd present and known, key right.
    if "apikey" not in q:
        return _envelope("error", "Parameter apikey is required", {}, 401)
    cmd = q.get("cmd")
    if cmd is None:
        return _envelope("error", f"Parameter cmd is required. Possible commands are: {', '.join(commands)}", {}, 400)
    if cmd not in commands:
        known = ", ".join(sorted(commands))
        return _envelope("error", f"Unknown command: {cmd}. Possible commands are: {known}", {}, 400)
    if request.app[faults_mod.FAULTS].revoke_auth or q["apikey"] != request.app[_API_KEY]:
        return _envelope("error", "Invalid apikey", {}, 401)
    try:
        data = commands[cmd](q)
    except (CommandError, KeyError):
        return _envelope("error", "Check the logs for errors", {}, 500)
    if isinstance(data, tuple):
        message, data = data
        return _envelope("success", message, data)
    return _envelope("success", None, data)


async def _sim_history(request: web.Request) -> web.Response:
    state = request.app[TAUTULLI_STATE]
    return web.json_response(state.history_rows())


async def _sim_add_play(request: web.Request) -> web.Response:
    state = request.app[TAUTULLI_STATE]
    try:
        body = await request.json()
        row = state.add_play(
            int(body["rating_key"]),
            str(body.get("user", "admin")),
            stopped=int(body["stopped"]) if "stopped" in body else None,
            percent_complete=int(body.get("percent_complete", 100)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        message = f"expected {{rating_key, user?, stopped?, percent_complete?}}: {exc}"
        return web.json_response({"error": message}, status=400)
    return web.json_response(row, status=201)


def create_app(
    universe: Universe, *, api_key: str = DEFAULT_API_KEY, faults: faults_mod.Faults | None = None
) -> web.Application:
    """Build the simulated Tautulli for ``universe``; its state is ``app[TAUTULLI_STATE]``."""
    app = web.Application()
    faults_mod.install(app, faults)
    state = TautulliState(universe)
    app[TAUTULLI_STATE] = state
    app[_API_KEY] = api_key
    app[_COMMANDS] = _commands(state)
    app.router.add_route("GET", "/api/v2", _api)
    app.router.add_get("/_sim/tautulli/history", _sim_history)
    app.router.add_post("/_sim/tautulli/history", _sim_add_play)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated Tautulli on 127.0.0.1 until interrupted."""
    from smartplexd.demo.universe import generate

    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.tautulli", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--movies", type=int, default=200)
    parser.add_argument("--shows", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    universe = generate(seed=args.seed, movies=args.movies, shows=args.shows)
    app = create_app(universe, api_key=args.api_key)
    print(f"simulated Tautulli on http://127.0.0.1:{args.port}/api/v2 (apikey: {args.api_key})", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
