"""Schedules fire in the configured time zone, and every run is recorded for `status`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import time_machine
from apscheduler.events import EVENT_JOB_ERROR
from rules_helpers import rules, seed_pm, seed_registry, write_config

from smartplexd.scheduler import build_scheduler, job_status
from smartplexd.store import open_store

PM = seed_pm()
REG = seed_registry(PM)
RULES = """
- name: nightly
  schedule: "0 3 * * *"
  when: {fact: plex.view_count, op: ">=", value: 1}
- name: unscheduled
  when: {fact: plex.view_count, op: ">=", value: 1}
- name: disabled
  enabled: false
  schedule: "0 1 * * *"
  when: {fact: plex.view_count, op: ">=", value: 1}
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_jobs_and_next_runs_follow_the_configured_timezone(tmp_path: Path) -> None:
    config = write_config(tmp_path, PM, integrations=())  # timezone: Europe/Berlin, sync "0 */6 * * *"
    calls: list[Any] = []
    jobs = {name: (lambda *a, n=name: calls.append((n, *a))) for name in ("health", "retries", "retention")}
    jobs["sync"] = lambda server: calls.append(("sync", server))
    jobs["rules"] = lambda rule_name: calls.append(("rules", rule_name))
    # 2024-06-01 00:30 UTC is 02:30 in Berlin (CEST, UTC+2).
    with time_machine.travel(utc(2024, 6, 1, 0, 30), tick=False):
        scheduler = build_scheduler(config, jobs, rules=rules(RULES, REG))
        scheduler.start(paused=True)
        try:
            nxt = {job.id: job.next_run_time for job in scheduler.get_jobs()}
        finally:
            scheduler.shutdown(wait=False)
    assert set(nxt) == {"sync:home", "rule:nightly", "health", "retries", "retention"}
    assert nxt["rule:nightly"].astimezone(UTC) == utc(2024, 6, 1, 1, 0)  # 03:00 Berlin
    assert nxt["sync:home"].astimezone(UTC) == utc(2024, 6, 1, 4, 0)  # 06:00 Berlin
    assert nxt["retention"].astimezone(UTC) == utc(2024, 6, 1, 2, 30)  # 04:30 Berlin
    assert str(nxt["rule:nightly"].tzinfo) == "Europe/Berlin"
    store = open_store(config.database_path)
    status = {row["job_id"]: row for row in job_status(store)}
    store.close()
    assert status["rule:nightly"]["next_run_at"] == utc(2024, 6, 1, 1, 0).timestamp()
    assert status["rule:nightly"]["description"] == "evaluate rule nightly (0 3 * * *)"
    # In winter Berlin is UTC+1: the same cron is an hour later in UTC.
    with time_machine.travel(utc(2024, 12, 1, 0, 30), tick=False):
        scheduler = build_scheduler(config, jobs, rules=rules(RULES, REG))
        scheduler.start(paused=True)
        try:
            assert scheduler.get_job("rule:nightly").next_run_time.astimezone(UTC) == utc(2024, 12, 1, 2, 0)
        finally:
            scheduler.shutdown(wait=False)


def test_a_rule_job_fires_at_its_local_time_and_records_its_result(tmp_path: Path) -> None:
    config = write_config(tmp_path, PM, integrations=())
    fired = threading.Event()
    seen: list[str] = []

    def evaluate(rule_name: str) -> None:
        seen.append(rule_name)
        fired.set()

    def failing() -> None:
        raise RuntimeError("health check exploded")

    # One second before 03:00 Berlin: the scheduler (not the test) waits for the cron time to arrive.
    with time_machine.travel(utc(2024, 6, 1, 0, 59, 59), tick=True):
        scheduler = build_scheduler(config, {"rules": evaluate}, rules=rules(RULES, REG))
        scheduler.start()
        try:
            assert fired.wait(10), "the 03:00 Berlin job did not fire"
        finally:
            scheduler.shutdown(wait=True)
    assert seen == ["nightly"]
    store = open_store(config.database_path)
    (row,) = [r for r in job_status(store) if r["job_id"] == "rule:nightly"]
    assert row["last_status"] == "ok" and row["last_error"] is None
    assert utc(2024, 6, 1, 1, 0).timestamp() <= row["last_run_at"] < utc(2024, 6, 1, 1, 1).timestamp()
    assert row["next_run_at"] == utc(2024, 6, 2, 1, 0).timestamp()
    store.close()

    failed = threading.Event()
    with time_machine.travel(utc(2024, 6, 1, 0, 59, 59), tick=True):
        scheduler = build_scheduler(config, {"health": failing})
        scheduler.add_listener(lambda e: failed.set(), EVENT_JOB_ERROR)
        scheduler.start()
        try:
            scheduler.get_job("health").modify(next_run_time=datetime.now(UTC))
            assert failed.wait(10)
        finally:
            scheduler.shutdown(wait=True)
    store = open_store(config.database_path)
    rows = {r["job_id"]: r for r in job_status(store)}
    store.close()
    assert "rule:nightly" not in rows  # jobs that are no longer scheduled are forgotten
    assert rows["health"]["last_status"] == "error"
    assert rows["health"]["last_error"] == "RuntimeError: health check exploded"


def test_a_rules_job_without_a_parameter_is_called_for_each_scheduled_rule(tmp_path: Path) -> None:
    config = write_config(tmp_path, PM, integrations=())
    scheduler = build_scheduler(config, {"rules": lambda: None}, rules=rules(RULES, REG))
    assert [j.id for j in scheduler.get_jobs()] == ["rule:nightly"]
    assert scheduler.get_jobs()[0].args == ()
