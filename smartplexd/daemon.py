"""``smartplexd run``: the long-running process (one asyncio loop, a few worker threads).

What runs:

- the aiohttp server on ``server.listen`` (:func:`smartplexd.web.app.create_app`);
- the scheduler (:func:`smartplexd.scheduler.build_scheduler`) with the jobs of ARCHITECTURE §1: a full
  sync per Plex server, rule evaluation (a plan that starts grace periods), health checks, due deletion
  retries; each job runs in a thread with its own Store;
- the webhook worker: processes stored webhooks (:mod:`smartplexd.webhook_processing`) as they arrive and
  whenever deferred ones come due;
- retention: hourly, deletes ``webhook_events``, ``sync_events``, ``events`` and unreferenced ``plans``
  older than ``retention.*`` (never the audit log, never deletion history).

On start the database is migrated, deletion intents a previous process left unfinished are resumed, and
webhooks stored but not processed are picked up. SIGTERM/SIGINT: stop accepting connections, let the
current step finish (bounded by :data:`SHUTDOWN_GRACE`), release this process's locks, exit 0. SIGHUP:
reload config and rules; an invalid new config (or rule) is logged with its file:line errors and the
old one keeps running; both outcomes are audited.

Parts that other modules provide (scheduler, sync, planner, deletion, health) are imported when used; a
missing one is logged once and its jobs are skipped, so the daemon still serves webhooks and the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from smartplexd import audit
from smartplexd import log as smartlog
from smartplexd.config import AppConfig, ConfigError, load_config
from smartplexd.events import EventBus, EventRecorder
from smartplexd.events import bus as default_bus
from smartplexd.notify import BusNotifier, notify, rule_report
from smartplexd.store.db import Store, open_store
from smartplexd.store.locks import LockHeld
from smartplexd.web import CONFIG
from smartplexd.web.webhooks import RedactingAccessLogger, WebhookIntake, WebhookStats
from smartplexd.webhook_processing import process_pending

log = logging.getLogger(__name__)
T = TypeVar("T")

SHUTDOWN_GRACE = 20.0
"""Seconds a stopping daemon waits for running work (a sync page, a cascade step) before it exits."""
WEBHOOK_POLL = 1.0
"""Seconds between looks for deferred webhooks that came due (new ones wake the worker at once)."""
RETENTION_EVERY = 3600.0
ACCESS_LOGGER = "smartplexd.access"


class StoreWorker:
    """One daemon thread that owns one :class:`Store` and runs submitted functions in order.

    ``await worker.call(fn)`` runs ``fn(store)`` in that thread. Quick store reads and writes from the event
    loop go through here so the loop never blocks on SQLite.
    """

    def __init__(self, db_path: str, name: str) -> None:
        self.db_path = db_path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> StoreWorker:
        self._thread.start()
        return self

    async def call(self, fn: Callable[[Store], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        store = Store(self.db_path)
        try:
            while (job := self._queue.get()) is not None:
                fn, future, loop = job
                try:
                    result, error = fn(store), None
                except BaseException as exc:
                    result, error = None, exc
                try:
                    loop.call_soon_threadsafe(_settle, future, result, error)
                except RuntimeError:
                    log.debug("event loop closed before a store call finished")
        finally:
            store.close()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def cleanup_retention(config: AppConfig, store: Store, now: float | None = None) -> dict[str, int]:
    """Delete what ``retention.*`` says is old enough; returns rows deleted per table.

    Only finished webhooks and syncs go; plans go only when no deletion, leaving-soon entry or request
    refers to them (deletion history and the audit log are kept forever).
    """
    now = time.time() if now is None else now
    r = config.retention
    deleted: dict[str, int] = {}
    with store.transaction():
        deleted["webhook_events"] = store.execute(
            "DELETE FROM webhook_events WHERE received_at < ? AND status IN ('processed', 'ignored', 'failed')",
            (now - r.webhook_events,),
        ).rowcount
        deleted["sync_events"] = store.execute(
            "DELETE FROM sync_events WHERE started_at < ? AND finished_at IS NOT NULL", (now - r.sync_events,)
        ).rowcount
        deleted["events"] = store.execute("DELETE FROM events WHERE ts < ?", (now - r.events,)).rowcount
        old_plans = (
            "SELECT id FROM plans WHERE created_at < ? "
            "AND id NOT IN (SELECT plan_id FROM deletion_events WHERE plan_id IS NOT NULL) "
            "AND id NOT IN (SELECT plan_id FROM leaving_soon WHERE plan_id IS NOT NULL) "
            "AND id NOT IN (SELECT plan_id FROM deletion_requests WHERE plan_id IS NOT NULL)"
        )
        cutoff = (now - r.plans,)
        store.execute(f"DELETE FROM plan_items WHERE plan_id IN ({old_plans})", cutoff)
        deleted["plans"] = store.execute(f"DELETE FROM plans WHERE id IN ({old_plans})", cutoff).rowcount
    return deleted


def load_rules(config: AppConfig) -> list[Any]:
    """The rules under ``config.rule_paths``; raises SourceErrors (file:line) when one is invalid."""
    from smartplexd.rules.facts import registry
    from smartplexd.rules.models import load_rules as load

    return list(load(config.rule_paths, registry()))


class Daemon:
    """The running smartplexd process. ``Daemon(config_path).run()`` returns the exit code.

    Attributes other parts of the web app may read (all from the event loop thread):

    - ``config`` (:class:`AppConfig`) and ``rules`` (list of loaded rules): replaced together on SIGHUP;
      ``config_path`` is the file they came from;
    - ``db_path`` (str), ``bus`` (:class:`EventBus`, the process-wide bus), ``started_at`` (unix time);
    - ``webhook_stats`` (:class:`~smartplexd.web.webhooks.WebhookStats`): answer counters by source/result;
    - ``intake`` (:class:`~smartplexd.web.webhooks.WebhookIntake`): the durable webhook writer;
    - ``scheduler``: the APScheduler instance from ``build_scheduler`` (None when unavailable);
    - ``stopping`` (bool): set once SIGTERM/SIGINT arrived.

    Methods: ``await db_call(fn)`` runs ``fn(store)`` on the daemon's store thread (quick reads/writes);
    ``await run_blocking(fn)`` runs ``fn(store)`` in a new thread with its own Store (long work: plans,
    applies); ``await start_sync(servers, actor)`` starts full syncs in the background; ``reload()``
    re-reads config and rules (what SIGHUP does) and returns whether the new config was taken.
    """

    def __init__(self, config_path: str | Path, *, bus: EventBus | None = None) -> None:
        self.config_path = str(config_path)
        self.config: AppConfig = load_config(self.config_path)
        self.rules: list[Any] = load_rules(self.config)
        self.db_path = str(self.config.database_path)
        self.bus = bus or default_bus
        self.started_at = time.time()
        self.webhook_stats = WebhookStats()
        self.intake: WebhookIntake | None = None
        self.scheduler: Any = None
        self.stopping = False
        self.app: web.Application | None = None
        self._store_worker: StoreWorker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._webhooks_due: asyncio.Event | None = None
        self._threads: set[threading.Thread] = set()

    # --- running ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns 0 after a graceful stop."""
        smartlog.setup(self.config.log_level)
        smartlog.register_secrets(self.config.secret_values())
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        self._webhooks_due = asyncio.Event()
        with open_store(self.db_path) as store:  # migrates
            audit.record(store, "daemon", "daemon.started", None, {"pid": os.getpid(), "config": self.config_path})
        self._recorder = EventRecorder(self.db_path, self.bus)
        self._recorder.resume_ids()
        self._recorder.start()
        self._notifier = BusNotifier(lambda: self.config, self.db_path)
        unsubscribe_notifier = self.bus.subscribe(self._notifier)
        self._store_worker = StoreWorker(self.db_path, "store").start()
        self.intake = WebhookIntake(self.db_path, on_stored=self._webhooks_due.set).start()
        await self._resume_deletions()

        self.app = _create_app(self)
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log_class=RedactingAccessLogger,
            access_log=logging.getLogger(ACCESS_LOGGER),
            shutdown_timeout=SHUTDOWN_GRACE / 2,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.server.host, self.config.server.port, reuse_address=True)
        await site.start()
        log.info("smartplexd listening on http://%s (pid %d)", self.config.server.listen, os.getpid())

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.scheduler = self._start_scheduler()
        # Health (and the disk space storage rules need) is known at once, not five minutes after start.
        asyncio.ensure_future(asyncio.to_thread(self.jobs()["health"])).add_done_callback(_log_background_failure)
        tasks = [asyncio.create_task(self._webhook_loop(), name="webhooks")]
        if self.scheduler is None:
            # Without the scheduler, retention still has to run.
            tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        await self._stop_event.wait()
        log.info("stopping: no new connections; finishing the current work")
        await runner.cleanup()  # stops listening, lets in-flight requests finish (bounded)
        await self._stop_scheduler()
        self._webhooks_due.set()  # the worker sees `stopping` after its current event and returns
        try:
            await asyncio.wait_for(asyncio.shield(tasks[0]), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("webhook processing did not stop in time; unprocessed webhooks stay stored")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.intake.close)
        await self._wait_threads(SHUTDOWN_GRACE)
        unsubscribe_notifier()
        await asyncio.to_thread(self._notifier.close)
        await asyncio.to_thread(self._recorder.close)
        released = await self.db_call(_release_own_locks)
        await self.db_call(
            lambda store: audit.record(store, "daemon", "daemon.stopped", None, {"released_locks": released})
        )
        self._store_worker.stop()
        log.info("stopped (released %d lock(s))", len(released))
        return 0

    def request_stop(self) -> None:
        """Begin a graceful stop (what SIGTERM and SIGINT do)."""
        if self.stopping:
            return
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()

    # --- reload -------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file and the rules; keep the running ones when either is invalid."""
        from smartplexd.yamlsource import SourceErrors

        try:
            config = load_config(self.config_path)
            rules = load_rules(config)
        except (ConfigError, SourceErrors) as exc:
            log.error("reload rejected; the previous configuration keeps running:\n%s", exc)
            self._audit_soon("config.reload_rejected", {"errors": str(exc).splitlines()[:20]})
            return False
        if config.server.listen != self.config.server.listen:
            log.warning("server.listen changed to %s: takes effect after a restart", config.server.listen)
        if str(config.database_path) != self.db_path:
            log.warning("database changed to %s: takes effect after a restart", config.database_path)
        smartlog.register_secrets(config.secret_values())
        self.config, self.rules = config, rules
        if self.app is not None:
            # The app is frozen once started; its CONFIG entry is ours to swap (handlers read it per request).
            self.app._state[CONFIG] = config
        if self.scheduler is not None:
            self._shutdown_scheduler(wait=False)
            self.scheduler = self._start_scheduler()
        log.info("configuration reloaded from %s (%d rule(s))", self.config_path, len(rules))
        self._audit_soon("config.reloaded", {"rules": [getattr(r, "name", "?") for r in rules]})
        return True

    def _audit_soon(self, action: str, details: dict[str, Any]) -> None:
        if self._loop is None or self._store_worker is None:
            return
        worker = self._store_worker
        self._loop.create_task(worker.call(lambda store: audit.record(store, "daemon", action, None, details)))

    # --- helpers for the web layer -----------------------------------------------------------------

    async def db_call(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the daemon's store thread."""
        assert self._store_worker is not None
        return await self._store_worker.call(fn)

    async def run_blocking(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` in a new thread with its own Store (closed afterwards)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        path = self.db_path

        def body() -> None:
            result, error = None, None
            try:
                with Store(path) as store:
                    result = fn(store)
            except BaseException as exc:
                error = exc
            finally:
                self._threads.discard(threading.current_thread())
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:
                log.debug("event loop closed before background work finished")

        thread = threading.Thread(target=body, name="work", daemon=True)
        self._threads.add(thread)
        thread.start()
        return await future

    def _sync_then_enrich(self, store: Store, server: str) -> Any:
        """A full sync of ``server`` and, when it finished ok, a refresh of every item's facts: facts of items
        that were just added would otherwise stay unknown (never selected) until some later refresh."""
        from smartplexd.enrich import enrich_all
        from smartplexd.plex.sync import sync_server

        result = sync_server(self.config, store, server, bus=self.bus)
        if result.status != "ok":
            log.warning("sync of %s ended %s: %s", server, result.status, result.error)
            return result
        enrich_all(self.config, store, bus=self.bus)
        return result

    async def start_sync(self, servers: list[str], actor: str) -> list[dict[str, Any]]:
        """Start a full sync of each server in the background; returns ``[{"server", "sync_id"}]`` once each
        has its ``sync_events`` row. Raises :class:`LockHeld` when every one of them is already running."""
        from smartplexd.plex.sync import lock_name
        from smartplexd.store import locks

        held = await self.db_call(lambda store: [locks.holder(store, lock_name(s)) for s in servers])
        now = time.time()
        running = [h for h in held if h is not None and h["expires_at"] > now]
        if len(running) == len(servers):
            h = running[0]
            raise LockHeld(h["name"], h["owner"], h["acquired_at"], h["details"])
        before = await self.db_call(lambda store: store.query_one("SELECT COALESCE(MAX(id), 0) AS n FROM sync_events"))
        last_id = before["n"] if before else 0
        futures = {}
        for name in servers:
            futures[name] = asyncio.ensure_future(
                self.run_blocking(lambda store, name=name: self._sync_then_enrich(store, name))
            )
        started: list[dict[str, Any]] = []
        lock_errors: list[LockHeld] = []
        for name, future in futures.items():
            sync_id = await self._wait_for_sync_row(name, last_id, future)
            entry: dict[str, Any] = {"server": name, "sync_id": sync_id}
            if future.done() and future.exception() is not None:
                exc = future.exception()
                if isinstance(exc, LockHeld):
                    lock_errors.append(exc)
                    entry["error"] = str(exc)
                else:
                    entry["error"] = f"{type(exc).__name__}: {smartlog.mask(str(exc))}"
            else:
                future.add_done_callback(_log_background_failure)
            started.append(entry)
        if lock_errors and len(lock_errors) == len(servers):
            raise lock_errors[0]
        return started

    async def _wait_for_sync_row(self, server: str, after_id: int, future: asyncio.Future[Any]) -> int | None:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            row = await self.db_call(
                lambda store: store.query_one(
                    "SELECT id FROM sync_events WHERE server = ? AND id > ? ORDER BY id LIMIT 1", (server, after_id)
                )
            )
            if row is not None:
                return int(row["id"])
            if future.done():
                return None
            await asyncio.sleep(0.02)
        return None

    # --- scheduled work -----------------------------------------------------------------------------

    def _job(self, name: str, fn: Callable[..., Any]) -> Callable[..., None]:
        """A scheduler job calling ``fn(store, *args)`` with its own Store; skipped while stopping.

        A job that finds its lock held (a sync or executor already running) is skipped, not failed; other
        errors propagate so the scheduler logs them and ``job_runs`` shows the failure.
        """

        def job(*args: Any) -> None:
            if self.stopping:
                return
            thread = threading.current_thread()
            self._threads.add(thread)
            try:
                with Store(self.db_path) as store:
                    fn(store, *args)
            except LockHeld as exc:
                log.info("job %s skipped: %s", name, exc)
            finally:
                self._threads.discard(thread)

        job.__name__ = f"job_{name}"
        return job

    def jobs(self) -> dict[str, Callable[..., None]]:
        """The callables handed to ``build_scheduler``: ``sync(server)``, ``rules(rule name)``, ``health()``,
        ``retries()`` and ``retention()``; each opens its own Store."""
        from smartplexd.deletion import process_due
        from smartplexd.health import check_health
        from smartplexd.rules.planner import make_plan

        def sync(store: Store, server: str) -> None:
            self._sync_then_enrich(store, server)

        def rules(store: Store, rule_name: str) -> None:
            plan = make_plan(
                self.config, store, self.rules, actor="scheduler", rule_names=[rule_name], start_grace=True
            )
            rule = next((r for r in self.rules if r.name == rule_name), None)
            if rule is not None and rule.action.type == "notify":
                selected = [e for e in plan.items if e.rule == rule_name and e.status == "selected"]
                if selected:
                    notify(self.config, rule_report(rule_name, rule.description, selected), store=store)

        def health(store: Store) -> None:
            check_health(self.config, store, bus=self.bus)

        def retries(store: Store) -> None:
            process_due(self.config, store, actor="scheduler")

        def retention(store: Store) -> None:
            deleted = cleanup_retention(self.config, store)
            if any(deleted.values()):
                log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in deleted.items() if n))

        return {
            "sync": self._job("sync", sync),
            "rules": self._job("rules", rules),
            "health": self._job("health", health),
            "retries": self._job("retries", retries),
            "retention": self._job("retention", retention),
        }

    def _start_scheduler(self) -> Any:
        from smartplexd.scheduler import build_scheduler

        scheduler = build_scheduler(self.config, self.jobs(), rules=self.rules)
        scheduler.start()
        return scheduler

    def _shutdown_scheduler(self, wait: bool) -> None:
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown(wait=wait)
            except Exception:  # already stopped: nothing left to stop
                log.debug("scheduler shutdown", exc_info=True)

    async def _stop_scheduler(self) -> None:
        if self.scheduler is None:
            return
        # shutdown(wait=True) blocks until running jobs return; bounded so a stuck job cannot hang the exit.
        thread = threading.Thread(target=self._shutdown_scheduler, args=(True,), daemon=True)
        thread.start()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _wait_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(t.is_alive() for t in list(self._threads)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = [t.name for t in self._threads if t.is_alive()]
        if left:
            log.warning("exiting with %d unfinished background task(s): %s", len(left), ", ".join(left))

    async def _resume_deletions(self) -> None:
        from smartplexd.deletion import resume_unfinished as resume

        config = self.config
        try:
            result = await self.run_blocking(lambda store: resume(config, store, actor="daemon"))
        except Exception:
            log.exception("resuming unfinished deletions failed; the retry job will try again")
            return
        counts = result.counts() if hasattr(result, "counts") else {}
        if counts:
            log.info("resumed unfinished deletions: %s", counts)

    async def _webhook_loop(self) -> None:
        """Process stored webhooks: at start (left over from before), on arrival, and when deferred ones
        come due. One batch at a time in the worker thread; a stop waits for the current event only."""
        assert self._webhooks_due is not None
        worker = StoreWorker(self.db_path, "webhooks").start()
        try:
            while not self.stopping:
                stats = await worker.call(self._process_webhooks)
                for error in stats.errors:
                    log.warning("%s", error)
                if stats.total >= 100:
                    continue  # more are waiting
                self._webhooks_due.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._webhooks_due.wait(), WEBHOOK_POLL)
        finally:
            await asyncio.to_thread(worker.stop, SHUTDOWN_GRACE)

    def _process_webhooks(self, store: Store) -> Any:
        return process_pending(self.config, store, limit=100, stop=lambda: self.stopping)

    async def _retention_loop(self) -> None:
        job = self.jobs()["retention"]
        while not self.stopping:
            try:
                await asyncio.to_thread(job)
            except Exception:
                log.exception("retention cleanup failed; trying again in an hour")
            await asyncio.sleep(RETENTION_EVERY)


def _log_background_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("background sync failed: %s", smartlog.mask(f"{type(exc).__name__}: {exc}"))


def _release_own_locks(store: Store) -> list[str]:
    rows = store.query("SELECT name FROM locks WHERE pid = ? AND host = ?", (os.getpid(), socket.gethostname()))
    store.execute("DELETE FROM locks WHERE pid = ? AND host = ?", (os.getpid(), socket.gethostname()))
    return [r["name"] for r in rows]


def _create_app(daemon: Daemon) -> web.Application:
    from smartplexd.web.app import create_app

    return create_app(daemon)
