"""Evaluate rules over the whole library at once, in SQLite, with three-valued logic.

Every fact of every item is *known* (a value), *absent* (the service answered and does not hold the item)
or *unknown* (the service failed, was never asked, is not configured, or its data is older than its
``freshness``). SQLite's NULL already behaves like Kleene's *unknown* in ``AND``/``OR``/``NOT``, so each
rule is compiled once into one SQL expression that yields 1 (true), 0 (false) or NULL (unknown):

* each fact referenced by the rules becomes two columns of a temporary table built once per evaluation
  (its value ``v`` and its state ``s``: 1 known, 0 absent, NULL unknown), so JSON is decoded once per item
  and fact, not once per rule;
* a comparison on a known fact is the SQL comparison, on an absent fact 0, on an unknown fact NULL;
  ``exists`` is ``s`` itself and ``missing`` is ``1 - s``;
* a rule is ``scope AND (when) AND NOT (unless)``: an item is selected when that is 1 and skipped (never
  selected) when it is NULL, with the services that were unknown named.

For the rows that are 1 or NULL the same query returns every leaf condition's own result and the fact's
actual value, so a plan explains itself without evaluating anything twice (and without a second,
possibly different, implementation of the semantics in Python).

A plugin that stores no row for a season or episode lends it its show's row (Sonarr knows series, not
episodes); a row of the item's own always wins.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from smartplexd.rules.facts import NEVER_ABSENT, PLEX_SQL, FactRegistry
from smartplexd.rules.models import AllOf, AnyOf, FactCondition, NotOf, Rule

DEFAULT_FRESHNESS = 86_400.0
_counter = itertools.count(1)

NARROW_COLUMNS = ("id", "server", "type", "section_title", "size")
ITEM_COLUMNS = (
    "id",
    "server",
    "section_id",
    "section_title",
    "rating_key",
    "type",
    "title",
    "year",
    "parent_rating_key",
    "grandparent_rating_key",
    "last_viewed_at",
    "view_count",
    "labels",
    "collections",
    "files",
)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """How a plugin's facts are read: ``configured`` false makes all of them unknown."""

    name: str
    configured: bool
    freshness: float


def source_infos(config: Any, registry: FactRegistry, pm: Any = None) -> dict[str, SourceInfo]:
    """Per fact source: is it configured, and how old may its data be before it is unknown."""
    from smartplexd.config import integration_models

    with_config = set(integration_models(pm))
    out: dict[str, SourceInfo] = {}
    for source in registry.sources():
        if source == "plex":
            continue
        section = config.integrations.get(source) if config is not None else None
        instances = section if isinstance(section, list) else ([section] if section is not None else [])
        freshness = min(
            (float(getattr(i, "freshness", DEFAULT_FRESHNESS)) for i in instances), default=DEFAULT_FRESHNESS
        )
        # A third-party plugin without a config section cannot be "not configured": its rows decide.
        configured = bool(instances) or source not in with_config
        out[source] = SourceInfo(source, configured, freshness)
    return out


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str | None, value: Any) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if _compiled(pattern).search(str(value)) else 0


def install_functions(conn: Any) -> None:
    """Register the SQL functions the compiled rules use (``smartplexd_regexp``) on ``conn``."""
    conn.create_function("smartplexd_regexp", 2, _regexp, deterministic=True)


class _Params:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        key = f"p{len(self.values)}"
        self.values[key] = value
        return f":{key}"


@dataclass
class Compiled:
    """A rule as SQL: ``scope`` (library/type/server), ``true`` (selected), ``false`` (certainly not)."""

    rule: Rule
    scope: str
    true: str
    false: str
    params: dict[str, Any]
    leaves: list[tuple[str, FactCondition, str]] = field(default_factory=list)


_STATES = {1: "known", 0: "absent", None: "unknown"}


@dataclass(slots=True)
class Candidate:
    """An item a rule selects (``result`` True) or could not decide (``result`` None, ``unknown`` says why:
    ``{"radarr": "radarr failed: connection refused"}``)."""

    id: int
    result: bool | None
    order: list[Any]
    bytes: int
    unknown: dict[str, str]


class Evaluation:
    """One evaluation pass: a temporary fact table on ``store``'s connection, dropped on close.

    Use as a context manager. ``decide(rule)`` returns the items the rule selects or cannot decide,
    ``explain(rule, ids)`` the reasons for some of them, ``count(rule)`` only counts.
    """

    def __init__(
        self,
        config: Any,
        store: Any,
        rules: list[Rule],
        registry: FactRegistry,
        *,
        now: float | None = None,
        pm: Any = None,
    ) -> None:
        self.config = config
        self.store = store
        self.rules = rules
        self.registry = registry
        self.now = time.time() if now is None else now
        self.sources = source_infos(config, registry, pm)
        names: list[str] = []
        for rule in rules:
            names += rule.facts()
        self.facts = list(dict.fromkeys(names))
        self.column = {name: i for i, name in enumerate(self.facts)}
        used = {n.split(".", 1)[0] for n in self.facts} - {"plex"}
        self.used_sources = sorted(used)
        n = next(_counter)
        self.table = f"temp.smartplexd_facts_{n}"
        self.sizes = f"temp.smartplexd_sizes_{n}"
        self._built = False

    # --- building the fact table --------------------------------------------------------------------

    def __enter__(self) -> Evaluation:
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        install_functions(self.store.conn)
        self.store.execute(
            f"CREATE TABLE {self.sizes} AS "
            "SELECT server, grandparent_rating_key AS key, SUM(size_bytes) AS bytes FROM media_items "
            "WHERE type = 'episode' AND deleted_at IS NULL AND removed_at IS NULL "
            "AND grandparent_rating_key IS NOT NULL GROUP BY 1, 2 "
            "UNION ALL SELECT server, parent_rating_key, SUM(size_bytes) FROM media_items "
            "WHERE type = 'episode' AND deleted_at IS NULL AND removed_at IS NULL "
            "AND parent_rating_key IS NOT NULL GROUP BY 1, 2"
        )
        self.store.execute(f"CREATE INDEX {self.sizes}_key ON {self.sizes.split('.', 1)[1]} (server, key)")
        params = _Params()
        cols = ["m.id", "m.server", "m.type", "m.section_title"]
        cols += sorted({PLEX_SQL[n].removeprefix("m.") for n in self.facts if n in PLEX_SQL and n != "plex.size"})
        cols = list(dict.fromkeys(c if c.startswith("m.") else f"m.{c}" for c in cols))
        cols.append(f"{PLEX_SQL['plex.size']} AS size")
        joins = [f"LEFT JOIN {self.sizes} sz ON sz.server = m.server AND sz.key = m.rating_key"]
        if self.used_sources:
            joins.append(
                "LEFT JOIN media_items up ON up.server = m.server AND up.rating_key = CASE m.type "
                "WHEN 'episode' THEN m.grandparent_rating_key WHEN 'season' THEN m.parent_rating_key END"
            )
        for i, source in enumerate(self.used_sources):
            info = self.sources.get(source) or SourceInfo(source, True, DEFAULT_FRESHNESS)
            if not info.configured:
                cols.append(f"'{source} is not configured' AS u_{i}")
                continue
            p = params.add(source)
            joins.append(f"LEFT JOIN item_facts fo{i} ON fo{i}.item_id = m.id AND fo{i}.plugin = {p}")
            joins.append(f"LEFT JOIN item_facts fu{i} ON fu{i}.item_id = up.id AND fu{i}.plugin = {p}")
            stale = params.add(self.now - info.freshness)
            # The item's own row wins; a season/episode without one reads its show's row.
            own = f"fo{i}.item_id IS NOT NULL"
            for part in ("status", "facts", "fetched_at", "error"):
                cols.append(f"CASE WHEN {own} THEN fo{i}.{part} ELSE fu{i}.{part} END AS f{i}_{part}")
            cols.append(
                f"CASE WHEN COALESCE(fo{i}.item_id, fu{i}.item_id) IS NULL THEN 'no {source} data for this item yet' "
                f"WHEN (CASE WHEN {own} THEN fo{i}.status ELSE fu{i}.status END) = 'unknown' "
                f"THEN COALESCE(CASE WHEN {own} THEN fo{i}.error ELSE fu{i}.error END, '{source} failed') "
                f"WHEN (CASE WHEN {own} THEN fo{i}.fetched_at ELSE fu{i}.fetched_at END) < {stale} "
                f"THEN '{source} data is older than its freshness' END AS u_{i}"
            )
        # Second layer, kept narrow (rows are scanned once per rule): the item's scope columns, why each
        # source is unknown, and one value and one state column per fact.
        units = [f"u_{i}" for i in range(len(self.used_sources))]
        src_index = {s: i for i, s in enumerate(self.used_sources)}
        facts = []
        for name, j in self.column.items():
            value, state = self._fact_sql(name, src_index)
            facts.append(f"{value} AS v{j}, {state} AS s{j}")
        self.store.execute(
            f"CREATE TABLE {self.table} AS WITH base AS MATERIALIZED (SELECT {', '.join(cols)} FROM media_items m "
            f"{' '.join(joins)} WHERE m.deleted_at IS NULL AND m.removed_at IS NULL) "
            f"SELECT {', '.join([*NARROW_COLUMNS, *units, *facts])} FROM base",
            params.values,
        )
        self.store.execute(f"CREATE INDEX {self.table}_id ON {self.table.split('.', 1)[1]} (id)")
        self._built = True

    def _fact_sql(self, name: str, src_index: dict[str, int]) -> tuple[str, str]:
        source = name.split(".", 1)[0]
        if source == "plex":
            expr = PLEX_SQL[name]
            # The fact table already holds the item columns (and the aggregated size) under plain names.
            col = "size" if name == "plex.size" else expr.removeprefix("m.")
            if name in NEVER_ABSENT or name == "plex.size":
                return col, "1"
            return col, f"CASE WHEN {col} IS NULL THEN 0 ELSE 1 END"
        i = src_index[source]
        info = self.sources.get(source)
        if info is not None and not info.configured:
            return "NULL", "NULL"
        path = "'$.\"" + name.replace('"', "") + "\"'"
        short = "'$.\"" + name.split(".", 1)[1].replace('"', "") + "\"'"
        # Plugins store facts by full name; a short name ("monitored") is accepted too.
        value = f"COALESCE(json_extract(f{i}_facts, {path}), json_extract(f{i}_facts, {short}))"
        state = (
            f"CASE WHEN u_{i} IS NOT NULL THEN NULL WHEN f{i}_status = 'absent' THEN 0 "
            f"WHEN f{i}_status = 'known' THEN CASE WHEN {value} IS NULL THEN 0 ELSE 1 END END"
        )
        return value, state

    def close(self) -> None:
        for table in (self.table, self.sizes):
            self.store.execute(f"DROP TABLE IF EXISTS {table}")

    # --- compiling ---------------------------------------------------------------------------------------

    def _compare_sql(self, leaf: FactCondition, params: _Params) -> str:
        """The comparison on a *known* value (a known value is never NULL, so this is never NULL)."""
        v = f"v{self.column[leaf.fact]}"
        op, p, t = leaf.op, leaf.param, leaf.fact_def.type
        nocase = " COLLATE NOCASE" if t == "str" else ""
        if op in ("=", "!=", ">", ">=", "<", "<="):
            sql_op = "<>" if op == "!=" else op
            value = int(p) if isinstance(p, bool) else p
            return f"{v} {sql_op} {params.add(value)}{nocase}"
        if op in ("in", "not_in"):
            items = ", ".join(params.add(int(x) if isinstance(x, bool) else x) for x in p)
            return f"{v}{nocase} {'NOT IN' if op == 'not_in' else 'IN'} ({items})"
        if op in ("contains", "not_contains"):
            if t == "list":
                needle = json.dumps(p).lower()
                exact = f"EXISTS (SELECT 1 FROM json_each({v}) WHERE value = {params.add(p)} COLLATE NOCASE)"
                # instr() on the JSON text is a cheap pre-check; json_each decides (ASCII needles only).
                cmp = f"(instr(lower({v}), {params.add(needle)}) > 0 AND {exact})" if needle.isascii() else exact
            else:
                cmp = f"instr(lower({v}), {params.add(p.lower())}) > 0"
            return f"NOT {cmp}" if op == "not_contains" else cmp
        if op == "matches":
            pat = params.add(p.pattern)
            if t == "list":
                return f"EXISTS (SELECT 1 FROM json_each({v}) WHERE smartplexd_regexp({pat}, value))"
            return f"smartplexd_regexp({pat}, {v})"
        if op == "older_than":
            return f"{v} < {params.add(self.now - p)}"
        if op == "newer_than":
            return f"{v} >= {params.add(self.now - p)}"
        raise ValueError(f"operator {op} has no SQL form")  # models.OPERATORS is closed

    def _leaf_tf(self, leaf: FactCondition, params: _Params) -> tuple[str, str]:
        """(is true, is false) of one condition as two-valued SQL; neither means unknown."""
        s = f"s{self.column[leaf.fact]}"
        if leaf.op == "exists":
            return f"{s} IS 1", f"{s} IS 0"
        if leaf.op == "missing":
            return f"{s} IS 0", f"{s} IS 1"
        cmp = self._compare_sql(leaf, params)
        # A comparison on an absent fact is false; on an unknown fact it is neither true nor false.
        return f"({s} IS 1 AND ({cmp}))", f"({s} IS 0 OR ({s} IS 1 AND NOT ({cmp})))"

    def _cond_tf(
        self, cond: Any, params: _Params, leaves: list[tuple[str, FactCondition, str]], part: str
    ) -> tuple[str, str]:
        """Kleene logic as two two-valued expressions: T(all) = AND of T, F(all) = OR of F, and so on.

        Two-valued expressions let SQLite stop at the first decisive condition (WHERE clauses
        short-circuit), which one three-valued expression would not: about three times faster.
        """
        if isinstance(cond, FactCondition):
            t, f = self._leaf_tf(cond, params)
            leaves.append((part, cond, f"CASE WHEN {t} THEN 1 WHEN {f} THEN 0 END"))
            return t, f
        if isinstance(cond, NotOf):
            t, f = self._cond_tf(cond.not_, params, leaves, part)
            return f, t
        children = cond.all if isinstance(cond, AllOf) else cond.any
        parts = [self._cond_tf(c, params, leaves, part) for c in children]
        ands = "(" + " AND ".join(t for t, _ in parts) + ")", "(" + " OR ".join(f for _, f in parts) + ")"
        ors = "(" + " OR ".join(t for t, _ in parts) + ")", "(" + " AND ".join(f for _, f in parts) + ")"
        return ors if isinstance(cond, AnyOf) else ands

    def compile(self, rule: Rule) -> Compiled:
        """The rule as SQL over the fact table: ``true`` (selected) and ``false`` (certainly not)."""
        params = _Params()
        scope = [f"type IN ({', '.join(params.add(t) for t in rule.media_types)})"]
        if rule.libraries:
            scope.append(f"section_title COLLATE NOCASE IN ({', '.join(params.add(x) for x in rule.libraries)})")
        if rule.servers:
            scope.append(f"server IN ({', '.join(params.add(x) for x in rule.servers)})")
        leaves: list[tuple[str, FactCondition, str]] = []
        true, false = self._cond_tf(rule.when, params, leaves, "when")
        if rule.unless is not None:
            unless_t, unless_f = self._cond_tf(rule.unless, params, leaves, "unless")
            # selected = when AND NOT unless; certainly not = NOT when OR unless.
            true, false = f"{true} AND {unless_f}", f"{false} OR {unless_t}"
        return Compiled(rule, " AND ".join(scope), true, false, params.values, leaves)

    # --- running ---------------------------------------------------------------------------------------

    def count(self, rule: Rule) -> tuple[int, int]:
        """(items selected, items undecided because a fact was unknown)."""
        c = self.compile(rule)
        row = self.store.query_one(
            f"SELECT COUNT(*) AS n, TOTAL({c.true}) AS yes FROM {self.table} WHERE {c.scope} AND NOT ({c.false})",
            c.params,
        )
        assert row is not None
        return int(row["yes"]), int(row["n"] - row["yes"])

    def decide(self, rule: Rule) -> list[Candidate]:
        """Items the rule selects (``result`` True) or cannot decide (None), with order values and bytes.

        Cheap: conditions are not explained here; call :meth:`explain` for the items that need reasons.
        """
        c = self.compile(rule)
        order_cols = [self.column[key.lstrip("-+")] for key in rule.order_by]
        sources = [(s, i) for i, s in enumerate(self.used_sources) if s in rule.sources()]
        cols = ["id", "size", f"({c.true}) AS yes"]
        cols += [f"v{j}" for j in order_cols] + [f"u_{i}" for _, i in sources]
        cursor = self.store.execute(
            f"SELECT {', '.join(cols)} FROM {self.table} WHERE {c.scope} AND NOT ({c.false})", c.params
        )
        n_order = len(order_cols)
        out = []
        for values in cursor:
            unknown: dict[str, str] = {}
            if not values[2]:
                for k, (source, _) in enumerate(sources):
                    why = values[3 + n_order + k]
                    if why is not None:
                        unknown[source] = why
            out.append(
                Candidate(
                    values[0], True if values[2] else None, list(values[3 : 3 + n_order]), values[1] or 0, unknown
                )
            )
        return out

    def explain(self, rule: Rule, item_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Every condition of ``rule`` for each of ``item_ids``: result, state, actual value, text."""
        if not item_ids:
            return {}
        c = self.compile(rule)
        fact_cols = sorted({self.column[leaf.fact] for _, leaf, _ in c.leaves})
        cols = ["id"] + [f"{sql} AS c{k}" for k, (_, _, sql) in enumerate(c.leaves)]
        cols += [f"v{j}, s{j}" for j in fact_cols]
        params = dict(c.params, ids=json.dumps(item_ids))
        rows = self.store.query(
            f"SELECT {', '.join(cols)} FROM {self.table} WHERE id IN (SELECT value FROM json_each(:ids))", params
        )
        out: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            reasons = []
            for k, (part, leaf, _) in enumerate(c.leaves):
                j = self.column[leaf.fact]
                state = _STATES[row[f"s{j}"]]
                actual = _decode(leaf.fact_def.type, row[f"v{j}"]) if state == "known" else None
                reasons.append(_reason(part, leaf, row[f"c{k}"], state, actual, self.now))
            out[row["id"]] = reasons
        return out


def _decode(fact_type: str, value: Any) -> Any:
    if fact_type == "list" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if fact_type == "bool" and value is not None:
        return bool(value)
    return value


def _fmt_date(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError, OSError):
        return str(epoch)


def describe_value(fact_type: str, value: Any, now: float) -> str:
    """A value as a person reads it: ``42.0 GB``, ``2024-01-02 (143d ago)``, ``[keep, 4k]``."""
    from smartplexd.units import format_duration, format_size

    if value is None:
        return "(none)"
    if fact_type == "size":
        return format_size(value)
    if fact_type == "duration":
        return format_duration(value)
    if fact_type == "datetime":
        age = now - float(value)
        ago = f"{format_duration(age).split(' ')[0]} ago" if age >= 0 else "in the future"
        return f"{_fmt_date(value)} ({ago})"
    if fact_type == "list" and isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if fact_type == "bool":
        return "true" if value else "false"
    return str(value)


def _render_expected(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " [" + ", ".join(map(str, value)) + "]"
    return f" {value}"


def _reason(part: str, leaf: FactCondition, matched: int | None, state: str, actual: Any, now: float) -> dict[str, Any]:
    shown = describe_value(leaf.fact_def.type, actual, now) if state == "known" else f"({state})"
    return {
        "in": part,
        "fact": leaf.fact,
        "op": leaf.op,
        "expected": leaf.value,
        "actual": actual,
        "state": state,
        "matched": None if matched is None else bool(matched),
        "text": f"{leaf.fact} {shown} {leaf.op}{_render_expected(leaf.value)}",
    }
