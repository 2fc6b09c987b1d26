"""Run simulated servers on free loopback ports, in this event loop or in a background thread.

Tests and benchmarks use :class:`ThreadedServer` so that synchronous code (the CLI, httpx, plexapi) can
talk to a real HTTP server while the test body stays synchronous::

    with ThreadedServer(plex.create_app(universe)) as srv:
        PlexServer(srv.url, token)

Servers only ever bind 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

from aiohttp import web

HOST = "127.0.0.1"


async def start_app(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    """Start ``app`` on 127.0.0.1 (port 0 = a free one); returns the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[union-attr]
    bound_port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{HOST}:{bound_port}"


class ThreadedServer:
    """An aiohttp app served from its own event loop in a daemon thread."""

    def __init__(self, app: web.Application, port: int = 0) -> None:
        self.app = app
        self.port = port
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="sim-server", daemon=True)

    def start(self) -> ThreadedServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_app(self.app, self.port), self._loop)
        self._runner, self.url = fut.result(timeout=10)
        return self

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop thread (to mutate its state without races)."""

        async def _run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(_run(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
