"""A simulated Plex Media Server that speaks the real PMS HTTP API over a :class:`Universe`.

python-plexapi and our own client talk to it unchanged: the same paths, the same XML (the default) or JSON
(``Accept: application/json``), the same paging headers, the same 401/404/400 HTML bodies. See
``tests/contracts/plex.md`` for what real PMS does and where that is unconfirmed.

What Plex shows is a view over the shared universe:

* Section ``"1"`` "Movies" holds ``universe.movies``; section ``"2"`` "TV Shows" holds the shows with their
  seasons and episodes. Rating keys are the universe's ``rating_key``; collections get fresh keys.
* ``viewCount``/``lastViewedAt`` are the token owner's (``admin``) *counted* plays: a universe
  :class:`View` counts once its ``percent_complete`` reaches Plex's 90% "watched" threshold
  (:func:`counted_plays`). Both attributes are absent when there is none, as in PMS.
* Deleting an item (API or ``/_sim``) hides it from Plex only; other simulated servers still see it. A season
  whose episodes are all gone, and a show whose seasons are all gone, disappear too (PMS empties its trash).
* Mutations through :class:`PlexState` edit the shared universe objects (titles, sizes, labels, plays), so
  every simulated server agrees afterwards.

Test and demo control lives under ``/_sim/plex`` (JSON)::

    GET    /_sim/plex/state                      knobs, deleted keys, visible counts per section
    POST   /_sim/plex/settings                   {"allow_media_deletion": false}
    POST   /_sim/plex/sections/{id}/empty        {"empty": true}  (the unmounted-disk case; false restores)
    POST   /_sim/plex/movies                     {"title": .., "year": .., "size": .., "labels": [..], ...}
    POST   /_sim/plex/shows                      {"title": .., "seasons": 2, "episodes": 5, ...}
    PATCH  /_sim/plex/items/{ratingKey}          {"title"|"size"|"file"|"labels"|"collections"|"added_at": ..,
                                                  "played": true | {"user": "bob", "at": 1700000000}}
    DELETE /_sim/plex/items/{ratingKey}          a user deleting it in Plex (ignores the deletion setting)

In-process tests call the same operations on ``app[PLEX_STATE]``; with a :class:`ThreadedServer` run them on
the server's loop (``srv.call(state.mark_played, key)``) so a request never sees half an update.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from smartplexd.demo import faults as faults_mod
from smartplexd.demo.faults import Faults
from smartplexd.demo.universe import USERS, Episode, Movie, Season, Show, Universe, View, generate

PLAYED_THRESHOLD = 90
"""Percent a play must reach before Plex counts it as watched (PMS default "video played threshold")."""

OWNER = "admin"
"""The account the Plex token belongs to: ``viewCount``/``lastViewedAt`` are this user's."""

ACCOUNT_IDS = {user: i + 1 for i, user in enumerate(USERS)}
"""Plex account ids used in play history (the owner is 1, as on a real server)."""

VERSION = "1.41.3.9314-a0bfb8370"
MOVIES, SHOWS = 1, 2
TYPE_IDS = {"movie": 1, "show": 2, "season": 3, "episode": 4, "collection": 18}
TYPE_NAMES = {v: k for k, v in TYPE_IDS.items()}
MOVIE_SECONDS, EPISODE_SECONDS = 6000, 2700  # same play lengths the universe uses for its views

IDENTIFIER = "com.plexapp.plugins.library"
MEDIA_TAG_PREFIX = "/system/bundle/media/flags/"
MEDIA_TAG_VERSION = 1700000000

_HTML = "<html><head><title>{title}</title></head><body><h1>{code} {title}</h1></body></html>"
UNAUTHORIZED_BODY = _HTML.format(title="Unauthorized", code=401)
NOT_FOUND_BODY = _HTML.format(title="Not Found", code=404)
BAD_REQUEST_BODY = _HTML.format(title="Bad Request", code=400)


@dataclass(frozen=True, slots=True)
class Section:
    key: int
    type: str  # "movie" | "show"
    title: str
    uuid: str
    agent: str
    scanner: str
    location: str
    default_type: int


SECTIONS = {
    MOVIES: Section(
        MOVIES,
        "movie",
        "Movies",
        "0b711797-d871-47fe-bea2-0d79a3b2a2f8",
        "tv.plex.agents.movie",
        "Plex Movie",
        "/data/movies",
        1,
    ),
    SHOWS: Section(
        SHOWS,
        "show",
        "TV Shows",
        "70ba12bf-8ab7-40df-93c4-383b080589d5",
        "tv.plex.agents.series",
        "Plex TV Series",
        "/data/tv",
        2,
    ),
}


@dataclass(slots=True)
class PlexCollection:
    """A regular (non-smart) Plex collection; membership is the items' collection tags with its title."""

    rating_key: int
    section: int
    title: str
    added_at: int
    updated_at: int


@dataclass(slots=True)
class _Node:
    """Where one universe object sits in Plex: its type, section and parents."""

    rating_key: int
    type: str
    section: int
    obj: Movie | Show | Season | Episode | PlexCollection
    parent: _Node | None = None
    grandparent: _Node | None = None
    children: list[_Node] = field(default_factory=list)


def counted_plays(views: Iterable[View], user: str | None = OWNER) -> list[View]:
    """The plays Plex counts as watched (>= 90%), of ``user`` (``None`` = every user)."""
    return [v for v in views if v.percent_complete >= PLAYED_THRESHOLD and (user is None or v.user == user)]


# --------------------------------------------------------------------------------------------- rendering

_XML_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
)


def _xml_value(value: Any) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, str):
        return value.translate(_XML_ESCAPES)
    return str(value)


def _xml_parts(tag: str, data: dict[str, Any]) -> tuple[str, str]:
    """Render ``data`` the way PMS does: scalars become attributes, lists of dicts child elements.

    Returns the opening tag and the children; the caller closes with ``</tag>``.
    """
    attrs: list[str] = []
    children: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, list):
            for child in value:
                children.append(xml_element(key, child))
        elif isinstance(value, dict):
            children.append(xml_element(key, value))
        else:
            attrs.append(f' {key}="{_xml_value(value)}"')
    return f"<{tag}{''.join(attrs)}>", "".join(children)


def xml_element(tag: str, data: dict[str, Any]) -> str:
    """One XML element for ``data`` (see :func:`_xml_parts`); childless elements are self-closing."""
    head, body = _xml_parts(tag, data)
    if body:
        return f"{head}{body}</{tag}>"
    return head[:-1] + "/>"


def _element_tag(item_type: str) -> str:
    # PMS wraps playable items in <Video>, browsable ones (show, season, collection) in <Directory>.
    return "Video" if item_type in ("movie", "episode") else "Directory"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Page:
    """A MediaContainer whose items are prerendered fragments in one format."""

    __slots__ = ("attrs", "headers", "items")

    def __init__(self, attrs: dict[str, Any], items: list[str], headers: dict[str, str] | None = None) -> None:
        self.attrs = attrs
        self.items = items
        self.headers = headers or {}


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _respond(request: web.Request, page: _Page, child_key: str = "Metadata") -> web.Response:
    headers = {"X-Plex-Protocol": "1.0", **page.headers}
    if _wants_json(request):
        container = _dumps(page.attrs)
        if page.items:
            container = f'{container[:-1]},"{child_key}":[{",".join(page.items)}]}}'
        return web.Response(text=f'{{"MediaContainer":{container}}}', content_type="application/json", headers=headers)
    head, _ = _xml_parts("MediaContainer", page.attrs)
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n{head}{"".join(page.items)}</MediaContainer>\n'
    return web.Response(text=body, content_type="text/xml", charset="utf-8", headers=headers)


def _respond_dict(request: web.Request, container: dict[str, Any]) -> web.Response:
    """A small MediaContainer given as one dict (server root, sections): no caching needed."""
    if _wants_json(request):
        return web.Response(
            text=_dumps({"MediaContainer": container}),
            content_type="application/json",
            headers={"X-Plex-Protocol": "1.0"},
        )
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n{xml_element("MediaContainer", container)}\n'
    return web.Response(text=body, content_type="text/xml", charset="utf-8", headers={"X-Plex-Protocol": "1.0"})


def _html_error(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/html", headers={"X-Plex-Protocol": "1.0"})


def _not_found() -> web.Response:
    return _html_error(404, NOT_FOUND_BODY)


def _bad_request() -> web.Response:
    return _html_error(400, BAD_REQUEST_BODY)


# --------------------------------------------------------------------------------------------- state


class PlexState:
    """Everything the simulated server knows, plus the mutations tests and the demo use.

    Rendered items are cached per rating key; every mutation here invalidates what it touched. If a test
    edits universe objects directly instead, it must call :meth:`invalidate` afterwards.
    """

    def __init__(
        self,
        universe: Universe,
        *,
        token: str = "demo-plex-token",
        allow_media_deletion: bool = True,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.universe = universe
        self.token = token
        self.allow_media_deletion = allow_media_deletion
        self.clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self.deleted: set[int] = set()
        """Rating keys removed from Plex's view (API deletes, /_sim removals, cascades)."""
        self.empty_sections: set[int] = set()
        self._updated: dict[int, int] = {}
        self._nodes: dict[int, _Node] = {}
        self._max_key = 1000
        self._collections: dict[tuple[int, str], _Node] = {}
        self._members: dict[tuple[int, str], list[int]] | None = None
        self._orders: dict[tuple[int, int], list[int]] = {}
        self._xml: dict[int, tuple[str, str, str, str]] = {}
        self._json: dict[int, tuple[str, str]] = {}
        for movie in universe.movies:
            self._index_movie(movie)
        for show in universe.shows:
            self._index_show(show)
        for movie in universe.movies:
            for title in movie.collections:
                self._ensure_collection(MOVIES, title, movie.added_at)
        for show in universe.shows:
            for title in show.collections:
                self._ensure_collection(SHOWS, title, show.added_at)

    # ---- indexing

    def _next_key(self) -> int:
        return self._max_key + 1

    def _add_node(self, node: _Node) -> _Node:
        self._nodes[node.rating_key] = node
        self._max_key = max(self._max_key, node.rating_key)
        return node

    def _index_movie(self, movie: Movie) -> _Node:
        return self._add_node(_Node(movie.rating_key, "movie", MOVIES, movie))

    def _index_show(self, show: Show) -> _Node:
        node = self._add_node(_Node(show.rating_key, "show", SHOWS, show))
        for season in show.seasons:
            s_node = self._add_node(_Node(season.rating_key, "season", SHOWS, season, parent=node))
            node.children.append(s_node)
            for episode in season.episodes:
                e_node = _Node(episode.rating_key, "episode", SHOWS, episode, parent=s_node, grandparent=node)
                s_node.children.append(self._add_node(e_node))
        return node

    def _ensure_collection(self, section: int, title: str, added_at: int | None = None) -> _Node:
        node = self._collections.get((section, title))
        if node is None:
            now = self.clock() if added_at is None else added_at
            key = self._next_key()
            node = self._add_node(_Node(key, "collection", section, PlexCollection(key, section, title, now, now)))
            self._collections[(section, title)] = node
            self._structure_changed()
        return node

    # ---- cache invalidation

    def invalidate(self, rating_key: int | None = None) -> None:
        """Forget cached renderings of one item and its parents (or of everything when ``None``)."""
        if rating_key is None:
            self._xml.clear()
            self._json.clear()
            self._structure_changed()
            return
        node = self._nodes.get(rating_key)
        while node is not None:
            self._xml.pop(node.rating_key, None)
            self._json.pop(node.rating_key, None)
            node = node.parent

    def _structure_changed(self) -> None:
        self._orders.clear()
        self._members = None
        for node in self._collections.values():
            self._xml.pop(node.rating_key, None)
            self._json.pop(node.rating_key, None)

    def _touch(self, node: _Node) -> None:
        now = self.clock()
        n: _Node | None = node
        while n is not None:
            self._updated[n.rating_key] = now
            n = n.parent
        self.invalidate(node.rating_key)

    # ---- visibility

    def visible(self, node: _Node) -> bool:
        """Whether Plex currently shows ``node`` (not deleted, section mounted, has media below it)."""
        if node.rating_key in self.deleted or node.section in self.empty_sections:
            return False
        if node.type == "season":
            return any(e.rating_key not in self.deleted for e in node.children)
        if node.type == "show":
            return any(self.visible(s) for s in node.children)
        return True

    def node(self, rating_key: int) -> _Node | None:
        """The visible item with this rating key, or ``None``."""
        node = self._nodes.get(rating_key)
        return node if node is not None and self.visible(node) else None

    def _visible_children(self, node: _Node) -> list[_Node]:
        if node.type == "collection":
            return [self._nodes[k] for k in self._collection_members(node)]
        return [c for c in node.children if self.visible(c)]

    def _leaves(self, node: _Node) -> list[_Node]:
        if node.type == "show":
            return [e for s in self._visible_children(node) for e in self._visible_children(s)]
        if node.type == "season":
            return self._visible_children(node)
        return []

    def _members_index(self) -> dict[tuple[int, str], list[int]]:
        if self._members is None:
            members: dict[tuple[int, str], list[int]] = {k: [] for k in self._collections}
            for node in self._nodes.values():
                if node.type in ("movie", "show"):
                    for title in node.obj.collections:  # type: ignore[union-attr]
                        members.setdefault((node.section, title), []).append(node.rating_key)
            self._members = members
        return self._members

    def _collection_members(self, node: _Node) -> list[int]:
        col = node.obj
        assert isinstance(col, PlexCollection)
        keys = [k for k in self._members_index().get((col.section, col.title), []) if self.visible(self._nodes[k])]
        keys.sort(key=lambda k: (self._title(self._nodes[k]).lower(), k))
        return keys

    # ---- derived fields

    @staticmethod
    def _title(node: _Node) -> str:
        obj = node.obj
        if isinstance(obj, Season):
            return f"Season {obj.index}"
        return obj.title

    def _added_at(self, node: _Node) -> int:
        obj = node.obj
        if isinstance(obj, Season):
            return min((e.added_at for e in obj.episodes), default=node.parent.obj.added_at)  # type: ignore[union-attr]
        return obj.added_at

    def _updated_at(self, node: _Node) -> int:
        return self._updated.get(node.rating_key) or self._added_at(node)

    def _play_stats(self, node: _Node) -> tuple[int, int | None, int, int]:
        """(viewCount, lastViewedAt, leafCount, viewedLeafCount) for the token owner."""
        if node.type in ("movie", "episode"):
            plays = counted_plays(node.obj.views)  # type: ignore[union-attr]
            return len(plays), max((v.at for v in plays), default=None), 1, 1 if plays else 0
        count, last, leaves, viewed = 0, None, 0, 0
        for leaf in self._leaves(node):
            c, at, _, v = self._play_stats(leaf)
            count += c
            leaves += 1
            viewed += v
            if at is not None and (last is None or at > last):
                last = at
        return count, last, leaves, viewed

    def _guid(self, node: _Node) -> str:
        # Deterministic stand-ins for Plex's 24-hex metadata ids.
        return f"plex://{node.type}/5d{node.rating_key:022x}"

    def _guids(self, node: _Node) -> list[dict[str, str]]:
        obj = node.obj
        if isinstance(obj, Movie):
            return [{"id": f"imdb://{obj.imdb}"}, {"id": f"tmdb://{obj.tmdb}"}]
        if isinstance(obj, Show):
            return [{"id": f"imdb://{obj.imdb}"}, {"id": f"tmdb://{obj.tmdb}"}, {"id": f"tvdb://{obj.tvdb}"}]
        return []  # the universe has no per-episode/season external ids

    def _media(self, node: _Node) -> list[dict[str, Any]]:
        obj = node.obj
        assert isinstance(obj, Movie | Episode)
        seconds = MOVIE_SECONDS if isinstance(obj, Movie) else EPISODE_SECONDS
        duration = seconds * 1000
        resolution = "4k" if isinstance(obj, Movie) and obj.radarr == "radarr4k" else "1080"
        part = {
            "id": node.rating_key,
            "key": f"/library/parts/{node.rating_key}/{obj.added_at}/file.mkv",
            "duration": duration,
            "file": obj.file,
            "size": obj.size,
            "container": "mkv",
        }
        return [
            {
                "id": node.rating_key,
                "duration": duration,
                "bitrate": obj.size * 8 // duration,
                "videoResolution": resolution,
                "container": "mkv",
                "Part": [part],
            }
        ]

    def item_dict(self, node: _Node, *, guids: bool = True, section_fields: bool = False) -> dict[str, Any]:
        """The item as PMS renders it in JSON (``Guid`` only when asked, section fields for detail views)."""
        obj = node.obj
        rk = node.rating_key
        title = self._title(node)
        d: dict[str, Any] = {"ratingKey": str(rk)}
        if node.type == "collection":
            assert isinstance(obj, PlexCollection)
            members = [self._nodes[k].obj for k in self._collection_members(node)]
            years = [m.year for m in members]  # type: ignore[union-attr]
            d.update(
                key=f"/library/collections/{rk}/children",
                guid=f"collection://{SECTIONS[obj.section].uuid[:24]}{rk:012x}",
                type="collection",
                title=title,
                subtype=SECTIONS[obj.section].type,
                summary="",
                index=1,
                # Real PMS JSON carries these as strings (contract example section_collections.json).
                childCount=str(len(members)),
                maxYear=str(max(years)) if years else None,
                minYear=str(min(years)) if years else None,
                thumb=f"/library/collections/{rk}/composite/{obj.updated_at}",
                addedAt=obj.added_at,
                updatedAt=obj.updated_at,
                smart="0",
            )
        else:
            key = f"/library/metadata/{rk}"
            d["key"] = f"{key}/children" if node.type in ("show", "season") else key
            parent, grandparent = node.parent, node.grandparent
            if parent is not None:
                d["parentRatingKey"] = str(parent.rating_key)
            if grandparent is not None:
                d["grandparentRatingKey"] = str(grandparent.rating_key)
            d["guid"] = self._guid(node)
            if parent is not None:
                d["parentGuid"] = self._guid(parent)
            if grandparent is not None:
                d["grandparentGuid"] = self._guid(grandparent)
            d["type"] = node.type
            d["title"] = title
            if grandparent is not None:
                d["grandparentKey"] = f"/library/metadata/{grandparent.rating_key}"
                d["grandparentTitle"] = self._title(grandparent)
            if parent is not None:
                d["parentKey"] = f"/library/metadata/{parent.rating_key}"
                d["parentTitle"] = self._title(parent)
            if isinstance(obj, Season | Episode):
                d["index"] = obj.index
            if isinstance(obj, Episode):
                d["parentIndex"] = parent.obj.index  # type: ignore[union-attr]
            d["summary"] = ""
            view_count, last_viewed, leaves, viewed_leaves = self._play_stats(node)
            if view_count:
                d["viewCount"] = view_count
                d["lastViewedAt"] = last_viewed
            year = obj.year if isinstance(obj, Movie | Show) else (grandparent or parent).obj.year  # type: ignore[union-attr]
            d["year"] = year
            updated_at = self._updated_at(node)
            d["thumb"] = f"/library/metadata/{rk}/thumb/{updated_at}"
            if node.type in ("movie", "episode"):
                d["duration"] = (MOVIE_SECONDS if node.type == "movie" else EPISODE_SECONDS) * 1000
            elif node.type == "show":
                d["duration"] = EPISODE_SECONDS * 1000
            if node.type in ("show", "season"):
                d["leafCount"] = leaves
                d["viewedLeafCount"] = viewed_leaves
            if node.type == "show":
                d["childCount"] = len(self._visible_children(node))
            d["addedAt"] = self._added_at(node)
            d["updatedAt"] = updated_at
            if node.type in ("movie", "episode"):
                d["Media"] = self._media(node)
            if isinstance(obj, Movie | Show):
                d["Label"] = [{"tag": t} for t in obj.labels] or None
                d["Collection"] = [{"tag": t} for t in obj.collections] or None
        if guids:
            g = self._guids(node)
            if g:
                d["Guid"] = g
        if section_fields:
            section = SECTIONS[node.section]
            d["librarySectionTitle"] = section.title
            d["librarySectionID"] = section.key
            d["librarySectionKey"] = f"/library/sections/{section.key}"
        return {k: v for k, v in d.items() if v is not None}

    # ---- cached list renderings

    def render_xml(self, node: _Node, guids: bool) -> str:
        cached = self._xml.get(node.rating_key)
        if cached is None:
            tag = _element_tag(node.type)
            head, body = _xml_parts(tag, self.item_dict(node, guids=False))
            guid_xml = "".join(f'<Guid id="{_xml_value(g["id"])}"/>' for g in self._guids(node))
            cached = (head, body, guid_xml, f"</{tag}>")
            self._xml[node.rating_key] = cached
        head, body, guid_xml, close = cached
        return f"{head}{body}{guid_xml}{close}" if guids else f"{head}{body}{close}"

    def render_json(self, node: _Node, guids: bool) -> str:
        cached = self._json.get(node.rating_key)
        if cached is None:
            g = self._guids(node)
            cached = (_dumps(self.item_dict(node, guids=False)), _dumps(g) if g else "")
            self._json[node.rating_key] = cached
        base, guid_json = cached
        if guids and guid_json:
            return f'{base[:-1]},"Guid":{guid_json}}}'
        return base

    # ---- listings

    def listing(self, section: int, type_id: int) -> list[int]:
        """Visible rating keys of ``type_id`` in ``section``, in PMS's default order (by title)."""
        if section in self.empty_sections:
            return []
        cached = self._orders.get((section, type_id))
        if cached is not None:
            return cached
        type_name = TYPE_NAMES.get(type_id)
        nodes = [n for n in self._nodes.values() if n.section == section and n.type == type_name and self.visible(n)]
        if type_name == "season":
            nodes.sort(key=lambda n: (self._title(n.parent).lower(), n.parent.rating_key, n.obj.index))  # type: ignore[union-attr,arg-type]
        elif type_name == "episode":
            nodes.sort(
                key=lambda n: (
                    self._title(n.grandparent).lower(),  # type: ignore[arg-type]
                    n.grandparent.rating_key,  # type: ignore[union-attr]
                    n.parent.obj.index,  # type: ignore[union-attr]
                    n.obj.index,  # type: ignore[union-attr]
                )
            )
        else:
            nodes.sort(key=lambda n: (self._title(n).lower(), n.rating_key))
        keys = [n.rating_key for n in nodes]
        self._orders[(section, type_id)] = keys
        return keys

    def field_value(self, node: _Node, name: str) -> Any:
        """A sortable/filterable field (``addedAt``, ``updatedAt``, ``lastViewedAt``, ``viewCount``, ...)."""
        if name in ("title", "titleSort"):
            return self._title(node).lower()
        if name == "addedAt":
            return self._added_at(node)
        if name == "updatedAt":
            return self._updated_at(node)
        if name == "ratingKey":
            return node.rating_key
        if name in ("lastViewedAt", "viewCount"):
            count, last, _, _ = self._play_stats(node)
            return (last or 0) if name == "lastViewedAt" else count
        if name == "year":
            return getattr(node.obj, "year", 0)
        raise KeyError(name)

    # ---- mutations

    def add_movie(
        self,
        title: str,
        *,
        year: int = 2020,
        size: int = 4 * 1024**3,
        file: str | None = None,
        tmdb: int | None = None,
        imdb: str | None = None,
        labels: Iterable[str] = (),
        collections: Iterable[str] = (),
        added_at: int | None = None,
    ) -> Movie:
        """Add a movie to the universe (not in any Radarr) and to Plex's Movies section."""
        key = self._next_key()
        movie = Movie(
            rating_key=key,
            title=title,
            year=year,
            tmdb=tmdb if tmdb is not None else 900_000 + key,
            imdb=imdb or f"tt{9_000_000 + key:07d}",
            size=size,
            added_at=added_at if added_at is not None else self.clock(),
            file=file or f"/data/movies/{title} ({year})/{title} ({year}).mkv",
            labels=list(labels),
            collections=list(collections),
            views=[],
            radarr=None,
            monitored=False,
            tags=[],
            quality_profile_id=1,
            request=None,
        )
        self.universe.movies.append(movie)
        self._index_movie(movie)
        for name in movie.collections:
            self._ensure_collection(MOVIES, name)
        self._structure_changed()
        return movie

    def add_show(
        self,
        title: str,
        *,
        year: int = 2020,
        seasons: int = 1,
        episodes: int = 3,
        episode_size: int = 1024**3,
        tvdb: int | None = None,
        tmdb: int | None = None,
        imdb: str | None = None,
        labels: Iterable[str] = (),
        added_at: int | None = None,
    ) -> Show:
        """Add a show with ``seasons`` x ``episodes`` episodes to the universe and the TV Shows section."""
        added = added_at if added_at is not None else self.clock()
        show_key = self._next_key()
        key = show_key
        season_list: list[Season] = []
        for s in range(1, seasons + 1):
            key += 1
            season = Season(rating_key=key, index=s)
            for e in range(1, episodes + 1):
                key += 1
                season.episodes.append(
                    Episode(
                        rating_key=key,
                        index=e,
                        title=f"Episode {e}",
                        size=episode_size,
                        added_at=added,
                        file=f"/data/tv/{title}/Season {s:02d}/{title} - S{s:02d}E{e:02d}.mkv",
                    )
                )
            season_list.append(season)
        show = Show(
            rating_key=show_key,
            title=title,
            year=year,
            tvdb=tvdb if tvdb is not None else 900_000 + show_key,
            tmdb=tmdb if tmdb is not None else 900_000 + show_key,
            imdb=imdb or f"tt{9_000_000 + show_key:07d}",
            added_at=added,
            status="continuing",
            labels=list(labels),
            collections=[],
            seasons=season_list,
            sonarr=None,
            monitored=False,
            tags=[],
            quality_profile_id=1,
            request=None,
        )
        self.universe.shows.append(show)
        self._index_show(show)
        self._structure_changed()
        return show

    def _require(self, rating_key: int) -> _Node:
        node = self._nodes.get(rating_key)
        if node is None:
            raise KeyError(f"no Plex item with ratingKey {rating_key}")
        return node

    def update_item(
        self,
        rating_key: int,
        *,
        title: str | None = None,
        size: int | None = None,
        file: str | None = None,
        labels: Iterable[str] | None = None,
        collections: Iterable[str] | None = None,
        added_at: int | None = None,
    ) -> None:
        """Change an item the way a rescan or an edit in Plex would; bumps its ``updatedAt``.

        ``size``/``file`` apply to movies and episodes only, ``labels``/``collections`` to movies and shows.
        Raises ``KeyError`` for an unknown key and ``ValueError`` for a field the item type does not have.
        """
        node = self._require(rating_key)
        obj = node.obj
        if isinstance(obj, PlexCollection):
            raise ValueError("collections are edited through the collections API")
        if (size is not None or file is not None) and not isinstance(obj, Movie | Episode):
            raise ValueError(f"{node.type} {rating_key} has no file of its own")
        if (labels is not None or collections is not None) and not isinstance(obj, Movie | Show):
            raise ValueError(f"{node.type} {rating_key} has no labels/collections here")
        if title is not None:
            if isinstance(obj, Season):
                raise ValueError("season titles are derived from their index")
            obj.title = title
            self._structure_changed()
            for child in node.children:
                self.invalidate(child.rating_key)
                for grandchild in child.children:
                    self.invalidate(grandchild.rating_key)
        if size is not None:
            obj.size = size  # type: ignore[union-attr]
        if file is not None:
            obj.file = file  # type: ignore[union-attr]
        if added_at is not None:
            if isinstance(obj, Season):
                raise ValueError("a season's addedAt is its first episode's")
            obj.added_at = added_at
        if labels is not None:
            obj.labels = list(labels)  # type: ignore[union-attr]
        if collections is not None:
            self._set_collections(node, list(collections))
        self._touch(node)

    def _set_collections(self, node: _Node, titles: list[str]) -> None:
        obj = node.obj
        assert isinstance(obj, Movie | Show)
        obj.collections = list(dict.fromkeys(titles))
        for title in obj.collections:
            self._ensure_collection(node.section, title)
        self._structure_changed()
        self.invalidate(node.rating_key)

    def mark_played(self, rating_key: int, user: str = OWNER, at: int | None = None) -> None:
        """Record a complete play (a show or season: each of its episodes); ``at`` defaults to now."""
        node = self._require(rating_key)
        at = at if at is not None else self.clock()
        leaves = [node] if node.type in ("movie", "episode") else self._leaves(node)
        if not leaves:
            raise ValueError(f"{node.type} {rating_key} cannot be played")
        for leaf in leaves:
            seconds = MOVIE_SECONDS if leaf.type == "movie" else EPISODE_SECONDS
            leaf.obj.views.append(View(user, at, 100, seconds))  # type: ignore[union-attr]
            self._touch(leaf)

    def remove_item(self, rating_key: int) -> list[int]:
        """Take an item (with its seasons/episodes) out of Plex; returns every rating key removed.

        A collection is deleted as a collection (its members stay). Raises ``KeyError`` when not visible.
        """
        node = self.node(rating_key)
        if node is None:
            raise KeyError(f"no Plex item with ratingKey {rating_key}")
        if node.type == "collection":
            col = node.obj
            assert isinstance(col, PlexCollection)
            for key in self._members_index().get((col.section, col.title), []):
                member = self._nodes[key]
                member.obj.collections.remove(col.title)  # type: ignore[union-attr]
                self.invalidate(key)
            del self._collections[(col.section, col.title)]
            del self._nodes[rating_key]
            self.invalidate(rating_key)
            self._structure_changed()
            return [rating_key]
        removed = [rating_key]
        for child in node.children:
            removed.append(child.rating_key)
            removed.extend(g.rating_key for g in child.children)
        removed = [k for k in removed if k not in self.deleted]
        self.deleted.update(removed)
        for key in removed:
            self.invalidate(key)
        self._structure_changed()
        return removed

    def set_section_empty(self, section: int, empty: bool = True) -> None:
        """Make a section list nothing (its disk is unmounted) or bring its items back."""
        if section not in SECTIONS:
            raise KeyError(f"no section {section}")
        if empty:
            self.empty_sections.add(section)
        else:
            self.empty_sections.discard(section)
        self._structure_changed()

    # ---- collections API

    def create_collection(self, section: int, title: str, rating_keys: Iterable[int]) -> _Node:
        """A regular collection holding ``rating_keys`` (movies or shows of ``section``)."""
        node = self._ensure_collection(section, title)
        self.add_to_collection(node.rating_key, rating_keys)
        return node

    def collection(self, rating_key: int) -> _Node | None:
        node = self.node(rating_key)
        return node if node is not None and node.type == "collection" else None

    def add_to_collection(self, collection_key: int, rating_keys: Iterable[int]) -> None:
        col_node = self._require(collection_key)
        col = col_node.obj
        assert isinstance(col, PlexCollection)
        for key in rating_keys:
            item = self.node(key)
            if item is None or item.section != col.section or item.type not in ("movie", "show"):
                raise KeyError(f"no movie/show {key} in section {col.section}")
            names = item.obj.collections  # type: ignore[union-attr]
            if col.title not in names:
                names.append(col.title)
                self._touch(item)
        col.updated_at = self.clock()
        self._structure_changed()

    def remove_from_collection(self, collection_key: int, rating_key: int) -> None:
        col = self._require(collection_key).obj
        assert isinstance(col, PlexCollection)
        item = self._require(rating_key)
        names = getattr(item.obj, "collections", [])
        if col.title in names:
            names.remove(col.title)
            self._touch(item)
        col.updated_at = self.clock()
        self._structure_changed()

    def collection_keys(self, section: int) -> list[int]:
        return [n.rating_key for n in self._collections.values() if n.section == section]

    # ---- history

    def history(self) -> list[dict[str, Any]]:
        """Every counted play of every user on visible movies/episodes, oldest first, with history ids."""
        plays: list[tuple[int, int, str, _Node]] = []
        for node in self._nodes.values():
            if node.type in ("movie", "episode") and self.visible(node):
                for view in counted_plays(node.obj.views, None):  # type: ignore[union-attr]
                    plays.append((view.at, node.rating_key, view.user, node))
        plays.sort(key=lambda p: (p[0], p[1], p[2]))
        rows = []
        for i, (at, rk, user, node) in enumerate(plays, start=1):
            row: dict[str, Any] = {
                "historyKey": f"/status/sessions/history/{i}",
                "key": f"/library/metadata/{rk}",
                "ratingKey": str(rk),
                "librarySectionID": str(node.section),
                "parentKey": None,
                "grandparentKey": None,
                "title": self._title(node),
                "grandparentTitle": None,
                "type": node.type,
                "thumb": f"/library/metadata/{rk}/thumb/{self._updated_at(node)}",
                "originallyAvailableAt": None,
                "viewedAt": at,
                "accountID": ACCOUNT_IDS.get(user, 99),
                "deviceID": ACCOUNT_IDS.get(user, 99),
            }
            if node.type == "episode":
                row["parentKey"] = f"/library/metadata/{node.parent.rating_key}"  # type: ignore[union-attr]
                row["grandparentKey"] = f"/library/metadata/{node.grandparent.rating_key}"  # type: ignore[union-attr]
                row["grandparentTitle"] = self._title(node.grandparent)  # type: ignore[arg-type]
                row["index"] = node.obj.index  # type: ignore[union-attr]
                row["parentIndex"] = node.parent.obj.index  # type: ignore[union-attr]
            rows.append({k: v for k, v in row.items() if v is not None})
        return rows

    # ---- introspection for tests and /_sim

    def summary(self) -> dict[str, Any]:
        return {
            "allow_media_deletion": self.allow_media_deletion,
            "empty_sections": sorted(self.empty_sections),
            "deleted": sorted(self.deleted),
            "machine_identifier": self.universe.machine_identifier,
            "counts": {
                str(s): {TYPE_NAMES[t]: len(self.listing(s, t)) for t in (1, 2, 3, 4) if self.listing(s, t)}
                for s in SECTIONS
            },
            "collections": {
                str(n.rating_key): {"section": n.section, "title": n.obj.title}  # type: ignore[union-attr]
                for n in self._collections.values()
            },
        }


PLEX_STATE = web.AppKey("plex_state", PlexState)


# ------------------------------------------------------------------------------------------ request parsing


class _BadParam(Exception):
    """A malformed query parameter or header; the app answers 400 (see :func:`_auth_middleware`)."""


def _query_int(request: web.Request, name: str) -> int | None:
    return _int_param(request, name, headers=False)


def _int_param(request: web.Request, name: str, *, headers: bool = True) -> int | None:
    """A non-negative integer from the query string or (X-Plex-* style) a header of the same name."""
    raw = request.query.get(name)
    if raw is None and headers:
        raw = request.headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise _BadParam(name) from exc
    if value < 0:
        raise _BadParam(name)
    return value


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">>": lambda a, b: a > b,
    "<<": lambda a, b: a < b,
    ">": lambda a, b: a >= b,
    "<": lambda a, b: a <= b,
    "": lambda a, b: a == b,
    "!": lambda a, b: a != b,
}
_FILTER_FIELDS = ("addedAt", "updatedAt", "lastViewedAt", "viewCount", "year")


def _filters(request: web.Request) -> list[tuple[str, Callable[[Any, Any], bool], int]]:
    """PMS-style filters on numeric fields: ``addedAt>>=N`` (after), ``updatedAt<<=N`` (before), ..."""
    out = []
    for raw_key, raw_value in request.query.items():
        for name in _FILTER_FIELDS:
            if raw_key.startswith(name) and raw_key[len(name) :] in _OPERATORS:
                try:
                    out.append((name, _OPERATORS[raw_key[len(name) :]], int(raw_value)))
                except ValueError as exc:
                    raise _BadParam(raw_key) from exc
    return out


def _sorted(state: PlexState, keys: list[int], sort: str | None) -> list[int]:
    if not sort:
        return keys
    name, _, direction = sort.split(",")[0].partition(":")
    try:
        values = {k: state.field_value(state._nodes[k], name) for k in keys}
    except KeyError as exc:
        raise _BadParam("sort") from exc
    return sorted(keys, key=lambda k: (values[k], k), reverse=direction == "desc")


def _page(
    request: web.Request,
    state: PlexState,
    keys: list[int],
    attrs: dict[str, Any],
    *,
    guids: bool,
) -> web.Response:
    """Slice ``keys`` by X-Plex-Container-Start/Size (header or query) and render the page."""
    start = _int_param(request, "X-Plex-Container-Start") or 0
    size = _int_param(request, "X-Plex-Container-Size")
    total = len(keys)
    chunk = keys[start:] if size is None else keys[start : start + size]
    render = state.render_json if _wants_json(request) else state.render_xml
    nodes = state._nodes
    items = [render(nodes[k], guids) for k in chunk]
    container = {"size": len(items), "totalSize": total, "offset": start, **attrs}
    headers = {"X-Plex-Container-Start": str(start), "X-Plex-Container-Total-Size": str(total)}
    return _respond(request, _Page(container, items, headers))


def _section_attrs(section: Section, type_id: int) -> dict[str, Any]:
    name = TYPE_NAMES.get(type_id, section.type)
    return {
        "allowSync": True,
        "art": f"/:/resources/{section.type}-fanart.jpg",
        "identifier": IDENTIFIER,
        "librarySectionID": section.key,
        "librarySectionTitle": section.title,
        "librarySectionUUID": section.uuid,
        "mediaTagPrefix": MEDIA_TAG_PREFIX,
        "mediaTagVersion": MEDIA_TAG_VERSION,
        "thumb": f"/:/resources/{section.type}.png",
        "title1": section.title,
        "title2": f"All {name.capitalize()}s",
        "viewGroup": name,
    }


def _rating_key(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------- handlers


def _state(request: web.Request) -> PlexState:
    return request.app[PLEX_STATE]


async def _root(request: web.Request) -> web.Response:
    state = _state(request)
    return _respond_dict(
        request,
        {
            "size": 0,
            "allowCameraUpload": False,
            "allowChannelAccess": True,
            "allowMediaDeletion": state.allow_media_deletion,
            "allowSharing": True,
            "allowSync": True,
            "backgroundProcessing": True,
            "certificate": False,
            "companionProxy": True,
            "eventStream": True,
            "friendlyName": "smartplexd demo Plex",
            "hubSearch": True,
            "machineIdentifier": state.universe.machine_identifier,
            "multiuser": True,
            "myPlex": True,
            "myPlexMappingState": "mapped",
            "myPlexSigninState": "ok",
            "myPlexSubscription": True,
            "myPlexUsername": OWNER,
            "platform": "Linux",
            "platformVersion": "6.1",
            "pluginHost": True,
            "readOnlyLibraries": False,
            "requestParametersInCookie": True,
            "sync": True,
            "transcoderActiveVideoSessions": 0,
            "transcoderAudio": True,
            "transcoderVideo": True,
            "updatedAt": state.universe.now,
            "updater": False,
            "version": VERSION,
            "voiceSearch": True,
        },
    )


async def _identity(request: web.Request) -> web.Response:
    return _respond_dict(
        request,
        {
            "size": 0,
            "apiVersion": "1.1.1",
            "claimed": True,
            "machineIdentifier": _state(request).universe.machine_identifier,
            "version": VERSION,
        },
    )


async def _library(request: web.Request) -> web.Response:
    return _respond_dict(
        request,
        {
            "size": 3,
            "allowSync": False,
            "art": "/:/resources/library-art.png",
            "content": "secondary",
            "identifier": IDENTIFIER,
            "mediaTagPrefix": MEDIA_TAG_PREFIX,
            "mediaTagVersion": MEDIA_TAG_VERSION,
            "title1": "Plex Library",
            "title2": "",
            "Directory": [
                {"key": "sections", "title": "Library Sections"},
                {"key": "recentlyAdded", "title": "Recently Added Content"},
                {"key": "onDeck", "title": "On Deck Content"},
            ],
        },
    )


async def _sections(request: web.Request) -> web.Response:
    state = _state(request)
    now = state.universe.now
    directories = [
        {
            "allowSync": True,
            "art": f"/:/resources/{s.type}-fanart.jpg",
            "composite": f"/library/sections/{s.key}/composite/{now}",
            "filters": True,
            "refreshing": False,
            "thumb": f"/:/resources/{s.type}.png",
            "key": str(s.key),
            "type": s.type,
            "title": s.title,
            "agent": s.agent,
            "scanner": s.scanner,
            "language": "en-US",
            "uuid": s.uuid,
            "updatedAt": now,
            "createdAt": 1556281940,
            "scannedAt": now,
            "content": True,
            "directory": True,
            "contentChangedAt": now,
            "hidden": 0,
            "Location": [{"id": s.key, "path": s.location}],
        }
        for s in SECTIONS.values()
    ]
    return _respond_dict(
        request,
        {"size": len(directories), "allowSync": False, "title1": "Plex Library", "Directory": directories},
    )


def _section_or_none(request: web.Request) -> Section | None:
    key = _rating_key(request.match_info["section"])
    return SECTIONS.get(key) if key is not None else None


async def _section_all(request: web.Request) -> web.Response:
    state = _state(request)
    section = _section_or_none(request)
    if section is None:
        return _not_found()
    type_id = _query_int(request, "type") or section.default_type
    filters = _filters(request)
    keys = _collection_listing(state, section) if type_id == 18 else state.listing(section.key, type_id)
    if filters:
        nodes = state._nodes
        keys = [k for k in keys if all(op(state.field_value(nodes[k], f), v) for f, op, v in filters)]
    title = request.query.get("title")
    if title:
        needle = title.lower()
        keys = [k for k in keys if needle in state._title(state._nodes[k]).lower()]
    keys = _sorted(state, keys, request.query.get("sort"))
    return _page(request, state, keys, _section_attrs(section, type_id), guids=_guids_param(request))


def _collection_listing(state: PlexState, section: Section) -> list[int]:
    if section.key in state.empty_sections:
        return []
    keys = state.collection_keys(section.key)
    return sorted(keys, key=lambda k: (state._title(state._nodes[k]).lower(), k))


def _guids_param(request: web.Request) -> bool:
    return request.query.get("includeGuids", "0") == "1"


async def _section_collections(request: web.Request) -> web.Response:
    state = _state(request)
    section = _section_or_none(request)
    if section is None:
        return _not_found()
    return _page(request, state, _collection_listing(state, section), _section_attrs(section, 18), guids=False)


async def _section_edit(request: web.Request) -> web.Response:
    """``PUT /library/sections/{id}/all?type=&id=k1,k2&collection[0].tag.tag=..`` — plexapi's tag edits."""
    state = _state(request)
    section = _section_or_none(request)
    if section is None:
        return _not_found()
    query = request.query
    nodes = []
    for raw in query.get("id", "").split(","):
        key = _rating_key(raw)
        node = state.node(key) if key is not None else None
        if node is None or node.section != section.key:
            return _not_found()
        nodes.append(node)
    try:
        _apply_tag_edits(state, nodes, query)
    except ValueError:
        return _bad_request()
    return web.Response(status=200, headers={"X-Plex-Protocol": "1.0"})


def _apply_tag_edits(state: PlexState, nodes: list[_Node], query: Any) -> None:
    for tag in ("collection", "label"):
        added = [v for k, v in query.items() if k.startswith(f"{tag}[") and k.endswith("].tag.tag") and v]
        removed_raw = query.get(f"{tag}[].tag.tag-")
        # plexapi quotes each name, joins with ",", then the whole value is quoted once more.
        removed = [unquote(v) for v in removed_raw.split(",")] if removed_raw else []
        if not added and not removed:
            continue
        for node in nodes:
            if not isinstance(node.obj, Movie | Show):
                raise ValueError(f"{node.type} items carry no {tag} tags")
            current = node.obj.collections if tag == "collection" else node.obj.labels
            names = [n for n in dict.fromkeys([*current, *added]) if n not in removed]
            if tag == "collection":
                state.update_item(node.rating_key, collections=names)
            else:
                state.update_item(node.rating_key, labels=names)
    if "title.value" in query:
        for node in nodes:
            state.update_item(node.rating_key, title=query["title.value"])


async def _section_refresh(request: web.Request) -> web.Response:
    if _section_or_none(request) is None:
        return _not_found()
    return web.Response(status=200, headers={"X-Plex-Protocol": "1.0"})


def _detail_attrs(section: Section) -> dict[str, Any]:
    return {
        "allowSync": True,
        "identifier": IDENTIFIER,
        "librarySectionID": section.key,
        "librarySectionTitle": section.title,
        "librarySectionUUID": section.uuid,
        "mediaTagPrefix": MEDIA_TAG_PREFIX,
        "mediaTagVersion": MEDIA_TAG_VERSION,
    }


def _detail_response(request: web.Request, state: PlexState, nodes: list[_Node]) -> web.Response:
    dicts = [state.item_dict(n, guids=True, section_fields=True) for n in nodes]
    if _wants_json(request):
        items = [_dumps(d) for d in dicts]
    else:
        items = [xml_element(_element_tag(n.type), d) for n, d in zip(nodes, dicts, strict=True)]
    attrs = {"size": len(items), **_detail_attrs(SECTIONS[nodes[0].section])}
    return _respond(request, _Page(attrs, items))


async def _metadata(request: web.Request) -> web.Response:
    state = _state(request)
    nodes = []
    for raw in request.match_info["ids"].split(","):
        key = _rating_key(raw)
        node = state.node(key) if key is not None else None
        if node is not None:
            nodes.append(node)
    if not nodes:
        return _not_found()
    return _detail_response(request, state, nodes)


def _node_from_path(request: web.Request, name: str = "key") -> _Node | None:
    key = _rating_key(request.match_info[name])
    return _state(request).node(key) if key is not None else None


async def _children(request: web.Request) -> web.Response:
    state = _state(request)
    node = _node_from_path(request)
    if node is None:
        return _not_found()
    section = SECTIONS[node.section]
    keys = [c.rating_key for c in state._visible_children(node)]
    attrs: dict[str, Any] = {
        "allowSync": True,
        "identifier": IDENTIFIER,
        "key": str(node.rating_key),
        "librarySectionID": section.key,
        "librarySectionTitle": section.title,
        "librarySectionUUID": section.uuid,
        "mediaTagPrefix": MEDIA_TAG_PREFIX,
        "mediaTagVersion": MEDIA_TAG_VERSION,
        "title1": state._title(node.parent or node) if node.type == "season" else section.title,
        "title2": state._title(node),
        "viewGroup": {"show": "season", "season": "episode"}.get(node.type, section.type),
    }
    return _page(request, state, keys, attrs, guids=_guids_param(request))


async def _all_leaves(request: web.Request) -> web.Response:
    state = _state(request)
    node = _node_from_path(request)
    if node is None:
        return _not_found()
    section = SECTIONS[node.section]
    keys = [leaf.rating_key for leaf in state._leaves(node)]
    attrs = {**_detail_attrs(section), "key": str(node.rating_key), "title1": section.title}
    attrs["title2"] = state._title(node)
    attrs["viewGroup"] = "episode"
    return _page(request, state, keys, attrs, guids=_guids_param(request))


async def _delete_metadata(request: web.Request) -> web.Response:
    state = _state(request)
    node = _node_from_path(request)
    if node is None:
        return _not_found()
    # Deleting a collection removes the collection object, never media, so the setting does not apply.
    if node.type != "collection" and not state.allow_media_deletion:
        return _bad_request()
    state.remove_item(node.rating_key)
    return web.Response(status=200, headers={"X-Plex-Protocol": "1.0"})


def _parse_uri_keys(uri: str, machine: str) -> list[int] | None:
    prefix = f"server://{machine}/{IDENTIFIER}/library/metadata/"
    if not uri.startswith(prefix):
        return None
    keys = [_rating_key(k) for k in uri[len(prefix) :].split(",")]
    return None if any(k is None for k in keys) else keys  # type: ignore[return-value]


async def _create_collection(request: web.Request) -> web.Response:
    state = _state(request)
    query = request.query
    section_key = _rating_key(query.get("sectionId", ""))
    title = query.get("title", "").strip()
    if section_key not in SECTIONS or not title:
        return _bad_request()
    if query.get("smart", "0") not in ("0", ""):
        # Smart collections are filters over the library; nothing in smartplexd needs them simulated.
        return _bad_request()
    keys = _parse_uri_keys(query.get("uri", ""), state.universe.machine_identifier)
    if keys is None:
        return _bad_request()
    try:
        node = state.create_collection(section_key, title, keys)  # type: ignore[arg-type]
    except KeyError:
        return _bad_request()
    return _detail_response(request, state, [node])


def _collection_from_path(request: web.Request) -> _Node | None:
    key = _rating_key(request.match_info["collection"])
    return _state(request).collection(key) if key is not None else None


async def _collection_detail(request: web.Request) -> web.Response:
    node = _collection_from_path(request)
    if node is None:
        return _not_found()
    return _detail_response(request, _state(request), [node])


async def _collection_items(request: web.Request) -> web.Response:
    state = _state(request)
    node = _collection_from_path(request)
    if node is None:
        return _not_found()
    section = SECTIONS[node.section]
    attrs = {**_detail_attrs(section), "key": str(node.rating_key), "title1": section.title}
    attrs["title2"] = state._title(node)
    return _page(request, state, state._collection_members(node), attrs, guids=_guids_param(request))


async def _collection_add(request: web.Request) -> web.Response:
    state = _state(request)
    node = _collection_from_path(request)
    if node is None:
        return _not_found()
    keys = _parse_uri_keys(request.query.get("uri", ""), state.universe.machine_identifier)
    if keys is None:
        return _bad_request()
    try:
        state.add_to_collection(node.rating_key, keys)
    except KeyError:
        return _bad_request()
    return _detail_response(request, state, [node])


async def _collection_remove(request: web.Request) -> web.Response:
    state = _state(request)
    node = _collection_from_path(request)
    item = _node_from_path(request, "item")
    if node is None or item is None:
        return _not_found()
    state.remove_from_collection(node.rating_key, item.rating_key)
    return _detail_response(request, state, [node])


async def _collection_delete(request: web.Request) -> web.Response:
    node = _collection_from_path(request)
    if node is None:
        return _not_found()
    _state(request).remove_item(node.rating_key)
    return web.Response(status=200, headers={"X-Plex-Protocol": "1.0"})


async def _history(request: web.Request) -> web.Response:
    state = _state(request)
    query = request.query
    rows = state.history()
    try:
        account = _query_int(request, "accountID")
        section = _query_int(request, "librarySectionID")
        item = _query_int(request, "metadataItemID")
        since = int(query["viewedAt>"]) if "viewedAt>" in query else None
        before = int(query["viewedAt<"]) if "viewedAt<" in query else None
    except (_BadParam, ValueError):
        return _bad_request()
    if item is not None:
        node = state.node(item)
        if node is None:
            rows = []
        else:
            wanted = {str(item)} | {str(leaf.rating_key) for leaf in state._leaves(node)}
            rows = [r for r in rows if r["ratingKey"] in wanted]
    if account is not None:
        rows = [r for r in rows if r["accountID"] == account]
    if section is not None:
        rows = [r for r in rows if r["librarySectionID"] == str(section)]
    if since is not None:
        rows = [r for r in rows if r["viewedAt"] >= since]
    if before is not None:
        rows = [r for r in rows if r["viewedAt"] < before]
    if query.get("sort", "viewedAt:desc").endswith(":desc"):
        rows.reverse()
    start = _int_param(request, "X-Plex-Container-Start") or 0
    size = _int_param(request, "X-Plex-Container-Size")
    total = len(rows)
    chunk = rows[start:] if size is None else rows[start : start + size]
    if _wants_json(request):
        items = [_dumps(r) for r in chunk]
    else:
        items = [xml_element(_element_tag(r["type"]), r) for r in chunk]
    headers = {"X-Plex-Container-Start": str(start), "X-Plex-Container-Total-Size": str(total)}
    return _respond(request, _Page({"size": len(items), "totalSize": total, "offset": start}, items, headers))


# --------------------------------------------------------------------------------------------- /_sim/plex


async def _sim_state(request: web.Request) -> web.Response:
    return web.json_response(_state(request).summary())


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _sim_error(exc: Exception, status: int = 400) -> web.Response:
    return web.json_response({"error": str(exc)}, status=status)


async def _sim_settings(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await _json_body(request)
        if "allow_media_deletion" in body:
            state.allow_media_deletion = bool(body["allow_media_deletion"])
    except ValueError as exc:
        return _sim_error(exc)
    return web.json_response(state.summary())


async def _sim_section_empty(request: web.Request) -> web.Response:
    state = _state(request)
    key = _rating_key(request.match_info["section"])
    try:
        body = await _json_body(request)
        state.set_section_empty(key if key is not None else -1, bool(body.get("empty", True)))
    except ValueError as exc:
        return _sim_error(exc)
    except KeyError as exc:
        return _sim_error(exc, 404)
    return web.json_response(state.summary())


_MOVIE_FIELDS = {"year", "size", "file", "tmdb", "imdb", "labels", "collections", "added_at"}
_SHOW_FIELDS = {"year", "seasons", "episodes", "episode_size", "tvdb", "tmdb", "imdb", "labels", "added_at"}


def _item_fields(body: Any, allowed: set[str]) -> dict[str, Any]:
    """The fields of a ``/_sim/plex/movies|shows`` body besides its (required) title; ValueError when the
    title is missing or a field is not in ``allowed``."""
    unknown = set(body) - allowed - {"title"}
    if unknown or not body.get("title"):
        raise ValueError(f"need a title; unknown fields: {sorted(unknown)}")
    return {k: v for k, v in body.items() if k != "title"}


async def _sim_add_movie(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await _json_body(request)
        fields = _item_fields(body, _MOVIE_FIELDS)
        movie = state.add_movie(body["title"], **fields)
    except (ValueError, TypeError) as exc:
        return _sim_error(exc)
    return web.json_response({"ratingKey": str(movie.rating_key)}, status=201)


async def _sim_add_show(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        body = await _json_body(request)
        fields = _item_fields(body, _SHOW_FIELDS)
        show = state.add_show(body["title"], **fields)
    except (ValueError, TypeError) as exc:
        return _sim_error(exc)
    seasons = [
        {"ratingKey": str(s.rating_key), "episodes": [str(e.rating_key) for e in s.episodes]} for s in show.seasons
    ]
    return web.json_response({"ratingKey": str(show.rating_key), "seasons": seasons}, status=201)


_UPDATE_FIELDS = {"title", "size", "file", "labels", "collections", "added_at"}


async def _sim_update_item(request: web.Request) -> web.Response:
    state = _state(request)
    key = _rating_key(request.match_info["key"])
    try:
        body = await _json_body(request)
        unknown = set(body) - _UPDATE_FIELDS - {"played"}
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        if key is None or key not in state._nodes:
            return _sim_error(KeyError(f"no item {request.match_info['key']}"), 404)
        changes = {k: v for k, v in body.items() if k in _UPDATE_FIELDS}
        if changes:
            state.update_item(key, **changes)
        played = body.get("played")
        if played:
            play = played if isinstance(played, dict) else {}
            state.mark_played(key, play.get("user", OWNER), play.get("at"))
    except (ValueError, TypeError) as exc:
        return _sim_error(exc)
    node = state._nodes[key]
    return web.json_response(state.item_dict(node, section_fields=True))


async def _sim_remove_item(request: web.Request) -> web.Response:
    state = _state(request)
    key = _rating_key(request.match_info["key"])
    try:
        removed = state.remove_item(key if key is not None else -1)
    except KeyError as exc:
        return _sim_error(exc, 404)
    return web.json_response({"removed": [str(k) for k in removed]})


# --------------------------------------------------------------------------------------------- app


@web.middleware
async def _auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """X-Plex-Token check (header or query); also answers a :class:`_BadParam` raised by a handler with
    PMS's 400 page."""
    try:
        if request.path.startswith("/_sim/") or request.path == "/identity":
            return await handler(request)
        state = request.app[PLEX_STATE]
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        if request.app[faults_mod.FAULTS].revoke_auth or token != state.token:
            return _html_error(401, UNAUTHORIZED_BODY)
        return await handler(request)
    except _BadParam:
        return _bad_request()


def create_app(
    universe: Universe,
    *,
    token: str = "demo-plex-token",
    faults: Faults | None = None,
    allow_media_deletion: bool = True,
    clock: Callable[[], int] | None = None,
) -> web.Application:
    """A simulated PMS over ``universe``; its :class:`PlexState` is ``app[PLEX_STATE]``.

    ``token`` is the only accepted X-Plex-Token (header or query string). ``clock`` gives "now" for
    mutations (``updatedAt``, plays); it defaults to the wall clock.
    """
    app = web.Application()
    app[PLEX_STATE] = PlexState(universe, token=token, allow_media_deletion=allow_media_deletion, clock=clock)
    faults_mod.install(app, faults)
    app.middlewares.append(_auth_middleware)
    r = app.router
    r.add_get("/", _root)
    r.add_get("/identity", _identity)
    r.add_get("/library", _library)
    r.add_get("/library/", _library)
    for path in ("/library/sections", "/library/sections/", "/library/sections/all"):
        r.add_get(path, _sections)
    r.add_get("/library/sections/{section}/all", _section_all)
    r.add_put("/library/sections/{section}/all", _section_edit)
    r.add_get("/library/sections/{section}/collections", _section_collections)
    r.add_get("/library/sections/{section}/refresh", _section_refresh)
    r.add_get("/library/metadata/{ids}", _metadata)
    r.add_delete("/library/metadata/{key}", _delete_metadata)
    r.add_get("/library/metadata/{key}/children", _children)
    r.add_get("/library/metadata/{key}/allLeaves", _all_leaves)
    r.add_post("/library/collections", _create_collection)
    r.add_get("/library/collections/{collection}", _collection_detail)
    r.add_delete("/library/collections/{collection}", _collection_delete)
    r.add_get("/library/collections/{collection}/children", _collection_items)
    r.add_get("/library/collections/{collection}/items", _collection_items)
    r.add_put("/library/collections/{collection}/items", _collection_add)
    r.add_delete("/library/collections/{collection}/items/{item}", _collection_remove)
    r.add_put("/library/collections/{collection}/items/{item}", _collection_remove)
    r.add_get("/status/sessions/history/all", _history)
    r.add_get("/_sim/plex/state", _sim_state)
    r.add_post("/_sim/plex/settings", _sim_settings)
    r.add_post("/_sim/plex/sections/{section}/empty", _sim_section_empty)
    r.add_post("/_sim/plex/movies", _sim_add_movie)
    r.add_post("/_sim/plex/shows", _sim_add_show)
    r.add_patch("/_sim/plex/items/{key}", _sim_update_item)
    r.add_delete("/_sim/plex/items/{key}", _sim_remove_item)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m smartplexd.demo.plex --port N --movies 20000 --shows 500 --seed 1``: serve a universe."""
    parser = argparse.ArgumentParser(prog="python -m smartplexd.demo.plex", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=32400)
    parser.add_argument("--movies", type=int, default=200)
    parser.add_argument("--shows", type=int, default=20)
    parser.add_argument("--seasons", type=int, default=3, help="seasons per show")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per season")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--now", type=int, default=None, help="epoch seconds anchoring the universe's dates")
    parser.add_argument("--token", default="demo-plex-token")
    parser.add_argument("--no-media-deletion", action="store_true", help="serve allowMediaDeletion=0")
    args = parser.parse_args(argv)
    universe = generate(
        seed=args.seed,
        movies=args.movies,
        shows=args.shows,
        seasons_per_show=args.seasons,
        episodes_per_season=args.episodes,
        now=args.now,
    )
    app = create_app(universe, token=args.token, allow_media_deletion=not args.no_media_deletion)
    print(f"simulated Plex on http://127.0.0.1:{args.port} ({universe.plex_item_count} items)", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
