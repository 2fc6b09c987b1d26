"""What smartplexd is doing right now, as one JSON-ready dict: ``smartplexd status``, ``GET /api/status``
and the status page all show :func:`gather`'s answer.

Everything comes from the store, so any process (the daemon, a CLI next to it) sees the same picture:

- ``integrations``: the last health check of every integration (``integration_health``), including one
  ``plex:<server>`` row per Plex server (status ``unauthorized`` when its token was rejected);
- ``servers``: each configured Plex server's last finished sync (``sync_events``) and, while one runs, its
  progress (``done``/``total``/``eta_s``) from the newest ``sync.progress`` event (the in-process bus, else
  the persisted ``events`` table, else the running row's ``details``);
- ``leaving_soon``: items in their grace period with the rule's reasons and the due date;
- ``deletions``: recent deletions with every cascade step's status and the bytes freed;
- ``retry_queue``: cascade steps waiting for another attempt, with ``next_attempt_at``;
- ``schedule``: the scheduler's jobs with their next run (``job_runs``);
- ``disk``: free space reported by integrations (``integration_health.details`` ``{"disk": [...]}``);
- ``ai``: assistant spend this calendar month (in the configured time zone) against the budget.

Times are epoch seconds (floats); readers format them. Nothing here includes a secret: error texts pass
through :func:`smartplexd.log.mask` and the config contributes only names.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from smartplexd.events import EventBus
from smartplexd.log import mask
from smartplexd.store import Store

RECENT_DELETIONS = 20
LEAVING_SOON_LIMIT = 200
RETRY_QUEUE_LIMIT = 100

_OK = {"ok", "healthy", "up"}


def gather(config: Any, store: Store, *, bus: EventBus | None = None, now: float | None = None) -> dict[str, Any]:
    """The status dict (see the module docstring for its sections). ``bus`` supplies live sync progress."""
    now = time.time() if now is None else now
    integrations = _integrations(store)
    servers = _servers(config, store, integrations, bus)
    status: dict[str, Any] = {
        "generated_at": now,
        "timezone": config.timezone,
        "deletion_enabled": bool(config.deletion.enabled),
        "integrations": integrations,
        "servers": servers,
        "leaving_soon": _leaving_soon(store),
        "deletions": _deletions(store),
        "retry_queue": _retry_queue(store),
        "schedule": _schedule(store),
        "disk": _disk(integrations),
        "ai": _ai_spend(config, store, now),
    }
    status["overall"] = _overall(status)
    for row in status["integrations"]:
        row.pop("details", None)
    return status


# --- sections ----------------------------------------------------------------------------------------


def _integrations(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT name, plugin, status, version, latency_ms, checked_at, error, details FROM integration_health"
        " ORDER BY plugin = 'plex' DESC, name"
    )
    for row in rows:
        row["error"] = _masked(row["error"])
        row["details"] = _json(row["details"], {})
    return rows


def _servers(
    config: Any, store: Store, integrations: list[dict[str, Any]], bus: EventBus | None
) -> list[dict[str, Any]]:
    health = {row["name"]: row for row in integrations}
    names = [s.name for s in config.plex.servers]
    # A server removed from the config still has history; show it after the configured ones.
    names += [r["server"] for r in store.query("SELECT DISTINCT server FROM sync_events") if r["server"] not in names]
    out = []
    for name in names:
        last = store.query_one(
            "SELECT id, kind, library, started_at, finished_at, duration_ms, status, items_seen, added, updated,"
            " unchanged, removed, error FROM sync_events WHERE server = ? AND finished_at IS NOT NULL"
            " ORDER BY finished_at DESC, id DESC LIMIT 1",
            (name,),
        )
        if last:
            last["error"] = _masked(last["error"])
        running = store.query_one(
            "SELECT id, kind, library, started_at, details FROM sync_events"
            " WHERE server = ? AND finished_at IS NULL AND status = 'running' ORDER BY id DESC LIMIT 1",
            (name,),
        )
        if running:
            running.update(_progress(store, bus, name, running))
            running.pop("details", None)
        row = health.get(f"plex:{name}")
        out.append(
            {
                "name": name,
                "configured": name in {s.name for s in config.plex.servers},
                "health": row["status"] if row else "unknown",
                "last_sync": last,
                "running": running,
            }
        )
    return out


def _progress(store: Store, bus: EventBus | None, server: str, running: dict[str, Any]) -> dict[str, Any]:
    """``done``/``total``/``eta_s`` of a running sync, from the freshest source that has them."""
    if bus is not None:
        for event in reversed(bus.since(0)):
            data = event.data
            if (
                event.type == "sync.progress"
                and data.get("server") == server
                and data.get("sync_id") in (None, running["id"])
            ):
                return _progress_fields(data, event.id)
    row = store.query_one(
        "SELECT id, data FROM events WHERE type = 'sync.progress' AND ts >= ?"
        " AND json_extract(data, '$.server') = ? ORDER BY id DESC LIMIT 1",
        (running["started_at"], server),
    )
    if row:
        return _progress_fields(_json(row["data"], {}), row["id"])
    return _progress_fields(_json(running["details"], {}), None)


def _progress_fields(data: dict[str, Any], event_id: int | None) -> dict[str, Any]:
    done, total = data.get("done"), data.get("total")
    eta = data.get("eta_s", data.get("eta"))
    percent = round(100.0 * done / total, 1) if isinstance(done, int) and isinstance(total, int) and total else None
    return {
        "library": data.get("library"),
        "done": done,
        "total": total,
        "eta_s": eta,
        "percent": percent,
        "event_id": event_id,
    }


def _leaving_soon(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT ls.id, ls.item_id, ls.rule, ls.plan_id, ls.added_at, ls.due_at, ls.status, ls.reason,"
        " m.server, m.title, m.year, m.type, m.size_bytes, m.season_index, m.episode_index,"
        " m.parent_rating_key, m.grandparent_rating_key, m.rating_key"
        " FROM leaving_soon ls JOIN media_items m ON m.id = ls.item_id"
        " WHERE ls.status IN ('pending', 'due') ORDER BY ls.due_at, ls.id LIMIT ?",
        (LEAVING_SOON_LIMIT,),
    )
    for row in rows:
        plan_item = store.query_one(
            "SELECT reasons FROM plan_items WHERE item_id = ? AND rule = ? AND (? IS NULL OR plan_id = ?)"
            " ORDER BY id DESC LIMIT 1",
            (row["item_id"], row["rule"], row["plan_id"], row["plan_id"]),
        ) or store.query_one(
            "SELECT reasons FROM plan_items WHERE item_id = ? AND rule = ? ORDER BY id DESC LIMIT 1",
            (row["item_id"], row["rule"]),
        )
        reasons = [reason_text(r) for r in _json(plan_item["reasons"], [])] if plan_item else []
        if not reasons and row["reason"]:
            reasons = [row["reason"]]
        row["reasons"] = reasons
        row["display_title"] = _display_title(store, row)
    return rows


def _display_title(store: Store, row: dict[str, Any]) -> str:
    """``Show — S02E05`` for episodes, ``Show — Season 2`` for seasons, ``Title (year)`` otherwise."""
    if row["type"] in ("episode", "season"):
        parent_key = row["grandparent_rating_key"] if row["type"] == "episode" else row["parent_rating_key"]
        show = store.query_one(
            "SELECT title FROM media_items WHERE server = ? AND rating_key = ?", (row["server"], parent_key)
        )
        prefix = f"{show['title']} — " if show else ""
        if row["type"] == "episode":
            return f"{prefix}S{row['season_index'] or 0:02d}E{row['episode_index'] or 0:02d} {row['title']}"
        return f"{prefix}{row['title']}"
    return f"{row['title']} ({row['year']})" if row["year"] else row["title"]


def reason_text(reason: Any) -> str:
    """One plan reason as a sentence. Reasons are strings or dicts (``fact``/``op``/``value``/``actual``)."""
    if isinstance(reason, str):
        return reason
    if not isinstance(reason, dict):
        return str(reason)
    for key in ("text", "summary", "description", "message"):
        if isinstance(reason.get(key), str):
            return reason[key]
    fact = reason.get("fact", "?")
    if "older_than" in reason or "newer_than" in reason:
        op = "older_than" if "older_than" in reason else "newer_than"
        condition = f"{fact} {op.replace('_', ' ')} {reason[op]}"
    elif "contains" in reason:
        condition = f"{fact} contains {reason['contains']}"
    else:
        op, value = reason.get("op"), reason.get("value")
        condition = f"{fact} {op} {value}" if op is not None else str(fact)
    actual = reason.get("actual", reason.get("actual_value"))
    return f"{condition} (is {actual})" if actual is not None else condition


def _deletions(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT id, plan_id, item_id, server, title, rule, action, status, reason, actor, created_at, updated_at,"
        " finished_at, bytes_freed, restored_at FROM deletion_events ORDER BY created_at DESC, id DESC LIMIT ?",
        (RECENT_DELETIONS,),
    )
    if not rows:
        return rows
    marks = ",".join("?" * len(rows))
    steps: dict[int, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    for step in store.query(
        "SELECT deletion_id, seq, plugin, target, action, status, attempts, next_attempt_at, last_error,"
        f" finished_at FROM deletion_steps WHERE deletion_id IN ({marks}) ORDER BY deletion_id, seq",
        [row["id"] for row in rows],
    ):
        step["last_error"] = _masked(step["last_error"])
        steps[step.pop("deletion_id")].append(step)
    for row in rows:
        row["steps"] = steps[row["id"]]
    return rows


def _retry_queue(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT s.deletion_id, s.seq, s.plugin, s.target, s.action, s.status, s.attempts, s.next_attempt_at,"
        " s.last_error, d.title, d.server FROM deletion_steps s JOIN deletion_events d ON d.id = s.deletion_id"
        " WHERE s.status IN ('failed', 'pending') AND s.next_attempt_at IS NOT NULL"
        " ORDER BY s.next_attempt_at, s.id LIMIT ?",
        (RETRY_QUEUE_LIMIT,),
    )
    for row in rows:
        row["last_error"] = _masked(row["last_error"])
    return rows


def _schedule(store: Store) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT job_id, description, next_run_at, last_run_at, last_status, last_error, last_duration_ms"
        " FROM job_runs ORDER BY next_run_at IS NULL, next_run_at, job_id"
    )
    for row in rows:
        row["last_error"] = _masked(row["last_error"])
    return rows


def _disk(integrations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Free space per path; Servarr shape (``freeSpace``/``totalSpace``) and plain shape both accepted."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for row in integrations:
        for disk in row["details"].get("disk", []) if isinstance(row["details"], dict) else []:
            if not isinstance(disk, dict):
                continue
            path = str(disk.get("path", "?"))
            free = _first(disk, "free_bytes", "freeSpace", "free")
            total = _first(disk, "total_bytes", "totalSpace", "total")
            if (row["name"], path) in seen:
                continue
            seen.add((row["name"], path))
            percent = round(100.0 * free / total, 1) if free is not None and total else None
            out.append(
                {
                    "integration": row["name"],
                    "path": path,
                    "label": disk.get("label") or None,
                    "free_bytes": free,
                    "total_bytes": total,
                    "free_percent": percent,
                }
            )
    return out


def _ai_spend(config: Any, store: Store, now: float) -> dict[str, Any]:
    local = datetime.fromtimestamp(now, config.tz)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    row = store.query_one(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(cost_usd), 0) AS cost_usd,"
        " COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens FROM ai_usage WHERE ts >= ?",
        (month_start.timestamp(),),
    )
    assert row is not None
    assistant = getattr(config, "assistant", None)
    return {
        "month": month_start.strftime("%Y-%m"),
        "calls": row["calls"],
        "tokens": row["tokens"],
        "cost_usd": round(float(row["cost_usd"]), 4),
        "budget_usd": assistant.monthly_budget_usd if assistant is not None else None,
        "enabled": assistant is not None,
    }


def _overall(status: dict[str, Any]) -> dict[str, Any]:
    """``ok`` | ``warning`` | ``error`` plus the problems that made it so (one sentence each)."""
    errors: list[str] = []
    warnings: list[str] = []
    for row in status["integrations"]:
        if row["status"] == "unauthorized":
            errors.append(f"{row['name']}: credentials rejected — fix the token/api key in the config")
        elif row["status"] not in _OK:
            errors.append(f"{row['name']}: {row['status']}" + (f" ({row['error']})" if row["error"] else ""))
    for server in status["servers"]:
        last = server["last_sync"]
        if last and last["status"] not in ("ok", "done", "success", "completed"):
            warnings.append(f"last sync of {server['name']} ended {last['status']}")
        elif not last and not server["running"] and server["configured"]:
            warnings.append(f"{server['name']} has not been synced yet")
    failed = [d for d in status["deletions"] if d["status"] in ("failed", "partial")]
    if failed:
        warnings.append(f"{len(failed)} recent deletion(s) failed or partial")
    if status["retry_queue"]:
        warnings.append(f"{len(status['retry_queue'])} cascade step(s) waiting for a retry")
    ai = status["ai"]
    if ai["budget_usd"] is not None and ai["cost_usd"] >= ai["budget_usd"] > 0:
        warnings.append("AI assistant monthly budget used up")
    state = "error" if errors else "warning" if warnings else "ok"
    return {"state": state, "problems": errors + warnings}


# --- small helpers ------------------------------------------------------------------------------------


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _masked(text: str | None) -> str | None:
    return mask(text) if text else text


def _first(d: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if d.get(key) is not None:
            return d[key]
    return None


# --- text (``smartplexd status``) ---------------------------------------------------------------------


def render_text(status: dict[str, Any], tz: Any) -> str:
    """The status dict as the plain text ``smartplexd status`` prints (times in ``tz``)."""
    from smartplexd.cli import table
    from smartplexd.units import format_duration, format_size

    now = status["generated_at"]

    def when(ts: float | None) -> str:
        if ts is None:
            return "-"
        delta = ts - now
        rel = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
        return f"{datetime.fromtimestamp(ts, tz):%Y-%m-%d %H:%M} ({rel})"

    overall = status["overall"]
    lines = [f"smartplexd: {overall['state'].upper()}"]
    lines += [f"  ! {p}" for p in overall["problems"]]
    lines.append("")
    rows = []
    for s in status["servers"]:
        last = s["last_sync"]
        if s["running"]:
            r = s["running"]
            state = f"syncing {r['done'] or 0}/{r['total'] or '?'}"
            if r.get("eta_s") is not None:
                state += f", ETA {format_duration(r['eta_s'])}"
        else:
            state = "idle"
        last_text = f"{last['status']} {when(last['finished_at'])}, {last['items_seen']} items" if last else "never"
        rows.append([s["name"], s["health"], last_text, state])
    lines += ["Plex servers", table(rows, ["server", "health", "last sync", "now"]), ""]
    rows = [
        [
            r["name"],
            r["status"],
            f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-",
            r["version"] or "-",
            r["error"] or "",
        ]
        for r in status["integrations"]
    ]
    lines += [
        "Integrations",
        table(rows, ["name", "status", "latency", "version", "error"]) if rows else "  (none)",
        "",
    ]
    lines.append(f"Leaving soon ({len(status['leaving_soon'])})")
    for item in status["leaving_soon"]:
        lines.append(f"  {item['display_title']} [{item['rule']}] due {when(item['due_at'])}")
        lines += [f"      - {reason}" for reason in item["reasons"]]
    lines.append("")
    lines.append(f"Recent deletions ({len(status['deletions'])})")
    for d in status["deletions"]:
        steps = ", ".join(f"{step['plugin']} {step['status']}" for step in d["steps"])
        lines.append(
            f"  #{d['id']} {d['title']}: {d['status']}, {format_size(d['bytes_freed'])} freed"
            f" {when(d['finished_at'] or d['created_at'])} [{steps}]"
        )
    lines.append("")
    lines.append(f"Retry queue ({len(status['retry_queue'])})")
    for r in status["retry_queue"]:
        lines.append(
            f"  #{r['deletion_id']} {r['title']}: {r['plugin']} {r['action']}, attempt {r['attempts']},"
            f" next {when(r['next_attempt_at'])}" + (f" — {r['last_error']}" if r["last_error"] else "")
        )
    lines.append("")
    rows = [
        [j["description"] or j["job_id"], when(j["next_run_at"]), j["last_status"] or "-"] for j in status["schedule"]
    ]
    lines += ["Schedule", table(rows, ["job", "next run", "last"]) if rows else "  (nothing scheduled)", ""]
    rows = [
        [d["path"], d["integration"], format_size(d["free_bytes"]), format_size(d["total_bytes"]), d["free_percent"]]
        for d in status["disk"]
    ]
    lines += ["Free space", table(rows, ["path", "from", "free", "total", "free %"]) if rows else "  (not reported)"]
    ai = status["ai"]
    if ai["enabled"]:
        budget = f" of ${ai['budget_usd']:.2f}" if ai["budget_usd"] is not None else ""
        lines += ["", f"AI assistant: ${ai['cost_usd']:.2f}{budget} in {ai['month']} ({ai['calls']} calls)"]
    return "\n".join(lines)
