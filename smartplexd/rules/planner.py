"""Plans: which items each rule selects right now, why, and what it would free. Always a dry run.

``make_plan`` evaluates the rules (see :mod:`smartplexd.rules.evaluator`), then, rule by rule in file
order, walks each rule's candidates in its ``order_by`` order and gives every one a status:

* ``selected`` — it will be acted on when the plan is applied (``smartplexd apply <id>``);
* ``leaving_soon`` — its rule has a ``grace_period``: it sits in a Plex collection until ``due_at``;
* ``skipped`` — a fact it depends on is unknown (a service failed, is stale, or is not configured);
* ``excluded`` — keep label (on it or its show), tombstoned, in another rule's grace period, already
  selected by an earlier rule, or its show/season is already selected (never counted twice);
* ``limited`` — over a rule's ``limits``, the global ``deletion.max_items_per_run``/``max_bytes_per_run``,
  or past the free-space target of a ``storage`` rule.

Grace periods: with ``start_grace=True`` (the scheduled evaluation; never ``smartplexd plan``) new
``leaving_soon`` rows are written and the items added to the rule's Plex collection. An entry becomes
``selected`` only once ``due_at`` has passed, the rule still selects it and it has not been played since
it entered the collection; playing it cancels the grace period (and takes it out of the collection).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from smartplexd import audit
from smartplexd.errors import UsageError
from smartplexd.events import bus
from smartplexd.rules.evaluator import Candidate, Evaluation
from smartplexd.rules.facts import FactRegistry
from smartplexd.rules.facts import registry as default_registry
from smartplexd.rules.models import Rule
from smartplexd.units import format_size

log = logging.getLogger(__name__)

STATUSES = ("selected", "leaving_soon", "skipped", "excluded", "limited")
_EXPLAINED = ("selected", "leaving_soon", "skipped", "excluded")


@dataclass
class PlanEntry:
    """One item of a plan for one rule (see the module docstring for ``status``)."""

    item_id: int
    title: str
    library: str
    type: str
    size: int
    rule: str
    action: str
    status: str
    reasons: list[dict[str, Any]] = field(default_factory=list)
    skip_reason: str | None = None
    bytes: int = 0
    server: str = ""
    rating_key: str = ""
    rank: int | None = None
    due_at: float | None = None
    unknown: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """A stored (``id`` set) or preview (``id`` None) plan."""

    id: int | None
    created_at: float
    created_by: str
    rules: list[str]
    items: list[PlanEntry]
    totals: dict[str, Any]
    unknown_sources: dict[str, dict[str, Any]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    storage: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[dict[str, Any]] = field(default_factory=list)

    @property
    def selected(self) -> list[PlanEntry]:
        return [e for e in self.items if e.status == "selected"]

    def by_status(self, status: str) -> list[PlanEntry]:
        return [e for e in self.items if e.status == status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "rules": self.rules,
            "totals": self.totals,
            "unknown_sources": self.unknown_sources,
            "storage": self.storage,
            "items": [e.to_dict() for e in self.items],
            "requests": self.requests,
            "cancelled_grace": self.cancelled,
        }


# --- helpers ---------------------------------------------------------------------------------------------


def _ids_param(ids: list[int]) -> str:
    return json.dumps(ids)


def _load_items(store: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    """Item details plus the labels and title of the show (or season's show) it belongs to."""
    if not ids:
        return {}
    rows = store.query(
        "SELECT m.id, m.server, m.section_id, m.section_title, m.rating_key, m.type, m.title, m.year, "
        "m.parent_rating_key, m.grandparent_rating_key, m.season_index, m.episode_index, m.last_viewed_at, "
        "m.labels, m.files, m.size_bytes, p.title AS show_title, p.labels AS show_labels, "
        "s.labels AS season_labels FROM media_items m "
        "LEFT JOIN media_items p ON p.server = m.server AND p.rating_key = CASE m.type "
        "WHEN 'episode' THEN m.grandparent_rating_key WHEN 'season' THEN m.parent_rating_key END "
        "LEFT JOIN media_items s ON m.type = 'episode' AND s.server = m.server AND s.rating_key = m.parent_rating_key "
        "WHERE m.id IN (SELECT value FROM json_each(?))",
        (_ids_param(ids),),
    )
    out = {}
    for row in rows:
        labels = json.loads(row["labels"] or "[]")
        inherited = json.loads(row["show_labels"] or "[]") + json.loads(row["season_labels"] or "[]")
        row["labels"] = labels
        row["all_labels"] = labels + inherited
        row["files"] = json.loads(row["files"] or "[]")
        out[row["id"]] = row
    return out


def display_title(item: dict[str, Any]) -> str:
    """``Show - S01E02 - Title`` for episodes, ``Show - Season 1`` for seasons, the title otherwise."""
    show = item.get("show_title")
    if item["type"] == "episode" and show:
        return f"{show} - S{item.get('season_index') or 0:02d}E{item.get('episode_index') or 0:02d} - {item['title']}"
    if item["type"] == "season" and show:
        return f"{show} - {item['title']}"
    if item.get("year"):
        return f"{item['title']} ({item['year']})"
    return str(item["title"])


def _sorted(rule: Rule, candidates: list[Candidate]) -> list[Candidate]:
    """``order_by`` order (``-`` = descending); unknown or absent values always last; ties by item id."""
    out = sorted(candidates, key=lambda c: c.id)
    for k in reversed(range(len(rule.order_by))):
        desc = rule.order_by[k].startswith("-")
        present = [c for c in out if c.order[k] is not None]
        missing = [c for c in out if c.order[k] is None]
        present.sort(key=lambda c: c.order[k], reverse=desc)
        out = present + missing
    return out


def _disks(store: Any, now: float, max_age: float) -> tuple[list[dict[str, Any]], str | None]:
    """Disks reported by Sonarr/Radarr health checks (``details.disk``), newest per path; or why not."""
    rows = store.query("SELECT name, plugin, status, checked_at, details FROM integration_health ORDER BY checked_at")
    disks: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            details = json.loads(row["details"] or "{}")
        except ValueError:
            continue
        for disk in details.get("disk") or []:
            if not isinstance(disk, dict) or not disk.get("total"):
                continue
            disks[str(disk["path"])] = {
                "path": str(disk["path"]),
                "free": int(disk.get("free") or 0),
                "total": int(disk["total"]),
                "source": row["name"],
                "checked_at": row["checked_at"],
            }
    if not disks:
        return [], "no disk space reported yet (Sonarr/Radarr health checks report it)"
    fresh = [d for d in disks.values() if now - float(d["checked_at"]) <= max_age]
    if not fresh:
        return [], "disk space reports are older than a day"
    return fresh, None


def _disk_for(path: str | None, disks: list[dict[str, Any]], wanted: str | None) -> dict[str, Any] | None:
    if wanted is not None:
        matches = [d for d in disks if wanted == d["path"] or wanted.startswith(d["path"].rstrip("/") + "/")]
        return max(matches, key=lambda d: len(d["path"]), default=None)
    if len(disks) == 1:
        return disks[0]
    if not path:
        return None
    matches = [d for d in disks if path.startswith(d["path"].rstrip("/") + "/") or path == d["path"]]
    return max(matches, key=lambda d: len(d["path"]), default=None)


def _item_path(store: Any, item: dict[str, Any]) -> str | None:
    if item["files"]:
        return str(item["files"][0])
    column = "grandparent_rating_key" if item["type"] == "show" else "parent_rating_key"
    row = store.query_one(
        f"SELECT files FROM media_items WHERE server = ? AND {column} = ? AND type = 'episode' "
        "AND files <> '[]' LIMIT 1",
        (item["server"], item["rating_key"]),
    )
    files = json.loads(row["files"]) if row else []
    return str(files[0]) if files else None


# --- the planner -------------------------------------------------------------------------------------------


class _Planner:
    def __init__(self, config: Any, store: Any, now: float, persist: bool, start_grace: bool, actor: str) -> None:
        self.config = config
        self.store = store
        self.now = now
        self.persist = persist
        self.start_grace = start_grace and persist
        self.actor = actor
        self.keep = config.deletion.keep_label.lower()
        self.tombstones = {
            (r["server"], r["rating_key"])
            for r in store.query(
                "SELECT server, rating_key FROM tombstones WHERE expires_at IS NULL OR expires_at > ?", (now,)
            )
        }
        self.grace: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in store.query(
            "SELECT l.*, m.last_viewed_at AS current_last_viewed_at, m.server, m.section_id, m.rating_key "
            "FROM leaving_soon l JOIN media_items m ON m.id = l.item_id WHERE l.status IN ('pending', 'due')"
        ):
            self.grace[row["item_id"]].append(row)
        self.entries: list[PlanEntry] = []
        self.chosen: dict[tuple[str, int], str] = {}  # (action, item id) -> rule
        self.covering: dict[tuple[str, str], tuple[str, str]] = {}  # (server, show/season key) -> (rule, title)
        self.counted_under: dict[tuple[str, str], int] = defaultdict(int)
        self.global_items = 0
        self.global_bytes = 0
        self.unknown: dict[str, dict[str, Any]] = {}
        self.storage: dict[str, dict[str, Any]] = {}
        self.cancelled: list[dict[str, Any]] = []
        self.new_grace: list[tuple[PlanEntry, Rule, dict[str, Any]]] = []
        self.due_grace: list[tuple[PlanEntry, dict[str, Any]]] = []

    # --- per rule

    def plan_rule(self, rule: Rule, candidates: list[Candidate], items: dict[int, dict[str, Any]]) -> None:
        storage = self._storage_state(rule, candidates, items) if rule.storage else None
        if storage is not None and not storage.get("active"):
            return
        taken_items = 0
        taken_bytes = 0
        needs: dict[str, int] = dict(storage["need"]) if storage else {}
        action = rule.action.type
        matched_grace: set[int] = set()
        for rank, cand in enumerate(_sorted(rule, candidates), start=1):
            item = items.get(cand.id)
            if item is None:  # deleted between evaluation and now
                continue
            entry = PlanEntry(
                item_id=cand.id,
                title=display_title(item),
                library=item["section_title"],
                type=item["type"],
                size=cand.bytes,
                rule=rule.name,
                action=rule.action.type,
                status="selected",
                server=item["server"],
                rating_key=item["rating_key"],
                rank=rank,
            )
            self.entries.append(entry)
            if cand.result is None:
                entry.status = "skipped"
                entry.unknown = dict(cand.unknown)
                why = "; ".join(f"{s}: {w}" for s, w in sorted(cand.unknown.items())) or "a fact is unknown"
                entry.skip_reason = f"unknown facts ({why})"
                for source, reason in cand.unknown.items():
                    slot = self.unknown.setdefault(source, {"items": 0, "reason": reason})
                    slot["items"] += 1
                continue
            if rule.action.grace_period:
                matched_grace.add(cand.id)
            excluded = self._exclusion(rule, item)
            if excluded:
                entry.status, entry.skip_reason = "excluded", excluded
                continue
            bytes_ = self._bytes(rule, item, cand.bytes)
            limit = self._limit(rule, taken_items, taken_bytes, bytes_)
            if limit is None and storage is not None:
                disk = _disk_for(_item_path(self.store, item), storage["disks"], rule.storage.path)  # type: ignore[union-attr]
                if disk is None:
                    entry.status = "skipped"
                    entry.skip_reason = "no disk known for its files (set storage.path in the rule)"
                    continue
                if needs.get(disk["path"], 0) <= 0:
                    limit = f"storage target reached on {disk['path']} ({rule.storage.until_free_above:g}% free)"  # type: ignore[union-attr]
                else:
                    needs[disk["path"]] -= bytes_
            if limit is not None:
                entry.status, entry.skip_reason = "limited", limit
                continue
            taken_items += 1
            taken_bytes += bytes_
            entry.bytes = bytes_ if rule.action.type == "delete" else 0
            if rule.action.grace_period:
                self._grace(rule, entry, item)
            self.chosen[(action, item["id"])] = rule.name
            if entry.status == "selected":
                self._take(rule, entry, item)
        if rule.action.grace_period:
            self._cancel_unmatched(rule, matched_grace, candidates)

    def _exclusion(self, rule: Rule, item: dict[str, Any]) -> str | None:
        if (item["server"], item["rating_key"]) in self.tombstones:
            return "deleted by smartplexd before (tombstone)"
        # The keep label protects from deletion and unmonitoring; a notify rule may still report it.
        protects = rule.action.type != "notify"
        if protects and any(str(label).lower() == self.keep for label in item["all_labels"]):
            where = "" if any(str(x).lower() == self.keep for x in item["labels"]) else " (on its show)"
            return f"label '{self.config.deletion.keep_label}'{where}"
        for row in self.grace.get(item["id"], []):
            if row["rule"] != rule.name:
                return f"in the grace period of rule {row['rule']} until {_date(row['due_at'])}"
        first = self.chosen.get((rule.action.type, item["id"]))
        if first is not None:
            return f"already selected by rule {first}"
        if rule.action.type == "delete":
            for key in (item["grandparent_rating_key"], item["parent_rating_key"]):
                if key and (item["server"], key) in self.covering:
                    other_rule, title = self.covering[(item["server"], key)]
                    return f"covered: {title} is selected by rule {other_rule}"
        return None

    def _bytes(self, rule: Rule, item: dict[str, Any], bytes_: int) -> int:
        """What deleting it frees, minus what its already selected episodes/seasons account for."""
        if rule.action.type == "delete" and item["type"] in ("show", "season"):
            return max(0, bytes_ - self.counted_under[(item["server"], item["rating_key"])])
        return bytes_

    def _limit(self, rule: Rule, n: int, b: int, bytes_: int) -> str | None:
        lim = rule.limits
        if lim.max_items is not None and n >= lim.max_items:
            return f"rule limit: max_items {lim.max_items}"
        if lim.max_bytes is not None and b + bytes_ > lim.max_bytes:
            return f"rule limit: max_bytes {format_size(lim.max_bytes)}"
        if rule.action.type == "delete" and not rule.action.grace_period:
            return self._global_limit(bytes_)
        return None

    def _global_limit(self, bytes_: int) -> str | None:
        d = self.config.deletion
        if self.global_items >= d.max_items_per_run:
            return f"global limit: deletion.max_items_per_run {d.max_items_per_run}"
        if self.global_bytes + bytes_ > d.max_bytes_per_run:
            return f"global limit: deletion.max_bytes_per_run {format_size(d.max_bytes_per_run)}"
        return None

    def _take(self, rule: Rule, entry: PlanEntry, item: dict[str, Any]) -> None:
        """Account for a selected entry: global limits and the show/season coverage (delete only)."""
        self.chosen[(rule.action.type, item["id"])] = rule.name
        if rule.action.type != "delete":
            return
        self.global_items += 1
        self.global_bytes += entry.bytes
        server = item["server"]
        if item["type"] in ("show", "season"):
            self.covering[(server, item["rating_key"])] = (rule.name, entry.title)
        for key in (item["parent_rating_key"], item["grandparent_rating_key"]):
            if key:
                self.counted_under[(server, key)] += entry.bytes

    # --- grace periods

    def _grace(self, rule: Rule, entry: PlanEntry, item: dict[str, Any]) -> None:
        assert rule.action.grace_period
        row = next((r for r in self.grace.get(item["id"], []) if r["rule"] == rule.name), None)
        if row is None:
            entry.status = "leaving_soon"
            entry.due_at = self.now + rule.action.grace_period
            entry.skip_reason = f"enters the leaving-soon collection; due {_date(entry.due_at)}"
            self.new_grace.append((entry, rule, item))
            return
        entry.due_at = row["due_at"]
        if _played_since(row):
            entry.status = "excluded"
            entry.skip_reason = "played during its grace period (grace cancelled)"
            self._cancel(row, "played during the grace period")
            return
        if row["due_at"] > self.now:
            entry.status = "leaving_soon"
            entry.skip_reason = f"in the leaving-soon collection until {_date(row['due_at'])}"
            return
        limit = self._global_limit(entry.bytes)
        if limit is not None:
            entry.status, entry.skip_reason = "limited", limit
            return
        entry.status = "selected"
        self.due_grace.append((entry, row))

    def _cancel_unmatched(self, rule: Rule, matched: set[int], candidates: list[Candidate]) -> None:
        """Grace rows of this rule whose item the rule no longer selects (and is not unknown) end."""
        undecided = {c.id for c in candidates if c.result is None}
        for item_id, rows in self.grace.items():
            for row in rows:
                if row["rule"] == rule.name and item_id not in matched and item_id not in undecided:
                    self._cancel(row, "no longer selected by its rule")

    def _cancel(self, row: dict[str, Any], reason: str) -> None:
        self.cancelled.append({"item_id": row["item_id"], "rule": row["rule"], "reason": reason})
        if self.start_grace:
            cancel_grace_row(self.config, self.store, row, reason, self.actor, self.now)

    # --- storage mode

    def _storage_state(
        self, rule: Rule, candidates: list[Candidate], items: dict[int, dict[str, Any]]
    ) -> dict[str, Any]:
        """``{"active", "need": {disk path: bytes still to free}, "disks"}``; reported in ``plan.storage``."""
        assert rule.storage is not None
        report: dict[str, Any] = {
            "when_free_below": rule.storage.when_free_below,
            "until_free_above": rule.storage.until_free_above,
        }
        disks, problem = _disks(self.store, self.now, 86_400.0)
        if not problem and rule.storage.path is not None:
            disk = _disk_for(None, disks, rule.storage.path)
            disks = [disk] if disk else []
            problem = None if disk else f"no reported disk holds {rule.storage.path}"
        if problem:
            # Free space unknown: the rule selects nothing, and the plan says so at the top.
            report.update(active=False, known=False, reason=problem)
            self.storage[rule.name] = report
            waiting = sum(1 for c in candidates if c.result)
            if waiting:
                slot = self.unknown.setdefault("disk space", {"items": 0, "reason": problem})
                slot["items"] += waiting
            return {"active": False}
        need: dict[str, int] = {}
        shown = []
        for d in disks:
            pct = 100.0 * d["free"] / d["total"]
            under = pct < rule.storage.when_free_below
            target = int(d["total"] * rule.storage.until_free_above / 100.0) - d["free"]
            need[d["path"]] = max(0, target) if under else 0
            shown.append({"path": d["path"], "free": d["free"], "total": d["total"], "free_percent": round(pct, 2),
                          "under_pressure": under, "bytes_to_free": need[d["path"]]})  # fmt: skip
        active = any(v > 0 for v in need.values())
        report.update(active=active, known=True, disks=shown)
        if not active:
            report["reason"] = f"every disk has at least {rule.storage.when_free_below:g}% free"
        self.storage[rule.name] = report
        return {"active": active, "need": need, "disks": disks}

    # --- requests

    def add_requests(self, requests: list[dict[str, Any]], items: dict[int, dict[str, Any]]) -> None:
        for req in requests:
            item = items.get(req["item_id"]) if req["item_id"] else None
            if item is None:
                continue
            name = f"request:{req['id']}"
            entry = PlanEntry(
                item_id=item["id"],
                title=display_title(item),
                library=item["section_title"],
                type=item["type"],
                size=item["size_bytes"] or 0,
                rule=name,
                action="delete",
                status="selected",
                server=item["server"],
                rating_key=item["rating_key"],
                reasons=[
                    {
                        "in": "request",
                        "fact": "request",
                        "op": "requested_by",
                        "expected": None,
                        "actual": req["requested_by"],
                        "state": "known",
                        "matched": True,
                        "text": f"deletion requested by {req['requested_by']}"
                        + (f": {req['reason']}" if req.get("reason") else ""),
                    }
                ],
            )
            self.entries.append(entry)
            pseudo = Rule.model_construct(name=name, action=_DELETE, limits=_NO_LIMITS)
            excluded = self._exclusion(pseudo, item)
            if excluded:
                entry.status, entry.skip_reason = "excluded", excluded
                continue
            entry.bytes = self._bytes(pseudo, item, entry.size)
            limit = self._global_limit(entry.bytes)
            if limit:
                entry.status, entry.skip_reason, entry.bytes = "limited", limit, 0
                continue
            self._take(pseudo, entry, item)


def _played_since(row: dict[str, Any]) -> bool:
    return row["current_last_viewed_at"] is not None and row["current_last_viewed_at"] != row["last_viewed_at_start"]


def _date(epoch: float | None) -> str:
    from datetime import UTC, datetime

    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _pseudo_models() -> tuple[Any, Any]:
    from smartplexd.rules.models import Action, Limits

    return Action(type="delete"), Limits()


_DELETE, _NO_LIMITS = _pseudo_models()


# --- Plex collections ---------------------------------------------------------------------------------


def _collection_call(config: Any, server: str, section_id: str, title: str, keys: list[str], add: bool) -> str | None:
    """Add to / remove from a Plex collection; returns an error message instead of raising."""
    from smartplexd.plex.client import PlexClient

    try:
        server_cfg = config.plex_server(server)
    except KeyError:
        return f"server {server} is not configured"
    try:
        with PlexClient(server_cfg) as client:
            if add:
                client.add_to_collection(section_id, title, keys)
            else:
                client.remove_from_collection(section_id, title, keys)
    except Exception as exc:  # a collection is a courtesy to viewers; it must never break a plan
        log.warning("Plex collection %r on %s: %s", title, server, exc)
        return str(exc)
    return None


def cancel_grace_row(config: Any, store: Any, row: dict[str, Any], reason: str, actor: str, now: float) -> None:
    """End one grace period: status cancelled, out of the Plex collection, audited."""
    with store.transaction():
        store.execute(
            "UPDATE leaving_soon SET status = 'cancelled', reason = ?, updated_at = ? WHERE id = ?",
            (reason, now, row["id"]),
        )
    item = store.query_one(
        "SELECT server, section_id, rating_key, title FROM media_items WHERE id = ?", (row["item_id"],)
    )
    error = None
    if item is not None and row.get("collection"):
        error = _collection_call(
            config, item["server"], item["section_id"], row["collection"], [item["rating_key"]], False
        )
    audit.record(
        store,
        actor,
        "leaving_soon.cancelled",
        f"item:{row['item_id']}",
        {"rule": row["rule"], "reason": reason, "collection": row.get("collection"), "collection_error": error},
    )
    bus.publish("leaving_soon.cancelled", item_id=row["item_id"], rule=row["rule"], reason=reason)


def cancel_leaving_soon_if_played(config: Any, store: Any, item_id: int, *, played_at: float | None = None) -> bool:
    """Cancel the item's active grace periods if it was played since it entered the collection.

    The webhook path calls this after a play (``played_at`` = when, if the sync has not stored it yet);
    the planner does the same check for every run. Returns True when a grace period was cancelled.
    """
    rows = store.query(
        "SELECT l.*, m.last_viewed_at AS current_last_viewed_at FROM leaving_soon l "
        "JOIN media_items m ON m.id = l.item_id WHERE l.item_id = ? AND l.status IN ('pending', 'due')",
        (item_id,),
    )
    cancelled = False
    now = time.time()
    for row in rows:
        played = _played_since(row) or (played_at is not None and played_at > row["added_at"])
        if played:
            cancel_grace_row(config, store, row, "played during the grace period", "system", now)
            cancelled = True
    return cancelled


# --- entry points ----------------------------------------------------------------------------------------


def select_rules(rules: list[Rule], rule_names: list[str] | None) -> list[Rule]:
    """The rules a plan evaluates: the named ones (even if disabled), else every enabled rule."""
    if not rule_names:
        return [r for r in rules if r.enabled]
    by_name = {r.name: r for r in rules}
    out = []
    for name in rule_names:
        if name not in by_name:
            import difflib

            close = difflib.get_close_matches(name, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; rules: {', '.join(by_name) or '(none)'}"
            raise UsageError(f"no rule named {name!r}{hint}")
        out.append(by_name[name])
    return out


def open_requests(store: Any) -> list[dict[str, Any]]:
    """Deletion requests filed by requesters and not yet handled, with the item's title and size."""
    return store.query(
        "SELECT r.id, r.item_id, r.server, r.rating_key, r.requested_by, r.reason, r.created_at, "
        "m.title, m.section_title AS library, m.size_bytes AS size FROM deletion_requests r "
        "LEFT JOIN media_items m ON m.id = r.item_id WHERE r.status = 'open' ORDER BY r.created_at"
    )


def make_plan(
    config: Any,
    store: Any,
    rules: list[Rule],
    *,
    actor: str,
    rule_names: list[str] | None = None,
    persist: bool = True,
    start_grace: bool = False,
    now: float | None = None,
    include_requests: bool = False,
    registry: FactRegistry | None = None,
    pm: Any = None,
) -> Plan:
    """Evaluate ``rules`` and build a plan; store it in ``plans``/``plan_items`` when ``persist``.

    Never deletes anything. ``start_grace`` (scheduled runs only) writes new leaving-soon rows, adds those
    items to their Plex collection and cancels grace periods that ended (played, no longer selected).
    """
    now = time.time() if now is None else now
    chosen = select_rules(rules, rule_names)
    reg = registry if registry is not None else default_registry(pm)
    planner = _Planner(config, store, now, persist, start_grace, actor)
    requests = open_requests(store)
    with Evaluation(config, store, chosen, reg, now=now, pm=pm) as ev:
        decided = [(rule, ev.decide(rule)) for rule in chosen]
        ids = sorted({c.id for _, cands in decided for c in cands} | {r["item_id"] for r in requests if r["item_id"]})
        items = _load_items(store, ids)
        for rule, cands in decided:
            planner.plan_rule(rule, cands, items)
        if include_requests:
            planner.add_requests(requests, items)
        by_rule: dict[str, list[PlanEntry]] = defaultdict(list)
        for entry in planner.entries:
            if entry.status in _EXPLAINED and not entry.reasons:
                by_rule[entry.rule].append(entry)
        rules_by_name = {r.name: r for r in chosen}
        for name, entries in by_rule.items():
            explained = ev.explain(rules_by_name[name], [e.item_id for e in entries])
            for entry in entries:
                entry.reasons = explained.get(entry.item_id, [])
    plan = Plan(
        id=None,
        created_at=now,
        created_by=actor,
        rules=[r.name for r in chosen],
        items=planner.entries,
        totals=_totals(planner.entries),
        unknown_sources=planner.unknown,
        requests=[dict(r) for r in requests],
        storage=planner.storage,
        cancelled=planner.cancelled,
    )
    if persist:
        _store_plan(store, plan, include_requests)
        audit.record(
            store,
            actor,
            "plan.created",
            f"plan:{plan.id}",
            {"rules": plan.rules, "totals": {k: v for k, v in plan.totals.items() if k != "by_rule"}},
        )
        if planner.start_grace:
            _start_grace(config, store, plan, planner, actor, now)
        bus.publish("plan.created", plan_id=plan.id, totals=plan.totals, unknown_sources=plan.unknown_sources)
    return plan


def preview(config: Any, store: Any, rule: Rule, *, registry: FactRegistry | None = None, pm: Any = None) -> Plan:
    """What one (draft) rule would select now; nothing is stored (the assistant's rule previews)."""
    return make_plan(
        config, store, [rule], actor="preview", rule_names=[rule.name], persist=False, registry=registry, pm=pm
    )


def _totals(entries: list[PlanEntry]) -> dict[str, Any]:
    totals: dict[str, Any] = {s: 0 for s in STATUSES}
    totals.update(selected_bytes=0, leaving_soon_bytes=0)
    by_rule: dict[str, dict[str, int]] = {}
    for e in entries:
        totals[e.status] += 1
        slot = by_rule.setdefault(e.rule, {s: 0 for s in STATUSES} | {"bytes": 0})
        slot[e.status] += 1
        if e.status == "selected":
            totals["selected_bytes"] += e.bytes
            slot["bytes"] += e.bytes
        elif e.status == "leaving_soon":
            totals["leaving_soon_bytes"] += e.bytes
    totals["by_rule"] = by_rule
    return totals


def _store_plan(store: Any, plan: Plan, include_requests: bool) -> None:
    with store.transaction():
        cur = store.execute(
            "INSERT INTO plans (created_at, created_by, rules, status, total_items, total_bytes, unknown_sources, "
            "summary) VALUES (?, ?, ?, 'draft', ?, ?, ?, ?)",
            (
                plan.created_at,
                plan.created_by,
                json.dumps(plan.rules),
                plan.totals["selected"],
                plan.totals["selected_bytes"],
                json.dumps(plan.unknown_sources),
                json.dumps(
                    {
                        "totals": plan.totals,
                        "storage": plan.storage,
                        "cancelled_grace": plan.cancelled,
                        "requests_included": include_requests,
                    }
                ),
            ),
        )
        plan.id = int(cur.lastrowid)
        store.conn.executemany(
            "INSERT INTO plan_items (plan_id, item_id, rule, action, status, reasons, skip_reason, bytes, rank) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    plan.id,
                    e.item_id,
                    e.rule,
                    e.action,
                    e.status,
                    json.dumps(e.reasons, default=str),
                    e.skip_reason,
                    e.bytes,
                    e.rank,
                )
                for e in plan.items
            ],
        )
        if include_requests:
            ids = [int(e.rule.split(":", 1)[1]) for e in plan.items if e.rule.startswith("request:")]
            store.execute(
                "UPDATE deletion_requests SET plan_id = ? WHERE id IN (SELECT value FROM json_each(?))",
                (plan.id, json.dumps(ids)),
            )


def _start_grace(config: Any, store: Any, plan: Plan, planner: _Planner, actor: str, now: float) -> None:
    """Write the new leaving-soon rows, mark due ones, and put new items into their Plex collections."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    with store.transaction():
        for entry, rule, item in planner.new_grace:
            collection = rule.action.collection or config.deletion.leaving_soon_collection
            store.execute(
                "INSERT INTO leaving_soon (item_id, rule, collection, plan_id, added_at, due_at, "
                "last_viewed_at_start, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                (entry.item_id, rule.name, collection, plan.id, now, entry.due_at, item["last_viewed_at"], now),
            )
            groups[(item["server"], item["section_id"], collection)].append(item["rating_key"])
        for _entry, row in planner.due_grace:
            store.execute(
                "UPDATE leaving_soon SET status = 'due', plan_id = ?, updated_at = ? WHERE id = ?",
                (plan.id, now, row["id"]),
            )
    errors = {}
    for (server, section_id, collection), keys in groups.items():
        error = _collection_call(config, server, section_id, collection, keys, True)
        if error:
            errors[f"{server}/{section_id}/{collection}"] = error
    if planner.new_grace:
        audit.record(
            store,
            actor,
            "leaving_soon.started",
            f"plan:{plan.id}",
            {"items": [e.item_id for e, _, _ in planner.new_grace], "collection_errors": errors},
        )
        bus.publish("leaving_soon", plan_id=plan.id, items=len(planner.new_grace), collection_errors=errors)


def load_plan(store: Any, plan_id: int) -> Plan | None:
    """A stored plan with its entries (titles from the mirror), or None."""
    row = store.query_one("SELECT * FROM plans WHERE id = ?", (plan_id,))
    if row is None:
        return None
    summary = json.loads(row["summary"] or "{}")
    entries = []
    rows = store.query("SELECT * FROM plan_items WHERE plan_id = ? ORDER BY id", (plan_id,))
    items = _load_items(store, sorted({r["item_id"] for r in rows}))
    for r in rows:
        item = items.get(r["item_id"], {})
        entries.append(
            PlanEntry(
                item_id=r["item_id"],
                title=display_title(item) if item else f"item {r['item_id']}",
                library=item.get("section_title", ""),
                type=item.get("type", ""),
                size=item.get("size_bytes", 0) or 0,
                rule=r["rule"],
                action=r["action"],
                status=r["status"],
                reasons=json.loads(r["reasons"] or "[]"),
                skip_reason=r["skip_reason"],
                bytes=r["bytes"],
                server=item.get("server", ""),
                rating_key=item.get("rating_key", ""),
                rank=r["rank"],
            )
        )
    return Plan(
        id=row["id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        rules=json.loads(row["rules"] or "[]"),
        items=entries,
        totals=summary.get("totals", {}),
        unknown_sources=json.loads(row["unknown_sources"] or "{}"),
        storage=summary.get("storage", {}),
        cancelled=summary.get("cancelled_grace", []),
    )


# --- text output -------------------------------------------------------------------------------------------


def _reason_lines(entry: PlanEntry) -> list[str]:
    """Every line of why: each matched ``when`` condition with the item's value, or why it is held back."""
    lines = []
    if entry.status in ("skipped", "excluded", "limited", "leaving_soon") and entry.skip_reason:
        lines.append(entry.skip_reason)
    if entry.status not in ("skipped", "excluded", "limited"):
        lines += [r["text"] for r in entry.reasons if r.get("in") in ("when", "request") and r.get("matched")]
    return lines


def _render_entries(entries: list[PlanEntry], width: int) -> list[str]:
    """Items grouped by rule, each followed by its reasons in full (one condition per line)."""
    title_w = min(max(len(e.title) for e in entries), max(30, width - 45))
    lib_w = max(len(e.library) for e in entries)
    lines: list[str] = []
    by_rule: dict[str, list[PlanEntry]] = {}
    for entry in entries:
        by_rule.setdefault(entry.rule, []).append(entry)
    for rule, group in by_rule.items():
        if lines:
            lines.append("")
        selected = [e for e in group if e.status == "selected"]
        freed = format_size(sum(e.bytes for e in selected))
        lines.append(f"rule {rule} — {group[0].action}: {len(selected)} selected ({freed}), {len(group)} listed")
        for e in group:
            title = e.title if len(e.title) <= title_w else e.title[: title_w - 1] + "…"
            lines.append(f"  {title:<{title_w}}  {e.library:<{lib_w}}  {format_size(e.size):>9}  {e.status}")
            lines += [f"      because {reason}" for reason in _reason_lines(e)]
    return lines


def render_plan(plan: Plan, *, show_all: bool = False, width: int = 100) -> str:
    """The plan as ``smartplexd plan`` prints it: banner, items with their reasons, totals, how to apply it."""
    lines: list[str] = []
    if plan.unknown_sources:
        lines.append("!" * 78)
        lines.append("! Some facts were UNKNOWN: items that depend on them were skipped, never selected.")
        for source, slot in sorted(plan.unknown_sources.items()):
            lines.append(f"!   {source}: {slot['items']} item(s) skipped: {slot['reason']}")
        lines.append("!" * 78)
        lines.append("")
    for name, state in plan.storage.items():
        disks = ", ".join(
            f"{d['path']} {d['free_percent']:g}% free"
            + (f", {format_size(d['bytes_to_free'])} to free" if d["bytes_to_free"] else "")
            for d in state.get("disks", [])
        )
        mode = "ACTIVE" if state.get("active") else "inactive"
        lines.append(f"storage rule {name}: {mode} ({state.get('reason') or disks})")
    shown = plan.items if show_all else [e for e in plan.items if e.status in ("selected", "leaving_soon")]
    if shown:
        lines.extend(_render_entries(shown, width))
    else:
        lines.append("No item is selected by the rules right now.")
    t = plan.totals
    lines.append("")
    lines.append(
        f"selected {t.get('selected', 0)} ({format_size(t.get('selected_bytes', 0))} to free), "
        f"leaving soon {t.get('leaving_soon', 0)}, skipped {t.get('skipped', 0)} (unknown facts), "
        f"excluded {t.get('excluded', 0)}, limited {t.get('limited', 0)}"
    )
    hidden = sum(t.get(s, 0) for s in ("skipped", "excluded", "limited"))
    if hidden and not show_all:
        lines.append("(`smartplexd plan --all` lists the skipped, excluded and limited items)")
    if plan.cancelled:
        lines.append(f"{len(plan.cancelled)} grace period(s) ended: " + ", ".join(
            f"item {c['item_id']} ({c['reason']})" for c in plan.cancelled[:5]))  # fmt: skip
    open_requests = [r for r in plan.requests if not any(e.rule == f"request:{r['id']}" for e in plan.items)]
    if open_requests:
        lines.append(f"{len(open_requests)} open deletion request(s) not included (add them with --include-requests):")
        for r in open_requests[:10]:
            lines.append(
                f"  #{r['id']} {r.get('title') or r.get('rating_key')} by {r['requested_by']}: {r.get('reason') or ''}"
            )
    lines.append("")
    lines.append("This was a dry run: nothing was deleted.")
    if plan.id is not None:
        lines.append(f"Plan {plan.id} stored. To act on it: smartplexd apply {plan.id}")
    return "\n".join(lines)
