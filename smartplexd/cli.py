"""The command line: ``smartplexd [-c CONFIG] COMMAND``.

Every command is a thin call into the modules that own the work; this file parses arguments, loads the
config, opens the store, prints tables or ``--json``, and maps errors to the exit codes of
ARCHITECTURE §6 (0 ok · 1 error · 2 invalid config or usage · 3 partial · 4 refused · 5 Plex 401).

Commands are registered with :func:`command`; each gets ``(args, app)`` where :class:`App` lazily loads
the config and opens the store.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from smartplexd import __version__
from smartplexd.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, SmartplexdError

Handler = Callable[[argparse.Namespace, "App"], int]


@dataclass
class _Command:
    name: str
    help: str
    handler: Handler
    configure: Callable[[argparse.ArgumentParser], None] | None
    json: bool


_COMMANDS: list[_Command] = []


def command(
    name: str, help: str, *, json: bool = False, args: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Handler], Handler]:
    """Register a CLI command. ``name`` may contain a space for sub-commands (``"db migrate"``)."""

    def register(fn: Handler) -> Handler:
        _COMMANDS.append(_Command(name, help, fn, args, json))
        return fn

    return register


@dataclass
class App:
    """What a command needs, created on first use: the config, the store, who is acting."""

    config_path: str
    out: Any = field(default_factory=lambda: sys.stdout)
    err: Any = field(default_factory=lambda: sys.stderr)

    @cached_property
    def config(self) -> Any:
        from smartplexd import log
        from smartplexd.config import load_config

        config = load_config(self.config_path)
        log.setup(config.log_level)
        return config

    @cached_property
    def store(self) -> Any:
        from smartplexd.store import open_store

        return open_store(self.config.database_path)

    @property
    def actor(self) -> str:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return f"cli:{user}"

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def print_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str, sort_keys=False), file=self.out)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain left-aligned text table (numbers right-aligned)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [all(_is_num(r[i]) for r in rows if r[i] not in (None, "")) and rows for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- foundation commands -------------------------------------------------------------------------------


@command("version", "print the version and the loaded plugins", json=True)
def _version(args: argparse.Namespace, app: App) -> int:
    from smartplexd.plugins import list_plugins

    plugins = {p.name: p.version for p in list_plugins()}
    if args.json:
        app.print_json({"version": __version__, "plugins": plugins})
    else:
        app.print(f"smartplexd {__version__}")
        for name, version in plugins.items():
            app.print(f"  plugin {name} {version or ''}".rstrip())
    return EXIT_OK


@command("plugins", "list loaded plugins and the hooks each implements", json=True)
def _plugins(args: argparse.Namespace, app: App) -> int:
    from smartplexd.plugins import list_plugins

    plugins = list_plugins()
    if args.json:
        app.print_json([p.__dict__ if hasattr(p, "__dict__") else _asdict(p) for p in plugins])
        return EXIT_OK
    rows = [[p.name, p.version or "-", "built-in" if p.builtin else "entry point", ", ".join(p.hooks)] for p in plugins]
    app.print(table(rows, ["plugin", "version", "loaded from", "hooks"]))
    return EXIT_OK


def _asdict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offline", action="store_true", help="validate files only; do not evaluate rules")


@command("check", "validate the config (and rules); print what is configured", json=True, args=_check_args)
def _check(args: argparse.Namespace, app: App) -> int:
    config = app.config
    summary: dict[str, Any] = {
        "config": config.source,
        "database": str(config.database_path),
        "plex_servers": [s.name for s in config.plex.servers],
        "integrations": {
            name: [i.name for i in value] if isinstance(value, list) else getattr(value, "name", name)
            for name, value in config.integrations.items()
        },
        "webhooks": {name: w.auth for name, w in config.webhooks.items()},
        "deletion_enabled": config.deletion.enabled,
        "rule_paths": [str(p) for p in config.rule_paths],
    }
    summary.update(_check_rules(args, app))
    if args.json:
        app.print_json({"ok": True, **summary})
        return EXIT_OK
    app.print(f"{config.source}: OK")
    app.print(f"  database      {summary['database']}")
    app.print(f"  plex servers  {', '.join(summary['plex_servers']) or '(none)'}")
    for name, value in summary["integrations"].items():
        app.print(f"  integration   {name}: {value}")
    for name, auth in summary["webhooks"].items():
        app.print(f"  webhook       /hooks/{name} ({auth})")
    app.print(f"  deletion      {'ENABLED' if config.deletion.enabled else 'disabled (plan is a dry run)'}")
    for line in summary.get("rule_lines", []):
        app.print(line)
    return EXIT_OK


def _check_rules(args: argparse.Namespace, app: App) -> dict[str, Any]:
    """Rule validation is added by the rules engine; until then, report the rule paths only."""
    try:
        from smartplexd.rules import check as rules_check  # type: ignore[attr-defined]
    except ImportError:
        return {}
    return rules_check.summarize(app, offline=args.offline)


def _schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", default="schema", choices=["schema"], help="print the JSON Schema")


@command("config", "print the JSON Schema of config.yaml (for editors)", args=_schema_args)
def _config_schema(args: argparse.Namespace, app: App) -> int:
    from smartplexd.config import json_schema

    app.print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["migrate", "rollback", "status"])
    p.add_argument("--to", type=int, default=None, help="target schema version")


@command("db", "apply or roll back database migrations", json=True, args=_db_args)
def _db(args: argparse.Namespace, app: App) -> int:
    from smartplexd import audit
    from smartplexd.store import Store
    from smartplexd.store.db import available_migrations

    store = Store(app.config.database_path)
    try:
        before = store.schema_version()
        if args.action == "migrate":
            done = store.migrate(args.to)
        elif args.action == "rollback":
            done = store.rollback(args.to)
        else:
            done = []
        after = store.schema_version()
        if done and after >= 1:
            audit.record(store, app.actor, f"db.{args.action}", None, {"from": before, "to": after, "versions": done})
        latest = max((m.version for m in available_migrations()), default=0)
        if args.json:
            app.print_json({"from": before, "to": after, "latest": latest, "applied": done})
        else:
            verb = {"migrate": "applied", "rollback": "rolled back", "status": "pending"}[args.action]
            if args.action == "status":
                app.print(f"schema version {after} (latest {latest})")
            else:
                app.print(f"{verb} {', '.join(map(str, done)) or 'nothing'}; schema version {before} → {after}")
    finally:
        store.close()
    return EXIT_OK


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["verify", "show"])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action-filter", dest="action_filter", default=None, help="e.g. 'deletion.*'")


@command("audit", "verify the hash chain or show recent audit entries", json=True, args=_audit_args)
def _audit(args: argparse.Namespace, app: App) -> int:
    from smartplexd import audit

    if args.action == "verify":
        result = audit.verify(app.store)
        if args.json:
            app.print_json(result.__dict__ if hasattr(result, "__dict__") else _asdict(result))
        elif result.ok:
            app.print(f"audit log OK: {result.rows} rows, chain intact")
        else:
            app.print(f"audit log BROKEN at row {result.first_bad_seq}: {result.problem}")
        return EXIT_OK if result.ok else EXIT_ERROR
    rows = audit.entries(app.store, limit=args.limit, action=args.action_filter)
    if args.json:
        app.print_json(rows)
    else:
        app.print(
            table(
                [
                    [
                        r["seq"],
                        r["ts"][:19],
                        r["actor"],
                        r["action"],
                        r["target"] or "",
                        json.dumps(r["details"])[:60],
                    ]
                    for r in rows
                ],
                ["seq", "time (UTC)", "actor", "action", "target", "details"],
            )
        )
    return EXIT_OK


# --- sync ------------------------------------------------------------------------------------------------


def _sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", default=None, help="server name (repeatable; default: all)")
    p.add_argument("--library", action="append", default=None, help="library title (repeatable; default: config)")
    p.add_argument(
        "--allow-shrink",
        action="store_true",
        help="let the sweep remove more than deletion.max_library_shrink_percent (the library really shrank)",
    )
    p.add_argument(
        "--no-enrich",
        action="store_true",
        help="skip the facts refresh from Sonarr/Radarr/Overseerr/Tautulli that follows a successful sync",
    )


@command("sync", "mirror Plex libraries into the database (full sync)", json=True, args=_sync_args)
def _sync(args: argparse.Namespace, app: App) -> int:
    from smartplexd import audit, events
    from smartplexd.errors import PlexUnauthorized, Refused, UsageError
    from smartplexd.plex.sync import LockHeld, sync_server
    from smartplexd.progress import ProgressBar

    config = app.config
    names = args.server or [s.name for s in config.plex.servers]
    if not names:
        raise UsageError("no Plex server configured: add one under plex.servers")
    results: list[dict[str, Any]] = []
    locked: list[str] = []
    for name in names:
        bar = ProgressBar(f"{name}", stream=app.err) if not args.json else None

        def on_event(event: events.Event, bar: ProgressBar | None = bar, name: str = name) -> None:
            if bar is not None and event.type == "sync.progress" and event.data["server"] == name:
                bar.update(event.data["done"], event.data["total"], label=f"{name}/{event.data['library']}")

        unsubscribe = events.bus.subscribe(on_event)
        try:
            if args.allow_shrink:
                audit.record(app.store, app.actor, "sync.allow_shrink", f"plex:{name}", {"libraries": args.library})
            result = sync_server(config, app.store, name, libraries=args.library, allow_shrink=args.allow_shrink)
            results.append(result.to_dict())
        except LockHeld as exc:
            running = exc.details.get("sync_id", "?")
            locked.append(f"a sync of Plex server '{name}' is already running (sync {running}); try again later")
            results.append({"server": name, "status": "locked", "running_sync_id": running})
        finally:
            unsubscribe()
            if bar is not None:
                bar.close()
    facts = None
    if not args.no_enrich and any(r["status"] == "ok" for r in results):
        facts = _enrich_after_sync(app, quiet=args.json)
        for r in results:
            if r["status"] == "ok":
                r["facts"] = facts
    if args.json:
        app.print_json(results)
    else:
        for r in results:
            if r["status"] == "locked":
                continue
            c = r["counts"]
            app.print(
                f"{r['server']}: {r['status']} (sync {r['sync_id']}) — {c['seen']} items: {c['added']} added, "
                f"{c['updated']} updated, {c['unchanged']} unchanged, {c['removed']} removed, "
                f"{c['tombstoned']} kept out (tombstoned) in {r['duration_ms'] / 1000:.1f} s"
            )
        for name, f in (facts or {}).items():
            trouble = f" — {f['unknown']} UNKNOWN: {f['error']}" if f["unknown"] else ""
            app.print(f"facts {name}: {f['known']} known, {f['absent']} not held by {name}{trouble}")
    statuses = {r["status"] for r in results}
    if "unauthorized" in statuses:
        raise PlexUnauthorized(next(r["server"] for r in results if r["status"] == "unauthorized"))
    problems = locked + [r["error"] for r in results if r["status"] == "refused"]
    if problems:
        raise Refused("; ".join(problems))
    if "error" in statuses:
        raise SmartplexdError("; ".join(r["error"] for r in results if r["status"] == "error"))
    return EXIT_OK


def _enrich_after_sync(app: App, quiet: bool) -> dict[str, Any]:
    """Refresh every item's facts (the integrations' catalogues, fetched once each) with a progress bar."""
    from smartplexd import events
    from smartplexd.enrich import enrich_all
    from smartplexd.progress import ProgressBar

    bar = None if quiet else ProgressBar("facts", stream=app.err)

    def on_event(event: events.Event) -> None:
        if bar is not None and event.type == "enrich.progress":
            bar.update(event.data["done"], event.data["total"])

    unsubscribe = events.bus.subscribe(on_event)
    try:
        summaries = enrich_all(app.config, app.store)
    finally:
        unsubscribe()
        if bar is not None:
            bar.close()
    return {name: s.to_dict() for name, s in summaries.items()}


# --- status and demo ------------------------------------------------------------------------------------


@command("status", "what smartplexd is doing: health, syncs, leaving soon, deletions, retries, schedule", json=True)
def _status(args: argparse.Namespace, app: App) -> int:
    from smartplexd.status import gather, render_text

    status = gather(app.config, app.store)
    if args.json:
        app.print_json(status)
    else:
        app.print(render_text(status, app.config.tz))
    return EXIT_OK


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="./demo-data", help="folder for the demo config, rules and database")
    p.add_argument("--movies", type=int, default=2000, help="movies in the simulated library")
    p.add_argument("--shows", type=int, default=60, help="shows in the simulated library")
    p.add_argument("--seed", type=int, default=42, help="seed of the simulated library")
    p.add_argument("--latency", type=float, default=0.25, help="seconds the simulated Plex waits per request")
    p.add_argument("--port", type=int, default=0, help="status page port on 127.0.0.1 (default: a free one)")


@command("demo", "run simulated Plex/Sonarr/Radarr/Overseerr/Tautulli and the daemon against them", args=_demo_args)
def _demo(args: argparse.Namespace, app: App) -> int:
    from smartplexd.demo.launcher import DemoOptions, run_demo

    options = DemoOptions(
        folder=args.dir, movies=args.movies, shows=args.shows, seed=args.seed, latency=args.latency, port=args.port
    )
    return run_demo(options, out=app.out)


# --- assistant -----------------------------------------------------------------------------------------


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help='what to ask, e.g. "what could I delete to free 500 GB?"')
    p.add_argument(
        "--save", metavar="PATH", help="write the drafted rule to PATH (valid drafts only; never overwrites)"
    )


@command(
    "ask", "ask the AI assistant about the library or for a rule draft (it cannot delete)", json=True, args=_ask_args
)
def _ask(args: argparse.Namespace, app: App) -> int:
    from smartplexd.assistant import ask, save_draft
    from smartplexd.errors import UsageError

    result = ask(app.config, app.store, args.question, actor=app.actor)
    saved = save_error = None
    if args.save:
        # The answer is printed even when saving fails: the question has been paid for.
        try:
            saved = save_draft(result, args.save)
        except UsageError as exc:
            save_error = str(exc)
    code = EXIT_USAGE if save_error else EXIT_OK
    if args.json:
        app.print_json({**result.to_dict(), "saved_to": saved, "save_error": save_error})
        return code
    app.print(result.answer)
    draft = result.draft
    if draft is not None:
        app.print()
        if draft.valid:
            app.print(f"Draft rule (valid; a dry run selects {draft.items} items, {draft.to_dict()['size']}):")
        else:
            app.print("Draft rule (NOT valid):")
        app.print(draft.yaml.rstrip())
        for error in draft.errors:
            app.print(f"  error: {error}")
    for warning in result.warnings:
        app.print(f"warning: {warning}")
    u = result.usage
    app.print(
        f"({u.calls} call(s), {u.prompt_tokens}+{u.completion_tokens} tokens, ${u.cost_usd:.4f}; "
        f"${u.month_spend_usd:.2f} of ${u.monthly_budget_usd:.2f} this month)"
    )
    if saved:
        app.print(f"saved the draft to {saved}")
    if save_error:
        print(f"error: {save_error}", file=app.err)
    return code


# --- deletion ------------------------------------------------------------------------------------------


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan_id", type=int, metavar="PLAN_ID", help="the plan to apply (`smartplexd plan` prints it)")
    p.add_argument("--confirm", default=None, metavar="WORD", help="DELETE, to confirm without a prompt")
    p.add_argument("--now", action="store_true", help="apply outside deletion.window")


def _print_run(args: argparse.Namespace, app: App, result: Any) -> None:
    from dataclasses import asdict

    from smartplexd.units import format_size

    if args.json:
        app.print_json({**asdict(result), "counts": result.counts(), "exit_code": result.exit_code})
        return
    if result.busy:
        app.print("another executor is running; nothing done")
        return
    if result.deletions:
        rows = [
            [d.id, d.title, d.status, format_size(d.bytes_freed) if d.bytes_freed else "", d.reason or ""]
            for d in result.deletions
        ]
        app.print(table(rows, ["id", "title", "status", "freed", "reason"]))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items())) or "nothing to do"
    app.print(f"{counts}; {format_size(result.bytes_freed)} freed")
    if any(d.status == "partial" for d in result.deletions):
        app.print("partial deletions are retried automatically with backoff; `smartplexd retry ID` forces it")


def _run_exit(result: Any) -> int:
    from smartplexd.errors import PlexUnauthorized

    if result.unauthorized:
        raise PlexUnauthorized(result.unauthorized, "the run stopped; nothing further was deleted")
    return int(result.exit_code)


@command("apply", "delete what a plan selected (asks for the word DELETE)", json=True, args=_apply_args)
def _apply(args: argparse.Namespace, app: App) -> int:
    from smartplexd import deletion
    from smartplexd.units import format_size

    confirm = args.confirm
    if confirm is None and sys.stdin.isatty() and not args.json:
        summary = deletion.check_can_apply(app.config, app.store, args.plan_id, actor=app.actor, now=args.now)
        app.print(
            f"Plan {summary['id']} selects {summary['items']} item(s), {format_size(summary['bytes'])}. "
            "Each is re-checked before it is deleted; the deletion cannot be undone in Plex."
        )
        try:
            confirm = input("Type DELETE to delete them: ").strip()
        except EOFError:
            confirm = ""
    result = deletion.apply_plan(app.config, app.store, args.plan_id, actor=app.actor, confirm=confirm, now=args.now)
    _print_run(args, app, result)
    return _run_exit(result)


def _history_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", default=None, choices=["pending", "running", "done", "partial", "failed", "skipped"])
    p.add_argument("--limit", type=int, default=50)


@command("history", "deletions, newest first, with each step's outcome", json=True, args=_history_args)
def _history(args: argparse.Namespace, app: App) -> int:
    import time

    from smartplexd import deletion
    from smartplexd.units import format_size

    rows = deletion.history(app.store, status=args.status, limit=args.limit)
    if args.json:
        app.print_json(rows)
        return EXIT_OK
    out = []
    for d in rows:
        steps = " → ".join(f"{s['plugin']}:{s['status']}" for s in d["steps"])
        out.append(
            [
                d["id"],
                time.strftime("%Y-%m-%d %H:%M", time.localtime(d["created_at"])),
                d["title"],
                d["rule"] or "",
                d["status"] + (" (restored)" if d["restored_at"] else ""),
                format_size(d["bytes_freed"]) if d["bytes_freed"] else "",
                steps,
                d["reason"] or "",
            ]
        )
    app.print(table(out, ["id", "created", "title", "rule", "status", "freed", "steps", "reason"]))
    return EXIT_OK


def _retry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", nargs="?", type=int, default=None, help="deletion id (default: every partial or failed one)")


@command("retry", "run failed deletion steps now instead of at their backoff time", json=True, args=_retry_args)
def _retry(args: argparse.Namespace, app: App) -> int:
    from smartplexd import deletion

    result = deletion.retry(app.config, app.store, args.id, actor=app.actor)
    _print_run(args, app, result)
    return _run_exit(result)


def _restore_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, help="deletion id (`smartplexd history`)")


@command(
    "restore", "re-add a deleted item through Sonarr/Radarr (they download it again)", json=True, args=_restore_args
)
def _restore(args: argparse.Namespace, app: App) -> int:
    from dataclasses import asdict

    from smartplexd import deletion
    from smartplexd.errors import EXIT_PARTIAL

    outcome = deletion.restore(app.config, app.store, args.id, actor=app.actor)
    if args.json:
        app.print_json(asdict(outcome))
    else:
        for r in outcome.results:
            mark = {True: "ok", False: "FAILED", None: "-"}[r["ok"]]
            app.print(f"{r['target']}: {mark} {r['message']}")
        app.print(f"restore of deletion {outcome.deletion_id}: {outcome.status}")
    return EXIT_OK if outcome.status == "ok" else EXIT_PARTIAL


# Each later area adds its commands above this line, in a section of its own (sync, rules, deletion,
# daemon, assistant), calling into the module that owns the work.

# --- daemon --------------------------------------------------------------------------------------------


@command("run", "run the daemon: web server, webhooks, API, scheduler (SIGTERM stops, SIGHUP reloads)")
def _run(args: argparse.Namespace, app: App) -> int:
    from smartplexd.config import ConfigError
    from smartplexd.daemon import Daemon
    from smartplexd.errors import UsageError
    from smartplexd.yamlsource import SourceErrors

    try:
        daemon = Daemon(app.config_path)
    except SourceErrors as exc:
        if isinstance(exc, ConfigError):
            raise
        raise UsageError(f"invalid rules:\n{exc}") from None
    return daemon.run()


# --- rules ---------------------------------------------------------------------------------------------


def _plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", action="append", default=None, metavar="NAME", help="only this rule (repeatable)")
    p.add_argument("--include-requests", action="store_true", help="add open deletion requests to the plan")
    p.add_argument("--all", action="store_true", help="also list skipped, excluded and limited items")


@command("plan", "show what the rules select now and why (always a dry run)", json=True, args=_plan_args)
def _plan(args: argparse.Namespace, app: App) -> int:
    from smartplexd.config import ConfigError
    from smartplexd.rules.facts import registry
    from smartplexd.rules.models import load_rules
    from smartplexd.rules.planner import make_plan, render_plan
    from smartplexd.yamlsource import SourceErrors

    reg = registry()
    try:
        rules = load_rules(app.config.rule_paths, reg)
    except SourceErrors as exc:
        raise ConfigError(exc.errors) from None
    plan = make_plan(
        app.config,
        app.store,
        rules,
        actor=app.actor,
        rule_names=args.rule,
        include_requests=args.include_requests,
        registry=reg,
    )
    if args.json:
        app.print_json(plan.to_dict())
    else:
        app.print(render_plan(plan, show_all=args.all))
    return EXIT_OK


@command("facts", "list every fact rules can use (core Plex facts and each plugin's)", json=True)
def _facts(args: argparse.Namespace, app: App) -> int:
    from smartplexd.rules.facts import registry

    facts = registry().all()
    if args.json:
        app.print_json([{**_asdict(f), "source": f.source} for f in facts])
        return EXIT_OK
    app.print(
        table([[f.name, f.type, f.unit or "", f.description] for f in facts], ["fact", "type", "unit", "description"])
    )
    return EXIT_OK


# --- entry point ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartplexd",
        description="Keeps a Plex library lean, safely. Plans are dry runs; apply needs the plan id and DELETE.",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("SMARTPLEXD_CONFIG", "./config.yaml"),
        help="config file (default: $SMARTPLEXD_CONFIG or ./config.yaml)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"smartplexd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen: set[str] = set()
    for cmd in _COMMANDS:
        if cmd.name in seen:
            continue
        seen.add(cmd.name)
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.json:
            p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        if cmd.configure:
            cmd.configure(p)
        p.set_defaults(_handler=cmd.handler)
        if not cmd.json:
            p.set_defaults(json=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from smartplexd.config import ConfigError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "_handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    app = App(args.config)
    try:
        return args._handler(args, app)
    except ConfigError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except SmartplexdError as exc:
        from smartplexd.log import mask

        print(f"error: {mask(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        app.close()


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
