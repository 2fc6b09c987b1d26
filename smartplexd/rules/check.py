"""What ``smartplexd check`` says about rules: every file validated, warnings, and what each rule selects now."""

from __future__ import annotations

from typing import Any

from smartplexd.config import ConfigError
from smartplexd.rules.evaluator import source_infos
from smartplexd.rules.facts import FactRegistry, registry
from smartplexd.rules.models import Rule, load_rules
from smartplexd.units import format_size
from smartplexd.yamlsource import SourceErrors


def warnings_for(rule: Rule, config: Any, reg: FactRegistry, pm: Any = None) -> list[str]:
    """Things that are valid but will not do what the author probably wants."""
    out = []
    infos = source_infos(config, reg, pm)
    for source in rule.sources():
        info = infos.get(source)
        if info is not None and not info.configured:
            out.append(f"uses {source}.* facts but {source} is not configured: those facts are unknown, so the rule "
                       "selects nothing (configure integrations." + source + " or remove the conditions)")  # fmt: skip
    servers = {s.name for s in config.plex.servers}
    for name in rule.servers:
        if servers and name not in servers:
            out.append(f"server {name!r} is not in plex.servers ({', '.join(sorted(servers))})")
    mirrored = {lib for s in config.plex.servers for lib in s.libraries}
    for lib in rule.libraries:
        if mirrored and lib.lower() not in {m.lower() for m in mirrored}:
            out.append(f"library {lib!r} is not among the mirrored libraries ({', '.join(sorted(mirrored))})")
    if rule.enabled and not rule.schedule:
        out.append("no schedule: evaluated only by `smartplexd plan` (grace periods never start or end)")
    if rule.action.type == "delete" and not rule.limits.max_items and not rule.limits.max_bytes and not rule.storage:
        out.append("deletes without limits of its own (only deletion.max_items_per_run/max_bytes_per_run apply)")
    return out


def summarize(app: Any, offline: bool) -> dict[str, Any]:
    """Validate every rule file (raising ConfigError with file:line on problems) and summarize the rules.

    Returns ``{"rules": [...], "rule_lines": [...]}``: one dict per rule (name, source, enabled, schedule,
    action, warnings, and unless ``offline`` how many items it would select now) and the lines to print.
    """
    config = app.config
    reg = registry()
    try:
        rules = load_rules(config.rule_paths, reg)
    except SourceErrors as exc:
        raise ConfigError(exc.errors) from None
    counts: dict[str, dict[str, int]] = {}
    unknown: dict[str, Any] = {}
    if not offline and rules:
        from smartplexd.rules.planner import make_plan

        plan = make_plan(config, app.store, rules, actor=app.actor, rule_names=[r.name for r in rules], persist=False)
        counts = plan.totals.get("by_rule", {})
        unknown = plan.unknown_sources
    out: list[dict[str, Any]] = []
    lines = [f"  rules         {len(rules)} rule(s) from {', '.join(str(p) for p in config.rule_paths)}"]
    width = max((len(r.name) for r in rules), default=0)
    for rule in rules:
        info: dict[str, Any] = {
            "name": rule.name,
            "source": rule.source,
            "enabled": rule.enabled,
            "schedule": rule.schedule,
            "action": rule.action.type,
            "grace_period": rule.action.grace_period,
            "facts": rule.facts(),
            "warnings": warnings_for(rule, config, reg),
        }
        text = f"    {rule.name:<{width}}  {rule.action.type:<9} {'enabled ' if rule.enabled else 'DISABLED'}"
        if not offline:
            c = counts.get(rule.name, {})
            info.update(
                would_select=c.get("selected", 0),
                leaving_soon=c.get("leaving_soon", 0),
                skipped_unknown=c.get("skipped", 0),
                bytes=c.get("bytes", 0),
            )
            text += f"  would select {info['would_select']} now ({format_size(info['bytes'])})"
            if info["leaving_soon"]:
                text += f", {info['leaving_soon']} leaving soon"
            if info["skipped_unknown"]:
                text += f", {info['skipped_unknown']} skipped (unknown facts)"
        lines.append(text + f"  [{rule.source}]")
        lines += [f"      warning: {w}" for w in info["warnings"]]
        out.append(info)
    for source, slot in unknown.items():
        lines.append(f"    unknown: {source} ({slot['items']} item(s)): {slot['reason']}")
    return {"rules": out, "rule_lines": lines}
