"""The daemon's clock: APScheduler jobs in the configured time zone, with their status in ``job_runs``.

Jobs (ids in brackets):

* ``sync:<server>`` — a full sync of each Plex server on ``plex.servers[].sync.schedule``;
* ``rule:<name>`` — each enabled rule with a ``schedule`` (rules without one run only from
  ``smartplexd plan``; ``smartplexd check`` warns about them);
* ``health`` every 5 minutes, ``retries`` (due deletion retries) every minute, ``retention`` daily at 04:30.

Cron expressions are read in ``config.timezone`` (``0 3 * * *`` is 03:00 Berlin time for
``timezone: Europe/Berlin``, across daylight-saving changes). Every run is recorded in ``job_runs`` (last
run, result, error, duration, next run) from the job's own thread, so ``smartplexd status`` in another
process sees it; :func:`job_status` reads it.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobEvent,
    SchedulerEvent,
)
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from smartplexd.store.db import open_store

log = logging.getLogger(__name__)

HEALTH_EVERY_MINUTES = 5
RETRIES_EVERY_MINUTES = 1
RETENTION_CRON = "30 4 * * *"
MISFIRE_GRACE_SECONDS = 3600
"""A job whose time passed while the machine slept still runs if it is less than an hour late."""


def _record(db_path: Any, job_id: str, **values: Any) -> None:
    """Upsert one ``job_runs`` row from whatever thread runs the job (one short-lived connection)."""
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    updates = ", ".join(f"{k} = excluded.{k}" for k in values)
    try:
        with open_store(db_path) as store:
            store.execute(
                f"INSERT INTO job_runs (job_id, {cols}) VALUES (?, {marks}) "
                f"ON CONFLICT (job_id) DO UPDATE SET {updates}",
                (job_id, *values.values()),
            )
    except Exception:  # status bookkeeping must never stop a job
        log.exception("could not record job status of %s", job_id)


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def _timed(db_path: Any, job_id: str, fn: Callable[..., Any], *args: Any) -> Callable[[], None]:
    def run() -> None:
        started = time.time()
        _record(db_path, job_id, last_run_at=started, last_status="running", last_error=None)
        status, error = "ok", None
        try:
            fn(*args)
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
            raise  # APScheduler logs it and fires EVENT_JOB_ERROR
        finally:
            _record(
                db_path,
                job_id,
                last_status=status,
                last_error=error,
                last_duration_ms=int((time.time() - started) * 1000),
            )

    run.__name__ = f"job_{job_id}"
    return run


def _rules(config: Any, rules: list[Any] | None) -> list[Any]:
    if rules is not None:
        return rules
    from smartplexd.rules.facts import registry
    from smartplexd.rules.models import load_rules
    from smartplexd.yamlsource import SourceErrors

    try:
        return load_rules(config.rule_paths, registry())
    except SourceErrors as exc:
        log.error("rules not scheduled; fix these first:\n%s", exc)
        return []


def build_scheduler(
    config: Any, jobs: dict[str, Callable[..., Any]], *, rules: list[Any] | None = None
) -> BackgroundScheduler:
    """A not yet started scheduler with every job of the module docstring that ``jobs`` provides.

    ``jobs`` maps ``sync`` (called with the server name), ``rules`` (called with the rule name when it
    takes an argument, else with none), ``health``, ``retries`` and ``retention`` to callables; a missing
    key means that job is not scheduled. ``rules`` defaults to the rules under ``config.rule_paths``.
    """
    tz = config.tz
    db_path = config.database_path
    scheduler = BackgroundScheduler(
        timezone=tz,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
    )
    descriptions: dict[str, str] = {}
    triggers: dict[str, Any] = {}

    def add(job_id: str, trigger: Any, description: str, fn: Callable[..., Any], *args: Any) -> None:
        scheduler.add_job(_timed(db_path, job_id, fn, *args), trigger, id=job_id, name=description)
        descriptions[job_id] = description
        triggers[job_id] = trigger

    if "sync" in jobs:
        for server in config.plex.servers:
            add(
                f"sync:{server.name}",
                CronTrigger.from_crontab(server.sync.schedule, timezone=tz),
                f"full sync of Plex server {server.name} ({server.sync.schedule})",
                jobs["sync"],
                server.name,
            )
    if "rules" in jobs:
        with_name = _takes_argument(jobs["rules"])
        for rule in _rules(config, rules):
            if not rule.enabled or not rule.schedule:
                continue
            args = (rule.name,) if with_name else ()
            add(
                f"rule:{rule.name}",
                CronTrigger.from_crontab(rule.schedule, timezone=tz),
                f"evaluate rule {rule.name} ({rule.schedule})",
                jobs["rules"],
                *args,
            )
    if "health" in jobs:
        add("health", IntervalTrigger(minutes=HEALTH_EVERY_MINUTES, timezone=tz), "integration health checks",
            jobs["health"])  # fmt: skip
    if "retries" in jobs:
        add("retries", IntervalTrigger(minutes=RETRIES_EVERY_MINUTES, timezone=tz), "due deletion retries",
            jobs["retries"])  # fmt: skip
    if "retention" in jobs:
        add("retention", CronTrigger.from_crontab(RETENTION_CRON, timezone=tz), "retention cleanup (daily)",
            jobs["retention"])  # fmt: skip

    def next_run(job_id: str) -> float | None:
        # From the trigger, not scheduler.get_job(): listeners run in worker threads, and get_job() waits
        # for the job store lock that shutdown(wait=True) holds while it waits for those threads.
        trigger = triggers.get(job_id)
        when = trigger.get_next_fire_time(None, datetime.now(tz)) if trigger is not None else None
        return when.timestamp() if when is not None else None

    def on_start(_event: SchedulerEvent) -> None:
        try:
            with open_store(db_path) as store, store.transaction():
                ids = list(descriptions)
                store.execute(
                    "DELETE FROM job_runs WHERE job_id NOT IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
                )
                for job_id, description in descriptions.items():
                    store.execute(
                        "INSERT INTO job_runs (job_id, description, next_run_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (job_id) DO UPDATE SET description = excluded.description, "
                        "next_run_at = excluded.next_run_at",
                        (job_id, description, next_run(job_id)),
                    )
        except Exception:
            log.exception("could not record the scheduled jobs")

    def on_job(event: JobEvent) -> None:
        values: dict[str, Any] = {"next_run_at": next_run(event.job_id)}
        if event.code == EVENT_JOB_MISSED:
            values.update(last_status="missed", last_error=f"missed its run at {event.scheduled_run_time}")
        _record(db_path, event.job_id, **values)

    scheduler.add_listener(on_start, EVENT_SCHEDULER_STARTED)
    scheduler.add_listener(on_job, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def job_status(store: Any) -> list[dict[str, Any]]:
    """Every scheduled job: description, next run, last run, last result and error (epoch seconds)."""
    return store.query(
        "SELECT job_id, description, next_run_at, last_run_at, last_status, last_error, last_duration_ms "
        "FROM job_runs ORDER BY next_run_at IS NULL, next_run_at, job_id"
    )
