"""The aiohttp application: webhooks, admin API, SSE events, status page, /metrics.

Handlers only read the store or call the same functions the CLI calls. Shared state lives on the app
under these keys (set by :func:`smartplexd.web.app.create_app`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smartplexd.events import EventBus

CONFIG = web.AppKey("config", Any)  # smartplexd.config.AppConfig (replaced on SIGHUP reload)
DB_PATH = web.AppKey("db_path", str)  # open a Store per thread/handler with smartplexd.store.open_store
BUS = web.AppKey("bus", EventBus)
DAEMON = web.AppKey("daemon", Any)  # smartplexd.daemon.Daemon: scheduler, running tasks, reload()
