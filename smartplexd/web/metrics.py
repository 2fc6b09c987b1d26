"""``GET /metrics``: Prometheus text exposition format 0.0.4, written by hand from the store.

Everything except the webhook answer counters comes from SQLite, so the numbers survive restarts and
agree with ``smartplexd status``. Series:

- ``smartplexd_sync_duration_seconds{server,kind}`` / ``smartplexd_sync_items{server,kind}``: the last
  finished sync per server and kind (gauges); ``smartplexd_syncs_total{server,status}``;
- ``smartplexd_deletions{status}``: deletion_events by status;
- ``smartplexd_webhooks_total{source,result}``: answers since start (accepted, duplicate, unauthorized,
  too_large, malformed, unavailable); ``smartplexd_webhook_events{source,status}``: stored rows by
  processing status;
- ``smartplexd_integration_up{name,plugin}``: 1 when the last health check said ok;
- ``smartplexd_retry_queue_depth``: cascade steps waiting for another attempt;
- ``smartplexd_ai_cost_usd_total{model}`` and ``smartplexd_ai_requests_total{model,status}``;
- ``smartplexd_up`` and ``smartplexd_start_time_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from smartplexd.store.db import Store
from smartplexd.web import DAEMON

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class Exposition:
    """Collects metric families; :meth:`text` renders them (one HELP/TYPE block per family)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help: str, samples: Iterable[tuple[dict[str, Any], float]]) -> None:
        self._lines.append(f"# HELP {name} {help}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def collect(store: Store, webhook_results: dict[tuple[str, str], int], start_time: float) -> str:
    """The whole exposition for one scrape."""
    out = Exposition()
    out.family("smartplexd_up", "gauge", "1 while the daemon is running.", [({}, 1)])
    out.family("smartplexd_start_time_seconds", "gauge", "When the daemon started (unix time).", [({}, start_time)])

    last = store.query(
        "SELECT s.server, s.kind, s.duration_ms, s.items_seen FROM sync_events s "
        "JOIN (SELECT server, kind, MAX(id) AS id FROM sync_events WHERE finished_at IS NOT NULL "
        "GROUP BY server, kind) m ON m.id = s.id ORDER BY s.server, s.kind"
    )
    out.family(
        "smartplexd_sync_duration_seconds",
        "gauge",
        "Duration of the last finished sync per server and kind.",
        [({"server": r["server"], "kind": r["kind"]}, (r["duration_ms"] or 0) / 1000) for r in last],
    )
    out.family(
        "smartplexd_sync_items",
        "gauge",
        "Items seen by the last finished sync per server and kind.",
        [({"server": r["server"], "kind": r["kind"]}, r["items_seen"]) for r in last],
    )
    syncs = store.query("SELECT server, status, COUNT(*) AS n FROM sync_events GROUP BY server, status ORDER BY 1, 2")
    out.family(
        "smartplexd_syncs_total",
        "counter",
        "Syncs recorded per server and status (within retention).",
        [({"server": r["server"], "status": r["status"]}, r["n"]) for r in syncs],
    )

    deletions = store.query("SELECT status, COUNT(*) AS n FROM deletion_events GROUP BY status ORDER BY status")
    out.family(
        "smartplexd_deletions",
        "gauge",
        "Deletions by status.",
        [({"status": r["status"]}, r["n"]) for r in deletions],
    )

    out.family(
        "smartplexd_webhooks_total",
        "counter",
        "Webhook requests answered since start, by source and result.",
        [({"source": s, "result": r}, n) for (s, r), n in sorted(webhook_results.items())],
    )
    stored = store.query(
        "SELECT source, status, COUNT(*) AS n FROM webhook_events GROUP BY source, status ORDER BY 1, 2"
    )
    out.family(
        "smartplexd_webhook_events",
        "gauge",
        "Stored webhooks by source and processing status (within retention).",
        [({"source": r["source"], "status": r["status"]}, r["n"]) for r in stored],
    )

    health = store.query("SELECT name, plugin, status FROM integration_health ORDER BY name")
    out.family(
        "smartplexd_integration_up",
        "gauge",
        "1 when the integration's last health check was ok.",
        [({"name": r["name"], "plugin": r["plugin"]}, 1 if r["status"] == "ok" else 0) for r in health],
    )

    depth = store.query_one(
        "SELECT COUNT(*) AS n FROM deletion_steps WHERE status IN ('pending', 'failed') AND next_attempt_at IS NOT NULL"
    )
    out.family(
        "smartplexd_retry_queue_depth",
        "gauge",
        "Cascade steps waiting for another attempt.",
        [({}, depth["n"] if depth else 0)],
    )

    ai = store.query(
        "SELECT model, status, COUNT(*) AS n, COALESCE(SUM(cost_usd), 0) AS cost FROM ai_usage "
        "GROUP BY model, status ORDER BY 1, 2"
    )
    cost: dict[str, float] = {}
    for r in ai:
        cost[r["model"]] = cost.get(r["model"], 0.0) + float(r["cost"])
    out.family(
        "smartplexd_ai_cost_usd_total",
        "counter",
        "Money spent on the AI assistant, by model.",
        [({"model": m}, c) for m, c in sorted(cost.items())],
    )
    out.family(
        "smartplexd_ai_requests_total",
        "counter",
        "Calls to the AI provider by model and status.",
        [({"model": r["model"], "status": r["status"]}, r["n"]) for r in ai],
    )
    return out.text()


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``."""
    daemon = request.app[DAEMON]
    results = dict(daemon.webhook_stats.results)
    text = await daemon.db_call(lambda store: collect(store, results, daemon.started_at))
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 when the database answers, 503 otherwise."""
    daemon = request.app[DAEMON]
    try:
        await daemon.db_call(lambda store: store.query_one("SELECT 1 AS ok"))
    except Exception as exc:  # sqlite3.Error, OSError: the only thing this endpoint reports
        return web.json_response({"status": "error", "error": f"database unreachable: {exc}"}, status=503)
    return web.json_response({"status": "ok"})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
