"""Mirror Plex libraries into ``media_items``: full syncs (paged, pipelined, swept) and one-item syncs.

A full sync (:func:`sync_server`) of one server:

1. takes the SQLite lock ``sync:<server>`` (a second sync gets :class:`LockHeld` naming the running sync's
   id) and opens a ``sync_events`` row (status ``running``);
2. per library (movie and show sections; ``libraries`` or ``plex.servers[].libraries`` narrow it), asks Plex
   for the size of each listing (movies; or shows, seasons, episodes), then fetches pages with
   ``sync.pages_in_flight`` requests outstanding while the previous pages are written — memory stays at
   a few pages whatever the library size;
3. decides per page what changed, cheapest first: a page whose body has the digest of one parsed before
   (``sync_pages``) is not parsed at all; otherwise each item's row is built (in the fetch threads) and
   its *row digest* compared with the one stored in ``content_hash``. Either way one SQL statement per
   page finds the items that are new, removed, deleted or whose mirrored values changed; only those are
   looked at in Python (compared with the stored values), and only new or changed rows are written
   (multi-row upserts; pages are grouped into transactions of about :data:`BATCH_SECONDS`). Every listed
   rating key goes into a per-sync temp table (not on a library's first sync, which has nothing to sweep);
4. sweeps: active rows of the library that were not listed get ``removed_at`` (rows are never deleted:
   history refers to them). The sweep is skipped when a listing changed while it was read, and refused —
   nothing removed, sync status ``refused`` — when it would remove more than
   ``deletion.max_library_shrink_percent`` of the library (Plex offline, a disk not mounted);
5. rolls sizes up: a season's ``size_bytes`` is the sum of its episodes' part sizes, a show's of its seasons;
6. records counts, status and duration in ``sync_events``, the server's ``integration_health`` row
   (``plex:<server>``), and publishes ``sync.started`` / ``sync.progress`` / ``sync.finished`` on the bus.

Tombstones: a row with ``deleted_at`` (deleted by smartplexd) is never updated or revived; a new rating key
listed in ``tombstones`` (still within ``expires_at``), an item whose GUID matches an active tombstone of
the same type (a re-import by Sonarr/Radarr under a new rating key), and the seasons/episodes of such
items are not added. Per-field sources: ``sources`` names only fields whose value did not come from Plex
(absent means ``"plex"``, see :func:`field_source`); where Plex has no value (``year``, external ids,
``last_viewed_at``) a value another source wrote is kept with its source, and as soon as Plex has one, Plex
wins and the field drops out of ``sources``.

On 401 the sync stops at once with status ``unauthorized`` (nothing is swept) and the server is marked
``unauthorized``; other failures (after the client's retries) end it with status ``error`` and the server
marked ``down``. Both are returned in :class:`SyncResult`, not raised; only :class:`LockHeld` is raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

try:  # the row digest is computed for every listed item: orjson encodes 5-10x faster than json
    from orjson import dumps as _dumps
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the stdlib fallback gives the same bytes for the values we encode
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def _dumps(value: Any) -> bytes:
        return _encoder(value).encode()

    _loads = json.loads


from smartplexd import events
from smartplexd.config import AppConfig, PlexServerConfig
from smartplexd.errors import PlexUnauthorized, UsageError
from smartplexd.events import EventBus
from smartplexd.plex.client import PlexClient, PlexError, RetryPolicy, measure_identity
from smartplexd.store import locks
from smartplexd.store.db import Store
from smartplexd.store.locks import LockHeld

log = logging.getLogger(__name__)

__all__ = [
    "LockHeld",
    "SyncResult",
    "item_row",
    "lock_name",
    "sync_item",
    "sync_server",
    "tombstone_guids",
]

ITEM_TYPES = ("movie", "show", "season", "episode")
SECTION_LISTINGS = {"movie": ("movie",), "show": ("show", "season", "episode")}
"""What a full sync lists per section type, parents first (so a blocked show blocks its seasons/episodes)."""

PROGRESS_INTERVAL = 0.25
"""Seconds between ``sync.progress`` events (the first and last page of a library always publish)."""

BATCH_SECONDS = 0.5
"""A full sync commits its writes at least this often (pages are grouped: fewer commits, fewer index page
rewrites in the WAL); other writers wait at most about this long for the database."""

LOCK_TTL = 300.0
LOCK_REFRESH = 60.0

OUTCOMES = ("added", "updated", "unchanged", "restored", "tombstoned")


def lock_name(server: str) -> str:
    """The name of the per-server sync lock (``sync:<server>``); see :func:`smartplexd.store.locks.holder`."""
    return f"sync:{server}"


# --------------------------------------------------------------------------------------------- rows


class ItemRow(NamedTuple):
    """The ``media_items`` values Plex provides for one item, in column order (after ``server``)."""

    section_id: str
    section_title: str
    rating_key: str
    type: str
    title: str
    year: int | None
    guid: str | None
    tmdb_id: int | None
    tvdb_id: int | None
    imdb_id: str | None
    parent_rating_key: str | None
    grandparent_rating_key: str | None
    season_index: int | None
    episode_index: int | None
    added_at: int | None
    updated_at: int | None
    last_viewed_at: int | None
    view_count: int
    size_bytes: int
    files: str
    labels: str
    collections: str


def row_digest(row: ItemRow) -> str:
    """A digest of the values a row mirrors (16 hex digits; stable across processes, unlike ``hash()``).

    Every write stores it in ``content_hash``. When Plex lists an item whose row digest equals the stored
    one, nothing the mirror holds can have changed and the sync writes nothing for it; what Plex changes in
    fields we do not mirror does not matter. A one-item sync (Plex's full view) stores the same digest as a
    listing of the same values, so the next full sync finds the row unchanged.
    """
    return hashlib.blake2b(_dumps(tuple(row)), digest_size=8).hexdigest()


assert ItemRow._fields[2] == "rating_key", "listed() indexes rows directly"
assert ItemRow._fields[10:12] == ("parent_rating_key", "grandparent_rating_key"), "listed() indexes rows directly"
COLUMNS = (*ItemRow._fields, "content_hash", "seen_in_sync", "server")
"""What the sync writes, in parameter order (a row's values, then the same three for every row of a page, so
that a page's parameters are built with two ``extend`` calls per row); ``sources`` is not among them: see
:func:`field_source`."""
FILLABLE = ("year", "tmdb_id", "tvdb_id", "imdb_id", "last_viewed_at")
"""Fields Plex may leave empty; a value another source wrote is then kept (see the module docstring)."""
_ALWAYS_PLEX = tuple(f for f in ItemRow._fields if f not in FILLABLE and f not in ("section_id", "rating_key"))


def field_source(sources: str | Mapping[str, str] | None, field: str) -> str:
    """Where a ``media_items`` field's value came from, given the row's ``sources`` (JSON text or decoded).

    ``sources`` names only the fields whose value did *not* come from Plex (``{"last_viewed_at":
    "tautulli"}``); a field it does not name came from Plex (``"plex"``), so a row the sync wrote holds
    ``{}``. Plex has a value for most fields of most items, and writing ``"plex"`` for each of them made
    ``sources`` ~45% of a row's bytes.
    """
    if sources is None or isinstance(sources, str):
        sources = json.loads(sources or "{}")
    return str(sources.get(field, "plex"))


_LEGACY_GUID = re.compile(r"^com\.plexapp\.agents\.(imdb|themoviedb|thetvdb)://([^/?]+)(?:\?|$)")
_LEGACY_SCHEMES = {"imdb": "imdb", "themoviedb": "tmdb", "thetvdb": "tvdb"}


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _external_ids(item: Mapping[str, Any]) -> tuple[int | None, int | None, str | None]:
    """(tmdb, tvdb, imdb) from the ``Guid`` array, or from a legacy agent's ``guid`` for the item's own id."""
    tmdb = tvdb = imdb = None
    for g in item.get("Guid") or ():
        scheme, _, value = str(g.get("id", "")).partition("://")
        if scheme == "tmdb":
            tmdb = _int_or_none(value)
        elif scheme == "tvdb":
            tvdb = _int_or_none(value)
        elif scheme == "imdb":
            imdb = value or None
    if tmdb is None and tvdb is None and imdb is None:
        match = _LEGACY_GUID.match(item.get("guid") or "")
        if match:
            scheme, value = _LEGACY_SCHEMES[match.group(1)], match.group(2)
            if scheme == "imdb":
                imdb = value
            elif scheme == "tmdb":
                tmdb = _int_or_none(value)
            else:
                tvdb = _int_or_none(value)
    return tmdb, tvdb, imdb


def _encode(value: list[str]) -> str:
    return _dumps(value).decode()


_new_row = tuple.__new__  # ItemRow(...) without the Python-level __new__ frame: this runs 100k times a sync


def _tags(tags: list[dict[str, Any]] | None) -> str:
    if not tags:
        return "[]"
    return _encode([t["tag"] for t in tags if "tag" in t])


def item_row(item: Mapping[str, Any], section_id: str, section_title: str) -> ItemRow:
    """Turn one Plex metadata item (JSON, as listed or fetched) into its ``media_items`` values.

    ``size_bytes`` and ``files`` come from the item's ``Media[].Part[]`` (movies and episodes; seasons and
    shows are rolled up after writing). Episodes get ``season_index`` from ``parentIndex``.
    """
    get = item.get
    type_ = item["type"]
    size = 0
    files_json = "[]"
    media = get("Media")
    if media:
        files = []
        for m in media:
            for part in m.get("Part") or ():
                file = part.get("file")
                if file:
                    files.append(file)
                size += int(part.get("size") or 0)
        if files:
            files_json = _encode(files)
    if type_ == "episode":
        season_index, episode_index = get("parentIndex"), get("index")
    elif type_ == "season":
        season_index, episode_index = get("index"), None
    else:
        season_index = episode_index = None
    parent, grandparent = get("parentRatingKey"), get("grandparentRatingKey")
    tmdb, tvdb, imdb = _external_ids(item)
    values = (
        section_id,
        section_title,
        str(item["ratingKey"]),
        type_,
        get("title") or "",
        get("year"),
        get("guid"),
        tmdb,
        tvdb,
        imdb,
        None if parent is None else str(parent),
        None if grandparent is None else str(grandparent),
        season_index,
        episode_index,
        get("addedAt"),
        get("updatedAt"),
        get("lastViewedAt"),
        int(get("viewCount") or 0),
        size,
        files_json,
        _tags(get("Label")),
        _tags(get("Collection")),
    )
    return _new_row(ItemRow, values)  # type: ignore[no-any-return]


def tombstone_guids(row: Mapping[str, Any]) -> list[str]:
    """The GUIDs to store in ``tombstones.guids`` for a ``media_items`` row (or an :class:`ItemRow`).

    ``["tmdb://603", "tvdb://81189", "imdb://tt0133093", "plex://movie/5d77..."]`` — whichever are known.
    A later sync refuses a *new* item of the same type carrying any of them while the tombstone lasts.
    """
    get = row.get if isinstance(row, Mapping) else row._asdict().get  # type: ignore[attr-defined]
    out = []
    for scheme, column in (("tmdb", "tmdb_id"), ("tvdb", "tvdb_id"), ("imdb", "imdb_id")):
        value = get(column)
        if value is not None and value != "":
            out.append(f"{scheme}://{value}")
    if get("guid"):
        out.append(str(get("guid")))
    return out


_VALUES = f"({', '.join('?' * len(COLUMNS))})"
_INSERT_NEW = f"INSERT INTO media_items ({', '.join(COLUMNS)}) VALUES {_VALUES} ON CONFLICT DO NOTHING"
_UPSERT = (
    f"INSERT INTO media_items ({', '.join(COLUMNS)}) VALUES {_VALUES} "
    "ON CONFLICT (server, rating_key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in ("server", "rating_key", "size_bytes", *FILLABLE))
    + ", size_bytes = CASE WHEN excluded.type IN ('show', 'season') THEN media_items.size_bytes "
    "ELSE excluded.size_bytes END, "
    + ", ".join(
        f"{c} = CASE WHEN excluded.{c} IS NULL AND coalesce(json_extract(media_items.sources, '$.{c}'), 'plex') "
        f"<> 'plex' THEN media_items.{c} ELSE excluded.{c} END"
        for c in FILLABLE
    )
    # Plex now answers for every field it has a value for: those drop out of sources (absent means plex).
    + ", sources = CASE WHEN media_items.sources = '{}' THEN '{}' ELSE json_remove(media_items.sources, "
    + ", ".join(
        [f"'$.{c}'" for c in _ALWAYS_PLEX]
        + [f"CASE WHEN excluded.{c} IS NULL THEN '$.{c}-kept' ELSE '$.{c}' END" for c in FILLABLE]
    )
    + ") END, removed_at = NULL "
    "WHERE media_items.deleted_at IS NULL"
)


# --------------------------------------------------------------------------------------------- writing


class Listed(NamedTuple):
    """One page's items of one type, with what the fetch thread prepared for the writer (see :func:`listed`)."""

    total: int
    """What Plex said the whole listing holds (``totalSize``) when it sent this page."""
    items: list[dict[str, Any]]
    keys: list[str]
    """Each item's rating key."""
    digests: list[str]
    """:func:`row_digest` per item."""
    page_json: str
    """``{"<rating key>": "<row digest>", ...}``: the page as SQLite compares it (a single statement)."""
    refs: frozenset[str]
    """Every rating key the page mentions (items, parents, grandparents): checked against tombstones at once."""
    rows: list[ItemRow]
    """Each item's row."""
    params: list[Any] | None = None
    """Every row's upsert parameters in :data:`COLUMNS` order, one flat list (row ``i`` is
    ``params[i * len(COLUMNS):][:len(COLUMNS)]``), when built in advance (a library with no rows yet: every
    item will be written), else ``None``."""
    body_digest: str | None = None
    """The digest of the response body this page was parsed from (for the page cache, ``sync_pages``)."""
    start: int = 0
    """The page's offset in its listing."""


class CachedPage(NamedTuple):
    """A listing page whose body has the digest of a page parsed before (``sync_pages``): what the writer
    needs comes from that row; the body is parsed only when the page's items are not all unchanged."""

    start: int
    body: bytes
    body_digest: str
    total: int = 0
    count: int = 0
    page_json: str = "{}"
    refs: tuple[str, ...] = ()


def listed(
    total: int,
    items: list[dict[str, Any]],
    section_id: str,
    section_title: str,
    *,
    params_for: tuple[str, int | None] | None = None,
    body_digest: str | None = None,
    start: int = 0,
) -> Listed:
    """Prepare a page for :meth:`_Writer.write` (the fetch threads call this, off the writer's thread): every
    item's row and :func:`row_digest`. ``params_for=(server, sync_id)`` also builds each row's upsert
    parameters — worth it only when (nearly) every item will be written.
    """
    rows = [item_row(item, section_id, section_title) for item in items]
    keys = [row[2] for row in rows]
    fps = [row_digest(row) for row in rows]
    refs = {*keys, *(row[10] for row in rows), *(row[11] for row in rows)}  # rating key, parent, grandparent
    refs.discard(None)  # type: ignore[arg-type]
    page_json = _dumps(dict(zip(keys, fps, strict=True))).decode()
    params = None
    if params_for is not None:
        server, sync_id = params_for
        params = []
        add = params.extend
        for row, fp in zip(rows, fps, strict=True):
            add(row)
            add((fp, sync_id, server))
    return Listed(total, items, keys, fps, page_json, frozenset(refs), rows, params, body_digest, start)


# The items of a page that are NOT unchanged: new, removed, deleted, or with other values than when their
# row was written. Everything else costs SQLite an index lookup
# and Python nothing. Each result is [key, exists, content_hash, removed_at, deleted_at], and for an
# existing row also its sources and its stored values in ItemRow order (compared by _same_values).
_CHANGED_SQL = (
    "SELECT json_group_array(CASE WHEN m.id IS NULL THEN json_array(j.key, 0, NULL, NULL, NULL) "
    "ELSE json_array(j.key, 1, m.content_hash, m.removed_at, m.deleted_at, m.sources, "
    + ", ".join(f"m.{f}" for f in ItemRow._fields)
    + ") END) FROM json_each(?) j LEFT JOIN media_items m ON m.server = ? AND m.rating_key = j.key "
    "WHERE m.id IS NULL OR m.removed_at IS NOT NULL OR m.deleted_at IS NOT NULL OR m.content_hash IS NULL "
    "OR m.content_hash <> j.value"
)
_SIZE_AT = ItemRow._fields.index("size_bytes")
_FILLABLE_AT = {ItemRow._fields.index(f): f for f in FILLABLE}


def _same_values(row: ItemRow, old: list[Any]) -> bool:
    """Whether upserting ``row`` would leave the stored values (``old``, a :data:`_CHANGED_SQL` result) as they
    are: a show's or season's size is the rolled-up one, and a value another source filled stays while Plex
    has none (see :data:`_UPSERT`). Replaces a per-row digest: only items listed differently get here."""
    for i, (new, have) in enumerate(zip(row, old[6:], strict=True)):
        if new == have:
            continue
        if i == _SIZE_AT and row[3] in ("show", "season"):
            continue
        if new is None and i in _FILLABLE_AT and field_source(old[5], _FILLABLE_AT[i]) != "plex":
            continue
        return False
    return True


class _Writer:
    """Classifies listed items against the database and tombstones, and writes a batch in one transaction.

    An item whose stored ``content_hash`` is its row digest (and whose row is active and not blocked) is
    unchanged: SQLite finds that for the whole page in one statement and Python never looks at it. Every
    other item is compared with the stored values; only new and changed rows are written.
    """

    def __init__(self, store: Store, server: str, sync_id: int | None, *, seen_table: bool) -> None:
        self.store = store
        self.server = server
        self.sync_id = sync_id
        self.seen_table = seen_table
        now = time.time()
        self.blocked: set[str] = set()
        """Rating keys whose item and descendants must not be written (tombstoned)."""
        self.tomb_guids: dict[str, set[str | None]] = {}
        for t in store.query(
            "SELECT t.rating_key, t.guids, m.type FROM tombstones t LEFT JOIN media_items m ON m.id = t.item_id "
            "WHERE t.server = ? AND (t.expires_at IS NULL OR t.expires_at > ?)",
            (server, now),
        ):
            self.blocked.add(t["rating_key"])
            for guid in json.loads(t["guids"] or "[]"):
                self.tomb_guids.setdefault(guid, set()).add(t["type"])
        for r in store.query(
            "SELECT rating_key FROM media_items WHERE server = ? AND deleted_at IS NOT NULL "
            "AND type IN ('show', 'season')",
            (server,),
        ):
            self.blocked.add(r["rating_key"])
        self._upserts: dict[tuple[int, bool], str] = {}
        self.first_load = False
        """Set while a library's first load is written (see :meth:`write`)."""
        # One multi-row statement per chunk instead of executemany: sqlite3 releases and re-takes the GIL
        # for every row it steps, and with a fetch thread parsing JSON each re-take waits for it. One
        # statement is one step, and SQLite's work runs without the GIL, beside the fetch threads.
        limit = store.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self.rows_per_statement = max(1, min(500, limit // len(COLUMNS)))

    def _upsert(self, n: int, new_only: bool) -> str:
        sql = self._upserts.get((n, new_only))
        if sql is None:
            base = _INSERT_NEW if new_only else _UPSERT
            sql = self._upserts[(n, new_only)] = base.replace(_VALUES, ", ".join([_VALUES] * n), 1)
        return sql

    def _upsert_rows(self, values: list[Any], n: int, *, new_only: bool = False) -> int:
        """Upsert ``n`` rows whose parameters are ``values`` (flat, :data:`COLUMNS` order); ``new_only``: insert
        the rows whose rating key has no row yet and leave the others alone. Returns the rows written."""
        width, step = len(COLUMNS), self.rows_per_statement
        written = 0
        for start in range(0, n, step):
            k = min(step, n - start)
            chunk = values if k == n else values[start * width : (start + k) * width]
            written += self.store.conn.execute(self._upsert(k, new_only), chunk).rowcount
        return written

    def _guid_blocked(self, row: ItemRow) -> bool:
        if not self.tomb_guids:
            return False
        for guid in tombstone_guids(row._asdict()):
            types = self.tomb_guids.get(guid)
            if types and (None in types or row.type in types):
                return True
        return False

    def _changed(self, page_json: str) -> dict[str, list[Any]]:
        (found,) = self.store.conn.execute(_CHANGED_SQL, (page_json, self.server)).fetchone()
        return {r[0]: r for r in _loads(found)}

    def write_unchanged(self, page_json: str, refs: Iterable[str], n: int) -> bool:
        """Record a page as seen and return True when every one of its ``n`` items is unchanged (see
        :data:`_CHANGED_SQL`) and none is tombstoned; otherwise write nothing and return False."""
        if self._changed(page_json) or (self.blocked and not self.blocked.isdisjoint(refs)):
            return False
        if self.seen_table and n:
            self.store.conn.execute(_SEEN_SQL, (page_json,))
        return True

    def write(self, page: Listed, section_id: str, section_title: str) -> tuple[dict[str, int], dict[str, str]]:
        """Write what changed. Returns the page's counts per outcome (:data:`OUTCOMES`) and the outcome of each
        item that was looked at individually (every item that is not unchanged-by-digest), by rating key."""
        blocked = self.blocked
        check_blocked = bool(blocked) and not blocked.isdisjoint(page.refs)
        n = len(page.items)
        items, keys, digests, rows, params = page.items, page.keys, page.digests, page.rows, page.params
        inserted = 0
        if self.first_load and params is not None and not check_blocked and not self.tomb_guids:
            # A first load: insert the rows that are not there yet, without asking first (no new item can be
            # tombstoned: that needs a blocked key or a tombstone GUID, ruled out above). Nearly always that
            # is every row; otherwise the rest are classified below, and the inserted ones are unchanged.
            with self.store.transaction():
                inserted = self._upsert_rows(params, n, new_only=True)
            if inserted == n:
                return {"added": n}, dict.fromkeys(keys, "added")
        changed = self._changed(page.page_json)
        if not changed and not check_blocked:
            # The common case of a re-sync: every item listed exactly as we stored it.
            if self.seen_table and n:
                self.store.conn.execute(_SEEN_SQL, (page.page_json,))
            return {"unchanged": n - inserted, "added": inserted}, {}
        counts = dict.fromkeys(OUTCOMES, 0)
        counts["added"] = inserted
        width = len(COLUMNS)
        outcomes: dict[str, str] = {}
        writes: list[Any] = []
        n_writes = 0
        refresh: list[tuple[str, str, str]] = []
        kept_out: list[str] = []
        server = self.server
        if check_blocked:
            todo = range(n)
        else:
            todo = [i for i, rk in enumerate(keys) if rk in changed]
            counts["unchanged"] = n - len(todo) - inserted
        for i in todo:
            rk = keys[i]
            old = changed.get(rk)  # None: active and listed as stored
            item = items[i]
            outcome = ""
            if check_blocked:
                parent, grandparent = item.get("parentRatingKey"), item.get("grandparentRatingKey")
                if (
                    rk in blocked
                    or (parent is not None and str(parent) in blocked)
                    or (grandparent is not None and str(grandparent) in blocked)
                ):
                    outcome = "tombstoned"
            if not outcome and old is not None and old[4] is not None:
                outcome = "tombstoned"
            if not outcome and old is None:
                outcome = "unchanged"
            if not outcome:
                row = rows[i]
                if not old[1] and self._guid_blocked(row):
                    outcome = "tombstoned"
                else:
                    prepared = params[i * width : (i + 1) * width] if params is not None else None
                    content_hash = digests[i]
                    if not old[1]:
                        outcome = "added"
                    elif old[3] is not None:
                        outcome = "restored"
                    elif _same_values(row, old):
                        # Listed differently (a field we do not mirror changed, or a one-item sync wrote the
                        # row from Plex's full view) but our values are the same: keep the new digest only.
                        outcome = "unchanged"
                        if content_hash != old[2]:
                            refresh.append((content_hash, server, rk))
                    else:
                        outcome = "updated"
                    if outcome != "unchanged":
                        writes += prepared or (*row, content_hash, self.sync_id, server)
                        n_writes += 1
            if outcome == "tombstoned":
                if item.get("type") in ("show", "season"):
                    blocked.add(rk)
                kept_out.append(rk)
            counts[outcome] += 1
            outcomes[rk] = outcome
        with self.store.transaction() as conn:
            self._upsert_rows(writes, n_writes)
            if refresh:
                conn.executemany(
                    "UPDATE media_items SET content_hash = ? WHERE server = ? AND rating_key = ? "
                    "AND deleted_at IS NULL",
                    refresh,
                )
            if self.seen_table and n > len(kept_out):
                # Items kept out are not "seen": rows of theirs that Plex still lists are swept as before.
                seen_json = page.page_json
                if kept_out:
                    out = set(kept_out)
                    seen_json = _dumps({rk: "" for rk in keys if rk not in out}).decode()
                conn.execute(_SEEN_SQL, (seen_json,))
        return counts, outcomes


_SEEN_SQL = "INSERT OR IGNORE INTO temp.sync_seen (rating_key) SELECT key FROM json_each(?)"


_ROLLUP_CHILD_SUM = (
    "SELECT coalesce(SUM(c.size_bytes), 0) FROM media_items c WHERE c.server = media_items.server "
    "AND c.parent_rating_key = media_items.rating_key AND c.type = :child "
    "AND c.removed_at IS NULL AND c.deleted_at IS NULL"
)


def _rollup(store: Store, server: str, scope_sql: str, params: Mapping[str, Any]) -> int:
    """Set active seasons' sizes to their episodes' sum, then shows' to their seasons'. Returns rows changed.

    ``scope_sql`` narrows the parents (e.g. ``section_id = :section``); only changed sizes are written.
    """
    changed = 0
    with store.transaction() as conn:
        for parent, child in (("season", "episode"), ("show", "season")):
            cur = conn.execute(
                f"UPDATE media_items SET size_bytes = ({_ROLLUP_CHILD_SUM}) WHERE server = :server "
                f"AND type = :parent AND removed_at IS NULL AND deleted_at IS NULL AND ({scope_sql}) "
                f"AND size_bytes <> ({_ROLLUP_CHILD_SUM})",
                {**params, "server": server, "parent": parent, "child": child},
            )
            changed += cur.rowcount
    return changed


# --------------------------------------------------------------------------------------------- results


@dataclass
class SyncResult:
    """The outcome of one full sync of one server (also the ``sync_events`` row ``sync_id``).

    ``status``: ``ok``; ``refused`` (a sweep would have removed too much, nothing was removed; ``error``
    says where); ``unauthorized`` (Plex rejected the token); ``error`` (Plex unreachable or failing).
    ``counts``: seen, added, updated, unchanged, removed, restored (came back; also counted in added),
    tombstoned (listed by Plex, kept out because smartplexd deleted it).
    """

    sync_id: int
    server: str
    status: str
    counts: dict[str, int]
    duration_ms: int
    error: str | None = None
    libraries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(("seen", "added", "updated", "unchanged", "removed", "restored", "tombstoned"), 0)


class _Progress:
    """Publishes ``sync.progress`` at most every :data:`PROGRESS_INTERVAL` seconds per library."""

    def __init__(self, bus: EventBus, server: str, sync_id: int, library: str, total: int) -> None:
        self.bus, self.server, self.sync_id, self.library, self.total = bus, server, sync_id, library, total
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.done == n or self.done >= self.total or now - self.last >= PROGRESS_INTERVAL:
            self.publish(now)

    def publish(self, now: float | None = None) -> None:
        now = now if now is not None else time.monotonic()
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        remaining = max(self.total - self.done, 0)
        self.bus.publish(
            "sync.progress",
            server=self.server,
            sync_id=self.sync_id,
            library=self.library,
            done=self.done,
            total=self.total,
            rate=round(rate, 1),
            eta_s=round(remaining / rate, 1) if rate > 0 else None,
        )


# --------------------------------------------------------------------------------------------- full sync


def _server_config(config: AppConfig, server: str | PlexServerConfig) -> PlexServerConfig:
    if isinstance(server, PlexServerConfig):
        return server
    try:
        return config.plex_server(server)
    except KeyError:
        names = ", ".join(s.name for s in config.plex.servers) or "none configured"
        raise UsageError(f"no Plex server named '{server}' in plex.servers ({names})") from None


def _set_health(
    store: Store,
    server: str,
    status: str,
    *,
    version: str | None = None,
    latency_ms: float | None = None,
    error: str | None = None,
) -> None:
    store.execute(
        "INSERT INTO integration_health (name, plugin, status, version, latency_ms, checked_at, error) "
        "VALUES (?, 'plex', ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET status = excluded.status, "
        "version = coalesce(excluded.version, integration_health.version), latency_ms = excluded.latency_ms, "
        "checked_at = excluded.checked_at, error = excluded.error",
        (f"plex:{server}", status, version, latency_ms, time.time(), error),
    )


def _begin(store: Store, server: str, library: str | None) -> tuple[int, locks.Lock]:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    now = time.time()
    with store.transaction():
        cur = store.execute(
            "INSERT INTO sync_events (server, kind, library, started_at, status) VALUES (?, 'full', ?, ?, 'running')",
            (server, library, now),
        )
        sync_id = int(cur.lastrowid or 0)
        # Raises LockHeld (rolling this transaction back) when another sync of the server runs.
        lock = locks.acquire(store, lock_name(server), owner=owner, ttl=LOCK_TTL, details={"sync_id": sync_id})
        # We hold the lock, so any other 'running' row of this server belongs to a sync that died.
        store.execute(
            "UPDATE sync_events SET status = 'error', finished_at = ?, "
            "error = 'interrupted: the process stopped before the sync finished' "
            "WHERE server = ? AND status = 'running' AND id <> ?",
            (now, server, sync_id),
        )
    return sync_id, lock


def _finish(store: Store, result: SyncResult, started: float) -> None:
    c = result.counts
    details = {"restored": c["restored"], "tombstoned": c["tombstoned"], "libraries": result.libraries}
    store.execute(
        "UPDATE sync_events SET finished_at = ?, duration_ms = ?, status = ?, items_seen = ?, added = ?, "
        "updated = ?, unchanged = ?, removed = ?, error = ?, details = ? WHERE id = ?",
        (
            started + result.duration_ms / 1000,
            result.duration_ms,
            result.status,
            c["seen"],
            c["added"],
            c["updated"],
            c["unchanged"],
            c["removed"],
            result.error,
            json.dumps(details, default=str),
            result.sync_id,
        ),
    )


def sync_server(
    config: AppConfig,
    store: Store,
    server: str,
    *,
    libraries: list[str] | None = None,
    bus: EventBus = events.bus,
    allow_shrink: bool = False,
    retry: RetryPolicy | None = None,
) -> SyncResult:
    """Fully sync one configured Plex server into ``store`` (see the module docstring for every step).

    ``libraries`` (titles) overrides ``plex.servers[].libraries``; an unknown title ends the sync with
    status ``error``. ``allow_shrink`` lets a sweep remove more than ``deletion.max_library_shrink_percent``
    (the user confirmed the library really shrank). ``store`` must be this thread's own Store.
    Raises :class:`LockHeld` (``details["sync_id"]`` = the running sync) and :class:`UsageError` for an
    unknown server; every other outcome is in the returned :class:`SyncResult`.
    """
    srv = _server_config(config, server)
    wanted = list(libraries) if libraries else list(srv.libraries)
    sync_id, lock = _begin(store, server, ", ".join(wanted) or None)
    started = time.time()
    t0 = time.monotonic()
    counts = _zero_counts()
    library_results: list[dict[str, Any]] = []
    status, error = "ok", None
    bus.publish("sync.started", server=server, sync_id=sync_id, libraries=wanted)
    log.info("sync %d of Plex server %s started", sync_id, server)
    try:
        with PlexClient(srv, retry=retry) as client:
            identity, latency = measure_identity(client)
            _set_health(store, server, "ok", version=identity.get("version"), latency_ms=round(latency, 1))
            sections = _choose_sections(client.sections(), wanted, server)
            job = _FullSync(config, store, client, srv, sync_id, lock, bus, allow_shrink, counts)
            for section in sections:
                library_results.append(job.sync_section(section))
            refusals = [lib["note"] for lib in library_results if lib["sweep"] == "refused"]
            if refusals:
                status, error = "refused", "; ".join(refusals)
    except PlexUnauthorized as exc:
        status, error = "unauthorized", str(exc)
        _set_health(store, server, "unauthorized", error=error)
        bus.publish("plex.unauthorized", server=server, sync_id=sync_id, message=error)
    except PlexError as exc:
        status, error = "error", str(exc)
        _set_health(store, server, "down", error=error)
    except _NoSuchLibrary as exc:
        status, error = "error", str(exc)
    except Exception as exc:
        log.exception("sync %d of Plex server %s failed", sync_id, server)
        status, error = "error", f"{type(exc).__name__}: {exc}"
    finally:
        result = SyncResult(
            sync_id=sync_id,
            server=server,
            status=status,
            counts=counts,
            duration_ms=int((time.monotonic() - t0) * 1000),
            error=error,
            libraries=library_results,
        )
        try:
            _finish(store, result, started)
        finally:
            lock.release()
    log.log(
        logging.INFO if status == "ok" else logging.WARNING,
        "sync %d of Plex server %s: %s in %d ms (%s)%s",
        sync_id,
        server,
        status,
        result.duration_ms,
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        f": {error}" if error else "",
    )
    bus.publish("sync.finished", **result.to_dict())
    return result


class _NoSuchLibrary(Exception):
    pass


def _choose_sections(sections: list[dict[str, Any]], wanted: list[str], server: str) -> list[dict[str, Any]]:
    usable = [s for s in sections if s.get("type") in SECTION_LISTINGS]
    if not wanted:
        return usable
    by_title = {s.get("title"): s for s in usable}
    missing = [t for t in wanted if t not in by_title]
    if missing:
        have = ", ".join(sorted(str(t) for t in by_title)) or "none"
        raise _NoSuchLibrary(
            f"Plex server '{server}' has no movie or show library titled {', '.join(repr(m) for m in missing)} "
            f"(it has: {have}); fix plex.servers[{server}].libraries or --library"
        )
    return [by_title[t] for t in wanted]


_PAGE_COLUMNS = ("server", "section_id", "type", "start", "size", "body_digest", "total", "items", "digests", "refs")
_PAGES_PER_STATEMENT = 100


class _Batch:
    """Groups several pages' writes into one transaction, committed every :data:`BATCH_SECONDS`.

    ``pages`` collects the batch's ``sync_pages`` rows: they are written with one statement just before the
    commit (every statement costs the writer a wait for the GIL when it returns), and dropped on rollback.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tx: Any = None
        self.started = 0.0
        self.pages: list[tuple[Any, ...]] = []

    def open(self) -> None:
        if self._tx is None:
            self._tx = self.store.transaction()
            self._tx.__enter__()
            self.started = time.monotonic()

    def page_done(self) -> None:
        if time.monotonic() - self.started >= BATCH_SECONDS:
            self.close()

    def close(self, exc: BaseException | None = None) -> None:
        """Commit (or with ``exc``, roll back) the open transaction, if any."""
        tx, self._tx = self._tx, None
        pages, self.pages = self.pages, []
        if tx is None:
            return
        if exc is None:
            try:
                self._write_pages(pages)
            except BaseException as failed:
                tx.__exit__(type(failed), failed, failed.__traceback__)
                raise
        tx.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    def _write_pages(self, pages: list[tuple[Any, ...]]) -> None:
        width = len(_PAGE_COLUMNS)
        for i in range(0, len(pages), _PAGES_PER_STATEMENT):
            chunk = pages[i : i + _PAGES_PER_STATEMENT]
            values = ", ".join([f"({', '.join('?' * width)})"] * len(chunk))
            self.store.execute(
                f"INSERT OR REPLACE INTO sync_pages ({', '.join(_PAGE_COLUMNS)}) VALUES {values}",
                [v for row in chunk for v in row],
            )


class _FullSync:
    """One server's full sync, library by library (the state shared by its steps)."""

    def __init__(
        self,
        config: AppConfig,
        store: Store,
        client: PlexClient,
        srv: PlexServerConfig,
        sync_id: int,
        lock: locks.Lock,
        bus: EventBus,
        allow_shrink: bool,
        counts: dict[str, int],
    ) -> None:
        self.config, self.store, self.client, self.srv = config, store, client, srv
        self.sync_id, self.lock, self.bus, self.allow_shrink = sync_id, lock, bus, allow_shrink
        self.counts = counts
        """The whole sync's counts, kept current page by page (so an interrupted sync reports its progress)."""
        self.server = srv.name
        self.lock_refreshed = time.monotonic()
        store.execute("CREATE TEMP TABLE IF NOT EXISTS sync_seen (rating_key TEXT PRIMARY KEY)")
        # A database migrated before sync_pages existed works, without the page cache.
        self.page_cache = store.query_one("SELECT 1 AS x FROM sqlite_master WHERE name = 'sync_pages'") is not None
        self.writer = _Writer(store, self.server, sync_id, seen_table=True)
        self.batch = _Batch(store)
        """The open write batch (a new one per library, see :meth:`_load`)."""

    def _refresh_lock(self) -> None:
        if time.monotonic() - self.lock_refreshed >= LOCK_REFRESH:
            self.lock.refresh()
            self.lock_refreshed = time.monotonic()

    def _parse(
        self, body: bytes, section_id: str, title: str, type_: str, start: int, build_rows: bool, body_digest: str
    ) -> Listed:
        page = self.client.parse_page(body, section_id, start)
        items = [item for item in page.items if item.get("type") == type_]
        params_for = (self.server, self.sync_id) if build_rows else None
        return listed(page.total, items, section_id, title, params_for=params_for, body_digest=body_digest, start=start)

    def _cached(self, page: CachedPage, section_id: str, title: str, type_: str, build_rows: bool) -> Any:
        """Complete a :class:`CachedPage` from its ``sync_pages`` row (or parse it, if the row went away)."""
        found = self.store.query_one(
            "SELECT total, items, digests, refs FROM sync_pages WHERE server = ? AND section_id = ? AND type = ? "
            "AND start = ? AND body_digest = ?",
            (self.server, section_id, type_, page.start, page.body_digest),
        )
        if found is None:
            return self._parse(page.body, section_id, title, type_, page.start, build_rows, page.body_digest)
        return page._replace(
            total=found["total"], count=found["items"], page_json=found["digests"], refs=tuple(_loads(found["refs"]))
        )

    def _pages(
        self, pool: ThreadPoolExecutor, section_id: str, title: str, type_: str, total: int, build_rows: bool
    ) -> Iterator[Listed | CachedPage]:
        """The listing's pages in order, with up to ``pages_in_flight`` fetches outstanding."""
        size = self.srv.sync.page_size
        client, server = self.client, self.server
        known = (
            {
                r["start"]: r["body_digest"]
                for r in self.store.query(
                    "SELECT start, body_digest FROM sync_pages WHERE server = ? AND section_id = ? AND type = ? "
                    "AND size = ?",
                    (server, section_id, type_, size),
                )
            }
            if self.page_cache
            else {}
        )

        def fetch(offset: int) -> Listed | CachedPage:
            # Runs in a worker: parsing, rows and digests overlap with the main thread's SQLite work (which
            # runs without the GIL). Upsert parameters are built here only when every item will be written.
            body = client.fetch_page_body(section_id, type_, offset, size)
            body_digest = hashlib.sha256(body).hexdigest()
            if known.get(offset) == body_digest:
                return CachedPage(offset, body, body_digest)
            return self._parse(body, section_id, title, type_, offset, build_rows, body_digest)

        pending: deque[Future[Listed | CachedPage]] = deque()
        next_offset = 0
        known_total = total
        try:
            while True:
                while len(pending) < self.srv.sync.pages_in_flight and next_offset < known_total:
                    pending.append(pool.submit(fetch, next_offset))
                    next_offset += size
                if not pending:
                    return
                page = pending.popleft().result()
                if isinstance(page, CachedPage):
                    page = self._cached(page, section_id, title, type_, build_rows)
                # Items added while we page would shift past the planned end: keep going to the new end.
                known_total = max(known_total, page.total)
                yield page
        finally:
            for future in pending:
                future.cancel()

    def sync_section(self, section: dict[str, Any]) -> dict[str, Any]:
        section_id, title, kind = str(section["key"]), str(section.get("title", "")), section["type"]
        listings = SECTION_LISTINGS[kind]
        totals = {t: self.client.count(section_id, t) for t in listings}
        total = sum(totals.values())
        counts = _zero_counts()
        progress = _Progress(self.bus, self.server, self.sync_id, title, total)
        self.store.execute("DELETE FROM temp.sync_seen")
        # A library we hold no rows of yet (the first sync): every item will be written, so the fetch
        # threads build the rows too. Otherwise most items are expected unchanged and rows are built lazily.
        build_rows = (
            self.store.query_one(
                "SELECT 1 AS x FROM media_items WHERE server = ? AND section_id = ? LIMIT 1", (self.server, section_id)
            )
            is None
        )
        # ... and nothing can be swept afterwards (every active row of the library is one this sync wrote, or
        # one a concurrent one-item sync just fetched from Plex), so the seen keys need not be recorded.
        self.writer.seen_table = not build_rows
        self.writer.first_load = build_rows
        consistent = self._load(section_id, title, listings, totals, build_rows, counts, progress)
        if progress.done != total or progress.last == 0.0:
            progress.publish()
        if build_rows:
            sweep, note, removed = "done", None, 0
        else:
            sweep, note, removed = self._sweep(section_id, title, consistent)
        if kind == "show":
            # Always, even when nothing was written now: an interrupted sync may have left sizes unrolled.
            _rollup(self.store, self.server, "section_id = :section", {"section": section_id})
        counts["removed"] = removed
        self.counts["removed"] += removed
        return {
            "section_id": section_id,
            "title": title,
            "type": kind,
            "total": total,
            "counts": counts,
            "sweep": sweep,
            "note": note,
        }

    def _load(
        self,
        section_id: str,
        title: str,
        listings: tuple[str, ...],
        totals: dict[str, int],
        build_rows: bool,
        counts: dict[str, int],
        progress: _Progress,
    ) -> bool:
        """Fetch and write every listing of the section; False when a listing changed while it was read."""
        consistent = True
        batch = self.batch = _Batch(self.store)
        with ThreadPoolExecutor(self.srv.sync.pages_in_flight, thread_name_prefix=f"plex-{self.server}") as pool:
            try:
                for type_ in listings:
                    received = 0
                    for page in self._pages(pool, section_id, title, type_, totals[type_], build_rows):
                        if page.total != totals[type_]:
                            consistent = False
                        n = page.count if isinstance(page, CachedPage) else len(page.items)
                        received += n
                        batch.open()
                        try:
                            page_counts = self._write(page, section_id, title, type_, build_rows, n)
                        except BaseException as exc:
                            batch.close(exc)
                            raise
                        # Commits when the batch is BATCH_SECONDS old.
                        batch.page_done()
                        page_counts = {**page_counts}
                        page_counts["added"] = page_counts.get("added", 0) + page_counts.get("restored", 0)
                        for outcome, k in page_counts.items():
                            counts[outcome] += k
                            self.counts[outcome] += k
                        counts["seen"] += n
                        self.counts["seen"] += n
                        progress.advance(n)
                        self._refresh_lock()
                    if received != totals[type_]:
                        consistent = False
            finally:
                # Pages written before a failure (a 401 or 5xx while fetching the next page) stay written;
                # a failed write has already rolled its batch back.
                batch.close()
        return consistent

    def _write(
        self, page: Listed | CachedPage, section_id: str, title: str, type_: str, build_rows: bool, n: int
    ) -> dict[str, int]:
        """Write one page (inside the batch transaction) and remember what a newly parsed page held."""
        if isinstance(page, CachedPage):
            if self.writer.write_unchanged(page.page_json, page.refs, n):
                return {"unchanged": n}
            page = self._parse(page.body, section_id, title, type_, page.start, build_rows, page.body_digest)
        counts, _ = self.writer.write(page, section_id, title)
        if self.page_cache and page.body_digest is not None:
            self.batch.pages.append(
                (
                    self.server,
                    section_id,
                    type_,
                    page.start,
                    self.srv.sync.page_size,
                    page.body_digest,
                    page.total,
                    len(page.items),
                    page.page_json,
                    _dumps(sorted(page.refs)).decode(),
                )
            )
        return counts

    def _sweep(self, section_id: str, title: str, consistent: bool) -> tuple[str, str | None, int]:
        """Mark rows Plex no longer lists as removed, unless that looks like an outage. (status, note, n)."""
        if not consistent:
            note = f"library '{title}' changed while it was read; removals wait for the next sync"
            log.info("sync %d: %s", self.sync_id, note)
            return "skipped", note, 0
        scope = (
            "FROM media_items m WHERE m.server = ? AND m.section_id = ? AND m.removed_at IS NULL "
            "AND m.deleted_at IS NULL"
        )
        gone_filter = " AND NOT EXISTS (SELECT 1 FROM temp.sync_seen s WHERE s.rating_key = m.rating_key)"
        params = (self.server, section_id)
        gone = self.store.query_one(f"SELECT COUNT(*) AS n {scope}{gone_filter}", params)["n"]  # type: ignore[index]
        if not gone:
            return "done", None, 0
        active = self.store.query_one(f"SELECT COUNT(*) AS n {scope}", params)["n"]  # type: ignore[index]
        limit = self.config.deletion.max_library_shrink_percent
        percent = 100.0 * gone / active
        if percent > limit and not self.allow_shrink:
            note = (
                f"sweep of library '{title}' refused: Plex no longer lists {gone} of {active} items "
                f"({percent:.1f}% > deletion.max_library_shrink_percent {limit:g}%); nothing was removed. "
                "If Plex was offline or a disk unmounted, fix that and sync again; if the library really "
                "shrank, run `smartplexd sync --allow-shrink`"
            )
            log.warning("sync %d: %s", self.sync_id, note)
            self.bus.publish(
                "sync.refused",
                server=self.server,
                sync_id=self.sync_id,
                library=title,
                would_remove=gone,
                active=active,
                percent=round(percent, 1),
                limit=limit,
                message=note,
            )
            return "refused", note, 0
        with self.store.transaction():
            cur = self.store.execute(
                f"UPDATE media_items SET removed_at = ? WHERE id IN (SELECT m.id {scope}{gone_filter})",
                (time.time(), *params),
            )
        return "done", None, cur.rowcount


# --------------------------------------------------------------------------------------------- one item


def _mark_gone(store: Store, server: str, rating_key: str) -> str:
    row = store.query_one(
        "SELECT type, removed_at, deleted_at, parent_rating_key, grandparent_rating_key FROM media_items "
        "WHERE server = ? AND rating_key = ?",
        (server, rating_key),
    )
    if row is None:
        return "unchanged"
    if row["deleted_at"] is not None:
        return "tombstoned"
    if row["removed_at"] is not None:
        return "unchanged"
    with store.transaction():
        store.execute(
            "UPDATE media_items SET removed_at = ? WHERE server = ? AND removed_at IS NULL AND deleted_at IS NULL "
            "AND (rating_key = ? OR parent_rating_key = ? OR grandparent_rating_key = ?)",
            (time.time(), server, rating_key, rating_key, rating_key),
        )
    parents = [k for k in (row["parent_rating_key"], row["grandparent_rating_key"]) if k]
    if parents:
        _rollup_keys(store, server, parents)
    return "removed"


def _rollup_keys(store: Store, server: str, keys: Iterable[str]) -> None:
    keys = list(dict.fromkeys(keys))
    names = {f"k{i}": k for i, k in enumerate(keys)}
    _rollup(store, server, f"rating_key IN ({', '.join(':' + n for n in names)})", names)


def sync_item(
    config: AppConfig,
    store: Store,
    server: str | PlexServerConfig,
    rating_key: str | int,
    *,
    client: PlexClient | None = None,
    bus: EventBus = events.bus,
) -> str:
    """Bring one item up to date from Plex (webhooks call this). Returns what happened to it:

    ``added`` (new, or back after a removal), ``updated``, ``unchanged``, ``removed`` (Plex no longer has
    it: the row and its seasons/episodes get ``removed_at``), ``tombstoned`` (smartplexd deleted it; nothing
    written) or ``ignored`` (not in a mirrored movie/show library). A show brings its seasons and episodes
    along, a season its episodes; parents' sizes are rolled up. Takes no lock: a concurrent full sync
    writes the same values. Raises :class:`PlexUnauthorized` (the server is marked ``unauthorized``) and
    :class:`PlexError` when Plex fails after retries. ``server`` is a name or its ``PlexServerConfig``.
    """
    srv = _server_config(config, server)
    server = srv.name
    rk = str(rating_key)
    own_client = client is None
    plex = client or PlexClient(srv)
    try:
        try:
            item = plex.fetch_item(rk)
            if item is None:
                outcome = _mark_gone(store, server, rk)
                bus.publish("sync.item", server=server, rating_key=rk, outcome=outcome)
                return outcome
            section_id = str(item.get("librarySectionID", ""))
            section_title = str(item.get("librarySectionTitle", ""))
            if item.get("type") not in ITEM_TYPES or (srv.libraries and section_title not in srv.libraries):
                return "ignored"
            items = [item]
            if item["type"] == "show":
                items += plex.children(rk) + plex.all_leaves(rk)
            elif item["type"] == "season":
                items += plex.children(rk)
        except PlexUnauthorized as exc:
            _set_health(store, server, "unauthorized", error=str(exc))
            bus.publish("plex.unauthorized", server=server, message=str(exc))
            raise
    finally:
        if own_client:
            plex.close()
    items = [i for i in items if i.get("type") in ITEM_TYPES]
    page = listed(len(items), items, section_id, section_title, params_for=(server, None))
    _, outcomes = _Writer(store, server, None, seen_table=False).write(page, section_id, section_title)
    rows = page.rows
    first = rows[0]
    affected = [k for k in (first.parent_rating_key, first.grandparent_rating_key) if k]
    if first.type in ("show", "season"):
        affected += [r.rating_key for r in rows if r.type == "season"] + [first.rating_key]
    if affected:
        _rollup_keys(store, server, affected)
    # An item that is not in outcomes was listed with the digest of its active row: unchanged.
    outcome = outcomes.get(first.rating_key, "unchanged")
    outcome = "added" if outcome == "restored" else outcome
    bus.publish("sync.item", server=server, rating_key=rk, outcome=outcome)
    return outcome
