"""The read-only status page (``GET /``), its JSON (``GET /api/status``) and its static assets (``/static/``).

Both answers are :func:`smartplexd.status.gather` read from a fresh store connection in a worker thread;
the HTML is rendered on the server (escaped everywhere) and ``static/status.js`` keeps the sync progress
bars live from ``GET /api/events``. The page has no forms and makes no write calls; it shows names and
numbers only, never a configured secret.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

from smartplexd import status as status_mod
from smartplexd.store import open_store
from smartplexd.units import format_duration, format_size
from smartplexd.web import BUS, CONFIG, DB_PATH

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE = Path(__file__).parent / "templates" / "status.html"

# The page loads its own script and stylesheet only; EventSource talks to this origin.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def setup(app: web.Application) -> None:
    """Add ``GET /``, ``GET /api/status`` and ``/static/`` to ``app`` (needs the CONFIG and DB_PATH keys)."""
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api_status)
    app.router.add_static("/static/", STATIC_DIR, name="static")


async def current_status(request: web.Request) -> dict[str, Any]:
    """The status dict, gathered off the event loop on a connection of its own."""
    config = request.app[CONFIG]
    path = request.app[DB_PATH]
    bus = request.app.get(BUS)

    def read() -> dict[str, Any]:
        store = open_store(path, migrate=False)
        try:
            return status_mod.gather(config, store, bus=bus)
        finally:
            store.close()

    return await asyncio.to_thread(read)


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(await current_status(request), headers={"Cache-Control": "no-store"})


async def page(request: web.Request) -> web.Response:
    status = await current_status(request)
    html = render(status, request.app[CONFIG].tz)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)


# --- rendering ----------------------------------------------------------------------------------------


def render(status: dict[str, Any], tz: Any) -> str:
    """The whole page for ``status`` with times shown in ``tz``."""
    fmt = _Formatter(tz, status["generated_at"])
    overall = status["overall"]
    sections = [
        _servers(status, fmt),
        _leaving_soon(status, fmt),
        _deletions(status, fmt),
        _retry_queue(status, fmt),
        _integrations(status, fmt),
        _schedule(status, fmt),
        _disk(status),
        _ai(status),
    ]
    problems = "".join(f"<li>{escape(p)}</li>" for p in overall["problems"])
    template = TEMPLATE.read_text(encoding="utf-8")
    values = {
        "state": escape(overall["state"]),
        "state_label": {"ok": "All good", "warning": "Needs attention", "error": "Problem"}.get(
            overall["state"], escape(overall["state"])
        ),
        "problems": f'<ul class="problems">{problems}</ul>' if problems else "",
        "generated": fmt.time(status["generated_at"]),
        "deletion": "deletions enabled" if status["deletion_enabled"] else "deletions disabled (dry runs only)",
        "sections": "\n".join(sections),
    }
    # One pass, so text inside a value (an item titled "{{sections}}") is never expanded.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


class _Formatter:
    def __init__(self, tz: Any, now: float) -> None:
        self.tz, self.now = tz, now

    def time(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        local = datetime.fromtimestamp(ts, self.tz)
        return f'<time datetime="{local.isoformat()}">{local.strftime("%Y-%m-%d %H:%M")}</time>'

    def relative(self, ts: float | None) -> str:
        if ts is None:
            return ""
        delta = ts - self.now
        return f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"

    def when(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return f'{self.time(ts)} <span class="muted">{escape(self.relative(ts))}</span>'


def _badge(value: str | None) -> str:
    value = value or "unknown"
    kind = {
        "ok": "ok",
        "done": "ok",
        "success": "ok",
        "completed": "ok",
        "healthy": "ok",
        "up": "ok",
        "pending": "wait",
        "due": "wait",
        "running": "wait",
        "skipped": "muted",
        "partial": "warn",
        "warning": "warn",
        "unknown": "muted",
    }.get(value, "bad")
    return f'<span class="badge {kind}">{escape(value)}</span>'


def _section(ident: str, title: str, body: str, count: int | None = None) -> str:
    counter = f' <span class="count">{count}</span>' if count is not None else ""
    return f'<section id="{ident}"><h2>{escape(title)}{counter}</h2>{body}</section>'


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _td(value: str, label: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<td data-label="{escape(label)}"{klass}>{value}</td>'


def _servers(status: dict[str, Any], fmt: _Formatter) -> str:
    cards = []
    for server in status["servers"]:
        name = escape(server["name"])
        last = server["last_sync"]
        if last:
            counts = (
                f"{last['items_seen']} items · +{last['added']} ~{last['updated']} -{last['removed']}"
                f" · {format_duration((last['duration_ms'] or 0) / 1000)}"
            )
            summary = (
                f"Last sync {fmt.when(last['finished_at'])} {_badge(last['status'])}"
                f'<br><span class="muted">{escape(counts)}</span>'
            )
            if last["error"]:
                summary += f'<br><span class="error">{escape(last["error"])}</span>'
        else:
            summary = '<span class="muted">Never synced</span>'
        running = server["running"]
        done = (running or {}).get("done") or 0
        total = (running or {}).get("total") or 0
        text = _progress_text(running) if running else "idle"
        hidden = "" if running else " hidden"
        cards.append(
            f'<article class="card server" data-server="{name}">'
            f"<h3>{name} {_badge(server['health'])}</h3><p>{summary}</p>"
            f'<div class="sync"{hidden} data-server="{name}">'
            f'<progress class="sync-progress" max="{max(total, 1)}" value="{min(done, max(total, 1))}"'
            f' aria-label="sync progress of {name}"></progress>'
            f'<span class="sync-text">{escape(text)}</span></div></article>'
        )
    body = "".join(cards) or '<p class="empty">No Plex server configured.</p>'
    return _section("servers", "Plex servers", f'<div class="cards">{body}</div>')


def _progress_text(running: dict[str, Any]) -> str:
    done, total, eta = running.get("done"), running.get("total"), running.get("eta_s")
    if total:
        text = f"syncing {done or 0:,} / {total:,}"
        if eta is not None:
            text += f" · ETA {format_duration(eta)}"
        return text
    return "syncing…"


def _leaving_soon(status: dict[str, Any], fmt: _Formatter) -> str:
    rows = []
    for item in status["leaving_soon"]:
        reasons = "".join(f"<li>{escape(r)}</li>" for r in item["reasons"]) or "<li>—</li>"
        rows.append(
            "<tr>"
            + _td(
                f'{escape(item["display_title"])}<br><span class="muted">{escape(item["server"])} ·'
                f" {escape(item['type'])} · {format_size(item['size_bytes'])}</span>",
                "Item",
            )
            + _td(escape(item["rule"]), "Rule")
            + _td(f'<ul class="reasons">{reasons}</ul>', "Why")
            + _td(fmt.when(item["due_at"]), "Due", "due")
            + "</tr>"
        )
    body = _table(["Item", "Rule", "Why", "Due"], rows, "Nothing is scheduled to leave.")
    return _section("leaving-soon", "Leaving soon", body, len(status["leaving_soon"]))


def _deletions(status: dict[str, Any], fmt: _Formatter) -> str:
    rows = []
    for d in status["deletions"]:
        steps = "".join(
            f"<li>{_badge(s['status'])} {escape(s['plugin'])}: {escape(s['action'])}"
            + (f' <span class="muted">{s["attempts"]} attempts</span>' if s["attempts"] > 1 else "")
            + (f'<br><span class="error">{escape(s["last_error"])}</span>' if s["last_error"] else "")
            + "</li>"
            for s in d["steps"]
        )
        rows.append(
            "<tr>"
            + _td(f'{escape(d["title"])}<br><span class="muted">{escape(d["rule"] or d["actor"])}</span>', "Item")
            + _td(_badge(d["status"]), "Status")
            + _td(f'<ol class="steps">{steps}</ol>' if steps else "—", "Cascade")
            + _td(escape(format_size(d["bytes_freed"])), "Freed", "num")
            + _td(fmt.when(d["finished_at"] or d["created_at"]), "When")
            + "</tr>"
        )
    freed = sum(d["bytes_freed"] for d in status["deletions"])
    note = f'<p class="muted">{escape(format_size(freed))} freed by these deletions.</p>' if rows else ""
    body = _table(["Item", "Status", "Cascade", "Freed", "When"], rows, "No deletions yet.") + note
    return _section("deletions", "Recent deletions", body, len(status["deletions"]))


def _retry_queue(status: dict[str, Any], fmt: _Formatter) -> str:
    rows = [
        "<tr>"
        + _td(f'{escape(r["title"])} <span class="muted">#{r["deletion_id"]}</span>', "Item")
        + _td(f"{escape(r['plugin'])}: {escape(r['action'])}", "Step")
        + _td(str(r["attempts"]), "Attempts", "num")
        + _td(fmt.when(r["next_attempt_at"]), "Next attempt")
        + _td(escape(r["last_error"] or ""), "Last error", "error")
        + "</tr>"
        for r in status["retry_queue"]
    ]
    body = _table(["Item", "Step", "Attempts", "Next attempt", "Last error"], rows, "Nothing waiting for a retry.")
    return _section("retry-queue", "Retry queue", body, len(status["retry_queue"]))


def _integrations(status: dict[str, Any], fmt: _Formatter) -> str:
    rows = [
        "<tr>"
        + _td(escape(r["name"]), "Name")
        + _td(_badge(r["status"]), "Status")
        + _td(f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "—", "Latency", "num")
        + _td(escape(r["version"] or "—"), "Version")
        + _td(fmt.when(r["checked_at"]), "Checked")
        + _td(escape(r["error"] or ""), "Error", "error")
        + "</tr>"
        for r in status["integrations"]
    ]
    body = _table(["Name", "Status", "Latency", "Version", "Checked", "Error"], rows, "No health check has run yet.")
    return _section("integrations", "Integrations", body)


def _schedule(status: dict[str, Any], fmt: _Formatter) -> str:
    rows = [
        "<tr>"
        + _td(f"{escape(j['description'] or j['job_id'])}", "Job")
        + _td(fmt.when(j["next_run_at"]), "Next run")
        + _td(fmt.when(j["last_run_at"]) + (" " + _badge(j["last_status"]) if j["last_status"] else ""), "Last run")
        + "</tr>"
        for j in status["schedule"]
    ]
    body = _table(["Job", "Next run", "Last run"], rows, "Nothing scheduled (is the daemon running?).")
    return _section("schedule", "Schedule", body)


def _disk(status: dict[str, Any]) -> str:
    rows = []
    for d in status["disk"]:
        meter = ""
        if d["free_percent"] is not None:
            used = 100 - d["free_percent"]
            meter = f'<meter min="0" max="100" low="80" high="90" optimum="0" value="{used:.1f}"></meter> '
        free = f"{format_size(d['free_bytes'])} free of {format_size(d['total_bytes'])}"
        pct = f" ({d['free_percent']}%)" if d["free_percent"] is not None else ""
        rows.append(
            "<tr>"
            + _td(f'{escape(d["path"])}<br><span class="muted">{escape(d["integration"])}</span>', "Path")
            + _td(meter + escape(free + pct), "Free")
            + "</tr>"
        )
    return _section("disk", "Free space", _table(["Path", "Free"], rows, "No disk space reported yet."))


def _ai(status: dict[str, Any]) -> str:
    ai = status["ai"]
    if not ai["enabled"]:
        text = "Assistant not configured."
    else:
        budget = f" of ${ai['budget_usd']:.2f}" if ai["budget_usd"] is not None else ""
        text = f"${ai['cost_usd']:.2f}{budget} in {ai['month']} · {ai['calls']} calls · {ai['tokens']:,} tokens"
    return _section("ai", "AI assistant", f"<p>{escape(text)}</p>")
