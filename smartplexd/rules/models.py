"""The rule language (ARCHITECTURE §4): pydantic models, loading rule files, and errors with file:line.

A rule file holds one rule (a mapping) or a list of rules. Everything is checked at load time against the
fact registry, so a typo or a type mismatch is an error that points at its line, not a surprise at 3 am::

    rules/movies.yaml:7:9: when.all[1].fact: unknown fact 'plex.last_viewd_at'; did you mean plex.last_viewed_at?
    rules/movies.yaml:9:9: when.all[2]: `contains` needs a list or text fact; plex.size is a size

Conditions are data: ``{fact, op, value}`` leaves (or the shorthand ``{fact: plex.labels, contains: keep}``)
combined with ``all`` / ``any`` / ``not``. Values are parsed once here: sizes (``10GB``) and durations
(``90d``) become numbers, ISO dates become epoch seconds, regular expressions are compiled. Text
comparisons (``=``, ``in``, ``contains``) ignore case; ``matches`` is a Python regular expression used as
written (add ``(?i)`` to ignore case).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from smartplexd import yamlsource
from smartplexd.config import Cron, Duration, Name, Percent, Size
from smartplexd.model import FactDef
from smartplexd.rules.facts import FactRegistry
from smartplexd.units import parse_duration, parse_size
from smartplexd.yamlsource import Marks, SourceError, SourceErrors

MEDIA_TYPES = ("movie", "show", "season", "episode")
DEFAULT_MEDIA_TYPES = ["movie", "show"]
"""Without ``media_types`` a rule looks at movies and whole shows; seasons and episodes are opt-in so a TV
library rule never selects a show *and* its 200 episodes."""

COMPARISONS = ("=", "!=", ">", ">=", "<", "<=")
OPERATORS = (
    *COMPARISONS,
    "in",
    "not_in",
    "contains",
    "not_contains",
    "exists",
    "missing",
    "older_than",
    "newer_than",
    "matches",
)
SHORTHAND_OPS = ("in", "not_in", "contains", "not_contains", "exists", "missing", "older_than", "newer_than", "matches")
"""Operators that may also be written as a key: ``{fact: plex.labels, contains: keep}``."""

_NUMERIC = ("int", "float", "size", "duration", "datetime")
_TYPE_WORDS = {
    "int": "a number",
    "float": "a number",
    "size": "a size",
    "duration": "a duration",
    "datetime": "a date",
    "str": "text",
    "bool": "true/false",
    "list": "a list",
}


def _registry(info: ValidationInfo) -> FactRegistry:
    reg = (info.context or {}).get("registry")
    if reg is None:
        from smartplexd.rules.facts import registry

        reg = registry()
    return reg


def _to_epoch(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a date is epoch seconds or an ISO date like 2024-01-31")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"not a date: {value!r} (use an ISO date like 2024-01-31, or epoch seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _scalar(fact: FactDef, value: Any) -> Any:
    """Parse one comparison value for ``fact``'s type (raises ValueError saying what was expected)."""
    t = fact.type
    if value is None:
        raise ValueError(f"{fact.name} needs a value to compare with (use `missing` to test for no value)")
    if t in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{fact.name} is {_TYPE_WORDS[t]}; {value!r} is not")
        return value
    if t == "size":
        return parse_size(value)
    if t == "duration":
        return parse_duration(value)
    if t == "datetime":
        return _to_epoch(value)
    if t == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{fact.name} is true/false; {value!r} is not (write true or false)")
        return value
    if t == "str":
        if isinstance(value, list | dict | bool):
            raise ValueError(f"{fact.name} is text; {value!r} is not")
        return str(value)
    if t == "list":
        if isinstance(value, list | dict):
            raise ValueError(f"{fact.name} is a list; compare one element with `contains`")
        return str(value)
    raise ValueError(f"{fact.name} has an unsupported type {t}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FactCondition(_Strict):
    """One test of one fact: ``{fact: plex.view_count, op: ">=", value: 1}``."""

    fact: str
    op: str = "="
    value: Any = None

    _param: Any = pydantic.PrivateAttr(default=None)
    _def: FactDef | None = pydantic.PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        used = [k for k in SHORTHAND_OPS if k in data]
        if not used:
            return data
        if len(used) > 1 or "op" in data or "value" in data:
            raise ValueError(f"write one operator per condition: either op/value or one of {', '.join(used)} as a key")
        data = dict(data)
        key = used[0]
        value = data.pop(key)
        if key in ("exists", "missing"):
            if value is False:
                key = "missing" if key == "exists" else "exists"
            elif value not in (True, None):
                raise ValueError(f"`{key}` takes true (or false), got {value!r}")
            value = None
        data["op"], data["value"] = key, value
        return data

    @field_validator("fact")
    @classmethod
    def _known_fact(cls, v: str, info: ValidationInfo) -> str:
        reg = _registry(info)
        if reg.get(v) is None:
            close = reg.closest(v)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `smartplexd facts` lists every fact"
            raise ValueError(f"unknown fact {v!r}{hint}")
        return v

    @field_validator("op")
    @classmethod
    def _known_op(cls, v: str) -> str:
        v = {"==": "=", "<>": "!="}.get(str(v).strip(), str(v).strip())
        if v not in OPERATORS:
            raise ValueError(f"unknown operator {v!r}; use one of: {' '.join(OPERATORS)}")
        return v

    @model_validator(mode="after")
    def _typed(self, info: ValidationInfo) -> FactCondition:
        fact = _registry(info).get(self.fact)
        assert fact is not None  # _known_fact ran first
        self._def = fact
        self._param = _parse_param(fact, self.op, self.value)
        return self

    @property
    def fact_def(self) -> FactDef:
        assert self._def is not None
        return self._def

    @property
    def param(self) -> Any:
        """The parsed value: bytes, seconds, epoch seconds, a compiled regex, a list, or None."""
        return self._param

    def leaves(self) -> list[FactCondition]:
        return [self]


def _parse_param(fact: FactDef, op: str, value: Any) -> Any:
    t, name, word = fact.type, fact.name, _TYPE_WORDS[fact.type]
    if op in ("exists", "missing"):
        if value not in (None, True):
            raise ValueError(f"`{op}` takes no value")
        return None
    if op in ("older_than", "newer_than"):
        if t != "datetime":
            raise ValueError(f"`{op}` needs a date fact; {name} is {word}")
        return parse_duration(value)
    if op in ("contains", "not_contains"):
        if t not in ("list", "str"):
            raise ValueError(f"`{op}` needs a list or text fact; {name} is {word}")
        if value is None or isinstance(value, list | dict | bool):
            raise ValueError(f"`{op}` takes one text value, e.g. contains: keep")
        return str(value)
    if op == "matches":
        if t not in ("list", "str"):
            raise ValueError(f"`matches` needs a list or text fact; {name} is {word}")
        try:
            return re.compile(str(value))
        except re.error as exc:
            raise ValueError(f"not a valid regular expression {value!r}: {exc}") from None
    if op in ("in", "not_in"):
        if t in ("list", "datetime"):
            hint = "use contains/not_contains" if t == "list" else "use older_than/newer_than or < >"
            raise ValueError(f"`{op}` compares one value with a list; {name} is {word} ({hint})")
        if not isinstance(value, list) or not value:
            raise ValueError(f"`{op}` takes a non-empty list, e.g. value: [pending, declined]")
        return [_scalar(fact, v) for v in value]
    # = != > >= < <=
    if t == "list":
        raise ValueError(f"`{op}` cannot compare a list; {name} is a list (use contains/not_contains)")
    if op not in ("=", "!=") and t not in _NUMERIC:
        raise ValueError(f"`{op}` needs a number, size, duration or date; {name} is {word}")
    return _scalar(fact, value)


def _condition_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        for key in ("fact", "all", "any", "not"):
            if key in v:
                return f"[{key}]"
        return None
    return {FactCondition: "[fact]", AllOf: "[all]", AnyOf: "[any]", NotOf: "[not]"}.get(type(v))


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)

    def leaves(self) -> list[FactCondition]:
        return [leaf for c in self.all for leaf in c.leaves()]


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)

    def leaves(self) -> list[FactCondition]:
        return [leaf for c in self.any for leaf in c.leaves()]


class NotOf(_Strict):
    not_: Condition = Field(alias="not")

    def leaves(self) -> list[FactCondition]:
        return self.not_.leaves()


# Tags are written "[fact]" so yamlsource drops them from error locations (they are not keys in the file).
Condition = Annotated[
    Annotated[FactCondition, Tag("[fact]")]
    | Annotated[AllOf, Tag("[all]")]
    | Annotated[AnyOf, Tag("[any]")]
    | Annotated[NotOf, Tag("[not]")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is {fact: ..., op: ..., value: ...} or all: [...], any: [...], not: {...}",
    ),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class Action(_Strict):
    """What happens to a selected item. ``grace_period`` first shows it in a Plex collection."""

    type: Literal["delete", "unmonitor", "notify"] = "delete"
    grace_period: Duration | None = Field(None, description="Show items in a collection this long first (7d).")
    collection: str | None = Field(None, description="Collection name; default deletion.leaving_soon_collection.")

    @model_validator(mode="after")
    def _collection_needs_grace(self) -> Action:
        if self.collection is not None and not self.grace_period:
            raise ValueError("`collection` only applies with a grace_period (e.g. grace_period: 7d)")
        return self


class Limits(_Strict):
    max_items: int | None = Field(None, ge=0)
    max_bytes: Size | None = None


class Storage(_Strict):
    """Disk-pressure mode: act only while free space is below ``when_free_below``, and select items (in
    ``order_by`` order) only until the projected free space reaches ``until_free_above``."""

    when_free_below: Percent
    until_free_above: Percent
    path: str | None = Field(None, description="Disk to watch (as Sonarr/Radarr report it); default: the items'.")

    @model_validator(mode="after")
    def _order(self) -> Storage:
        if self.until_free_above < self.when_free_below:
            raise ValueError("until_free_above must be at least when_free_below")
        return self


class Rule(_Strict):
    """One rule file entry (ARCHITECTURE §4)."""

    name: Name
    description: str = ""
    enabled: bool = True
    servers: list[str] = Field(default_factory=list, description="Plex server names; empty = all.")
    libraries: list[str] = Field(default_factory=list, description="Library titles; empty = all.")
    media_types: list[Literal["movie", "show", "season", "episode"]] = Field(
        default_factory=lambda: list(DEFAULT_MEDIA_TYPES)
    )
    schedule: Cron | None = Field(None, description="When the daemon evaluates the rule (cron, config timezone).")
    when: Condition
    unless: Condition | None = None
    action: Action = Field(default_factory=Action)
    limits: Limits = Field(default_factory=Limits)
    order_by: list[str] = Field(default_factory=list, description="Facts; '-' in front sorts descending.")
    storage: Storage | None = None

    _source: str = pydantic.PrivateAttr(default="<draft>")
    _line: int = pydantic.PrivateAttr(default=1)
    _root: tuple[int, ...] = pydantic.PrivateAttr(default=())

    @field_validator("media_types")
    @classmethod
    def _some_types(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("media_types must name at least one of movie, show, season, episode")
        return list(dict.fromkeys(v))

    @field_validator("order_by")
    @classmethod
    def _order_facts(cls, v: list[str], info: ValidationInfo) -> list[str]:
        reg = _registry(info)
        for key in v:
            name = key[1:] if key.startswith(("-", "+")) else key
            fact = reg.get(name)
            if fact is None:
                close = reg.closest(name)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"unknown fact {name!r} in order_by{hint}")
            if fact.type == "list":
                raise ValueError(f"cannot order by {name}: it is a list")
        return v

    @property
    def source(self) -> str:
        """``file:line`` the rule was loaded from."""
        return f"{self._source}:{self._line}"

    def leaves(self) -> list[FactCondition]:
        out = self.when.leaves()
        if self.unless is not None:
            out += self.unless.leaves()
        return out

    def facts(self) -> list[str]:
        """Every fact the rule reads (conditions and order_by), in first-use order."""
        names = [leaf.fact for leaf in self.leaves()]
        names += [k.lstrip("-+") for k in self.order_by]
        return list(dict.fromkeys(names))

    def sources(self) -> list[str]:
        """Services the rule depends on (``radarr``, ``tautulli``...), ``plex`` excluded."""
        return sorted({name.split(".", 1)[0] for name in self.facts()} - {"plex"})


# --- loading -----------------------------------------------------------------------------------------


def _validate(data: Any, registry: FactRegistry, marks: Marks, root: yamlsource.Loc) -> Rule | list[SourceError]:
    if not isinstance(data, dict):
        line, col = marks.find(root)
        return [SourceError(marks.file, line, col, yamlsource.format_loc(root), "a rule is a mapping (name, when ...)")]
    try:
        rule = Rule.model_validate(data, context={"registry": registry})
    except pydantic.ValidationError as exc:
        return yamlsource.validation_errors(exc, marks, Rule, root=root).errors
    rule._source = marks.file
    rule._line = marks.find(root)[0]
    rule._root = tuple(int(p) for p in root)
    return rule


def parse_rule(data: dict[str, Any], registry: FactRegistry, source: str = "<draft>") -> Rule:
    """Validate one rule given as data (the assistant's drafts); raise SourceErrors listing every problem."""
    result = _validate(data, registry, Marks(source, {}, {}), ())
    if isinstance(result, list):
        raise SourceErrors(result)
    return result


def parse_rule_text(text: str, registry: FactRegistry, source: str = "<draft>") -> list[Rule]:
    """Validate YAML text holding one rule or a list of rules, with line numbers in the errors."""
    data, marks = yamlsource.load(source, text)
    rules, errors = _rules_from(data, marks, registry)
    if errors:
        raise SourceErrors(errors)
    return rules


def _rules_from(data: Any, marks: Marks, registry: FactRegistry) -> tuple[list[Rule], list[SourceError]]:
    if data is None:
        return [], []
    entries = [(data, ())] if isinstance(data, dict) else None
    if isinstance(data, list):
        entries = [(d, (i,)) for i, d in enumerate(data)]
    if entries is None:
        return [], [SourceError(marks.file, 1, 1, "", "a rule file holds one rule (a mapping) or a list of rules")]
    rules: list[Rule] = []
    errors: list[SourceError] = []
    for entry, root in entries:
        result = _validate(entry, registry, marks, root)
        if isinstance(result, list):
            errors.extend(result)
        else:
            rules.append(result)
    return rules, errors


def rule_files(paths: list[Path]) -> tuple[list[Path], list[SourceError]]:
    """The ``*.yaml``/``*.yml`` files under ``paths`` (folders searched recursively, sorted)."""
    files: list[Path] = []
    errors: list[SourceError] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = [
                p
                for p in sorted(path.rglob("*"))
                if p.suffix in (".yaml", ".yml") and p.is_file() and not any(part.startswith(".") for part in p.parts)
            ]
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(SourceError(str(path), 1, 1, "", "rules path not found (check `rules:` in config.yaml)"))
    return list(dict.fromkeys(files)), errors


def load_rules(paths: list[Path], registry: FactRegistry) -> list[Rule]:
    """Load every rule under ``paths``; raise SourceErrors with file:line for every problem in every file.

    Rule names must be unique across all files (a plan entry and the audit log name the rule).
    """
    files, errors = rule_files(paths)
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for file in files:
        try:
            data, marks = yamlsource.load(file)
        except SourceErrors as exc:
            errors.extend(exc.errors)
            continue
        found, problems = _rules_from(data, marks, registry)
        errors.extend(problems)
        for rule in found:
            if rule.name in seen:
                first = seen[rule.name]
                line, col = marks.find((*rule._root, "name"))
                where = yamlsource.format_loc((*rule._root, "name"))
                message = f"duplicate rule name {rule.name!r} (first defined at {first.source})"
                errors.append(SourceError(str(file), line, col, where, message))
                continue
            seen[rule.name] = rule
            rules.append(rule)
    if errors:
        raise SourceErrors(errors)
    return rules
