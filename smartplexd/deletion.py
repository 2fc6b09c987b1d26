"""The deletion executor: confirmed, re-checked, cascaded, retried, crash-safe, reversible where possible.

This is the only module that deletes anything. The safety model (ARCHITECTURE §5, ``docs/safety.md``):

* :func:`apply_plan` refuses (:class:`~smartplexd.errors.Refused`, exit 4, an audit entry
  ``deletion.refused``) unless ``deletion.enabled`` is true, the confirmation is exactly ``DELETE``, it is
  inside ``deletion.window`` (or ``now=True``), the plan exists and is still a draft, and no other executor
  holds the cross-process ``executor`` lock.
* Intents first: every selected plan item becomes a ``deletion_events`` row (``pending``) with one
  ``deletion_steps`` row per side effect, written with their audit entries in one transaction before
  anything is touched. Steps run in cascade order — plugin targets (Overseerr request 10, Sonarr/Radarr
  20), then Plex (30), then the local tombstone (40) — so nothing can be re-downloaded in between.
* Before the first step an item is re-checked against fresh data: still in Plex, not played since the
  plan, not labelled keep, still matching its rule, the integrations it needs healthy. Otherwise it is
  ``skipped`` with the reason and nothing happens to it.
* Each step is marked ``running`` (attempts + 1) before its side effect and ``done``/``failed``/``skipped``
  after. A failed step stops the item's cascade (later steps do not run); while it has a
  ``next_attempt_at`` it sits in the persistent retry queue (exponential backoff, run by
  :func:`process_due`) and its deletion is ``partial``; after ``retry.max_attempts`` its
  ``next_attempt_at`` is cleared and the deletion is ``failed``. Steps are idempotent ("already gone"
  counts as done), so a step that was ``running`` when the process died is simply run again by
  :func:`resume_unfinished`.
* Deletion statuses: ``pending`` → ``running`` → ``done`` | ``partial`` (a step waits for a retry) |
  ``failed`` (a step gave up) | ``skipped`` (re-check said no; nothing was done).
* Plex answering 401 stops the whole run at once: nothing further is deleted, the remaining intents are
  skipped, and the caller exits 5 (:attr:`RunResult.unauthorized`).

The public functions are synchronous (the CLI calls them directly; the daemon from a worker thread, each
thread with its own :class:`~smartplexd.store.db.Store`). Hooks that return awaitables are awaited on a
private event loop, so do not call these functions from a thread that runs an event loop.

Test hook: when the environment variable ``SMARTPLEXD_CRASH_AFTER_STEP=N`` is set, the process calls
``os._exit(137)`` right after the side effect of the N-th step it runs (counting from 1) and before that step
is marked done; ``N=0`` exits right after the intents are written. The crash-injection tests use it to
prove that a ``kill -9`` at any point loses nothing. It has no other use; never set it in production.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tenacity import RetryCallState, wait_exponential

from smartplexd import audit
from smartplexd.errors import PlexUnauthorized, Refused, UsageError
from smartplexd.events import bus
from smartplexd.model import CascadeTarget, Health, MediaItem, Notification, PluginContext, StepResult, StepStatus
from smartplexd.plugins import first_result
from smartplexd.store import locks
from smartplexd.store.db import Store
from smartplexd.units import format_size

log = logging.getLogger(__name__)

CONFIRM_WORD = "DELETE"
EXECUTOR_LOCK = "executor"
LOCK_TTL = 900.0
CRASH_ENV = "SMARTPLEXD_CRASH_AFTER_STEP"

PLEX_ORDER = 30
LOCAL_ORDER = 40

FINAL = ("done", "failed", "skipped")
"""Deletion statuses nothing happens to any more (a ``failed`` one can still be retried by hand)."""


# --- results -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeletionOutcome:
    """Where one deletion ended up after a run."""

    id: int
    title: str
    status: str
    reason: str | None = None
    bytes_freed: int = 0


@dataclass(slots=True)
class RunResult:
    """What one executor run (apply, retry, due retries, resume) did.

    ``unauthorized`` names the Plex server that rejected its token (the run stopped there; exit 5).
    ``busy`` is true when another executor held the lock and this run did nothing (process_due only).
    """

    plan_id: int | None = None
    deletions: list[DeletionOutcome] = field(default_factory=list)
    unauthorized: str | None = None
    busy: bool = False

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.deletions:
            out[d.status] = out.get(d.status, 0) + 1
        return out

    @property
    def bytes_freed(self) -> int:
        return sum(d.bytes_freed for d in self.deletions)

    @property
    def exit_code(self) -> int:
        """5 when Plex rejected the token, 3 when any deletion ended partial or failed, else 0."""
        from smartplexd.errors import EXIT_OK, EXIT_PARTIAL, EXIT_PLEX_UNAUTHORIZED

        if self.unauthorized:
            return EXIT_PLEX_UNAUTHORIZED
        if any(d.status in ("partial", "failed") for d in self.deletions):
            return EXIT_PARTIAL
        return EXIT_OK


@dataclass(slots=True)
class RestoreOutcome:
    deletion_id: int
    status: str  # ok | partial | failed
    results: list[dict[str, Any]] = field(default_factory=list)


# --- time, window, backoff ----------------------------------------------------------------------------


def in_window(window: str | None, tz: Any, at: float | None = None) -> bool:
    """Whether ``at`` (epoch seconds, default now) is inside ``HH:MM-HH:MM`` local time in ``tz``.

    A window whose end is before its start spans midnight (``22:00-02:00``); ``None`` means any time.
    """
    if not window:
        return True
    start, end = window.split("-")
    local = datetime.fromtimestamp(time.time() if at is None else at, tz).strftime("%H:%M")
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def backoff_seconds(retry_cfg: Any, attempts: int, step_id: int) -> float:
    """Seconds before attempt ``attempts + 1`` of a step: tenacity's exponential wait plus up to 10 % jitter.

    The jitter is derived from the step id and the attempt number rather than drawn at random, so many
    steps that failed together (Radarr was down) do not all come back in the same second, and a test can
    predict the schedule.
    """
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    base = float(wait_exponential(multiplier=retry_cfg.initial_backoff, max=retry_cfg.max_backoff)(state))
    jitter = random.Random(f"{step_id}:{attempts}").uniform(0.0, 0.1) * base
    return min(base + jitter, float(retry_cfg.max_backoff))


# --- reading -------------------------------------------------------------------------------------------


def _decode(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


def get_deletion(store: Store, deletion_id: int) -> dict[str, Any] | None:
    """One deletion with its ``steps`` (JSON columns decoded), or None."""
    row = store.query_one("SELECT * FROM deletion_events WHERE id = ?", (deletion_id,))
    if row is None:
        return None
    _decode(row, "snapshot")
    row["steps"] = [
        _decode(s, "data", "result")
        for s in store.query("SELECT * FROM deletion_steps WHERE deletion_id = ? ORDER BY seq", (deletion_id,))
    ]
    return row


def _newest(store: Store, columns: str, status: str | None, limit: int) -> list[dict[str, Any]]:
    """``columns`` of at most ``limit`` deletion_events rows, newest first; only ``status`` ones if given."""
    sql = f"SELECT {columns} FROM deletion_events"
    params: list[Any] = []
    if status:
        sql += " WHERE status = ?"
        params.append(status)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return store.query(sql, params)


def history(store: Store, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Deletions, newest first, each with its steps; ``status`` filters (done, partial, failed, skipped...)."""
    out = []
    for row in _newest(store, "id", status, limit):
        deletion = get_deletion(store, row["id"])
        assert deletion is not None
        deletion["snapshot"] = {k: v for k, v in deletion["snapshot"].items() if k != "facts"}
        out.append(deletion)
    return out


def history_summaries(store: Store, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Like :func:`history` without snapshots, step data and results (what ``GET /api/deletions`` lists);
    the steps of all rows are read in one query."""
    rows = _newest(
        store,
        "id, plan_id, item_id, server, rating_key, title, rule, action, status, reason, actor, created_at, "
        "updated_at, finished_at, bytes_freed",
        status,
        limit,
    )
    if rows:
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        steps: dict[int, list[dict[str, Any]]] = {}
        for s in store.query(
            f"SELECT deletion_id, seq, plugin, target, action, status, attempts, next_attempt_at, last_error, "
            f"finished_at FROM deletion_steps WHERE deletion_id IN ({marks}) ORDER BY deletion_id, seq",
            ids,
        ):
            steps.setdefault(s.pop("deletion_id"), []).append(s)
        for r in rows:
            r["steps"] = steps.get(r["id"], [])
    return rows


def plan_summary(store: Store, plan_id: int) -> dict[str, Any] | None:
    """What applying the plan would act on (for the confirmation prompt): items, bytes, per action."""
    plan = store.query_one("SELECT * FROM plans WHERE id = ?", (plan_id,))
    if plan is None:
        return None
    rows = store.query(
        "SELECT action, COUNT(*) AS items, COALESCE(SUM(bytes), 0) AS bytes FROM plan_items "
        "WHERE plan_id = ? AND status = 'selected' GROUP BY action",
        (plan_id,),
    )
    return {
        "id": plan_id,
        "status": plan["status"],
        "created_at": plan["created_at"],
        "items": sum(r["items"] for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
        "actions": {r["action"]: {"items": r["items"], "bytes": r["bytes"]} for r in rows},
    }


# --- the checks before anything runs -------------------------------------------------------------------


def _refuse(store: Store, actor: str, target: str | None, reason: str) -> Refused:
    audit.record(store, actor, "deletion.refused", target, {"reason": reason})
    return Refused(reason)


def check_can_apply(config: Any, store: Store, plan_id: int, *, actor: str, now: bool = False) -> dict[str, Any]:
    """The checks that need no confirmation: deletion enabled, inside the window, the plan is a draft.

    Raises :class:`Refused` (and records ``deletion.refused``) when one fails; returns the plan summary.
    The CLI calls this before it prompts for ``DELETE``; :func:`apply_plan` calls it again.
    """
    target = f"plan:{plan_id}"
    deletion = config.deletion
    if not deletion.enabled:
        raise _refuse(
            store,
            actor,
            target,
            "deletion is disabled (deletion.enabled is false in the config); `smartplexd plan` shows what "
            "would be deleted. Set deletion.enabled: true to allow apply.",
        )
    if not now and not in_window(deletion.window, config.tz):
        local = datetime.now(config.tz).strftime("%H:%M")
        raise _refuse(
            store,
            actor,
            target,
            f"outside the deletion window {deletion.window} ({config.timezone}; it is {local} there). "
            "Wait for the window, or pass --now to apply anyway.",
        )
    summary = plan_summary(store, plan_id)
    if summary is None:
        raise _refuse(store, actor, target, f"plan {plan_id} does not exist (`smartplexd plan` makes one)")
    if summary["status"] != "draft":
        raise _refuse(
            store,
            actor,
            target,
            f"plan {plan_id} is {summary['status']}, not a draft: a plan is applied once. Make a new plan.",
        )
    return summary


def apply_plan(
    config: Any, store: Store, plan_id: int, *, actor: str, confirm: str | None, now: bool = False, pm: Any = None
) -> RunResult:
    """Delete what plan ``plan_id`` selected, with every safety check of the module docstring.

    ``confirm`` must be exactly ``"DELETE"``; ``now=True`` ignores ``deletion.window``. Raises
    :class:`Refused` when a check says no (nothing is done). Returns the run's :class:`RunResult`; its
    ``exit_code`` is what the CLI exits with (3 partial/failed, 5 Plex token rejected).
    """
    target = f"plan:{plan_id}"
    check_can_apply(config, store, plan_id, actor=actor, now=now)
    if confirm != CONFIRM_WORD:
        given = "no confirmation" if not confirm else f"the confirmation {confirm!r}"
        raise _refuse(
            store,
            actor,
            target,
            f"{given} is not {CONFIRM_WORD}: type DELETE at the prompt or pass --confirm DELETE. Nothing was deleted.",
        )
    lock = _take_lock(store, actor, target, {"plan_id": plan_id, "actor": actor})
    try:
        with _Run(config, store, actor, pm, lock) as run:
            # The lock is held: re-read the plan so two appliers queued on the lock cannot both apply it.
            plan = store.query_one("SELECT status FROM plans WHERE id = ?", (plan_id,))
            if plan is None or plan["status"] != "draft":
                raise _refuse(store, actor, target, f"plan {plan_id} was applied meanwhile; make a new plan")
            run.result.plan_id = plan_id
            ids = run.write_intents(plan_id, window_override=now)
            _maybe_crash_after_intents()
            run.execute(ids)
            with store.transaction():
                _settle_plans(store)
                audit.record(store, actor, "plan.applied", target, run.summary())
        run.notify_summary()
        return run.result
    finally:
        lock.release()


def _take_lock(store: Store, actor: str, target: str | None, details: dict[str, Any]) -> locks.Lock:
    # The owner is unique per run, not per process, so two threads of the daemon cannot share the lock.
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        return locks.acquire(store, EXECUTOR_LOCK, owner=owner, ttl=LOCK_TTL, details=details)
    except locks.LockHeld as exc:
        raise _refuse(store, actor, target, f"the deletion executor is already running: {exc}") from None


# --- the queue: due retries, resume after a crash, forced retries ---------------------------------------


def _unfinished_ids(store: Store, config: Any, at: float) -> list[int]:
    """Deletions the executor owes work: orphaned ``running`` ones, ``pending`` intents allowed to start now
    (inside the window, or written by an apply with ``--now``), ``partial`` ones with a step due."""
    inside = in_window(config.deletion.window, config.tz, at)
    rows = store.query(
        "SELECT id, status, snapshot FROM deletion_events WHERE status IN ('running', 'pending', 'partial') ORDER BY id"
    )
    out = []
    for row in rows:
        if row["status"] == "running":
            out.append(row["id"])
        elif row["status"] == "pending":
            if inside or json.loads(row["snapshot"]).get("window_override"):
                out.append(row["id"])
        elif store.query_one(
            "SELECT 1 FROM deletion_steps WHERE deletion_id = ? AND status = 'failed' AND next_attempt_at <= ?",
            (row["id"], at),
        ):
            out.append(row["id"])
    return out


def _settle_plans(store: Store) -> None:
    """Mark ``applying`` plans ``applied`` once none of their intents is still pending or running."""
    store.execute(
        "UPDATE plans SET status = 'applied' WHERE status = 'applying' AND NOT EXISTS (SELECT 1 FROM "
        "deletion_events d WHERE d.plan_id = plans.id AND d.status IN ('pending', 'running'))"
    )


def process_due(config: Any, store: Store, *, actor: str = "scheduler", pm: Any = None) -> RunResult:
    """Run what is due: steps whose retry time has come, and intents an executor left unfinished.

    The scheduler calls this every minute. When another executor holds the lock it returns at once with
    ``busy=True`` (that executor is doing the work).
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        lock = locks.acquire(store, EXECUTOR_LOCK, owner=owner, ttl=LOCK_TTL, details={"actor": actor, "due": True})
    except locks.LockHeld:
        return RunResult(busy=True)
    try:
        with _Run(config, store, actor, pm, lock) as run:
            ids = _unfinished_ids(store, config, time.time())
            if ids:
                run.execute(ids)
            _settle_plans(store)
        run.notify_summary()
        return run.result
    finally:
        lock.release()


def resume_unfinished(config: Any, store: Store, *, actor: str = "daemon", pm: Any = None) -> RunResult:
    """At start-up: continue every intent a previous process left ``pending``/``running`` and due retries.

    A step left ``running`` is run again (steps are idempotent: already gone counts as done).
    """
    unfinished = store.query_one(
        "SELECT COUNT(*) AS n FROM deletion_events WHERE status IN ('pending', 'running', 'partial')"
    )
    if unfinished and unfinished["n"]:
        audit.record(store, actor, "deletion.resume", None, {"unfinished": unfinished["n"]})
    return process_due(config, store, actor=actor, pm=pm)


def retry(config: Any, store: Store, deletion_id: int | None = None, *, actor: str, pm: Any = None) -> RunResult:
    """Run failed steps now instead of at their backoff time (``smartplexd retry [ID]``).

    With ``deletion_id`` only that deletion (it must be ``partial`` or ``failed``); without, every partial
    or failed one. A ``failed`` deletion gets one more attempt per failed step. Raises :class:`UsageError`
    for an unknown or finished id and :class:`Refused` while another executor runs.
    """
    now = time.time()
    if deletion_id is not None:
        row = store.query_one("SELECT status FROM deletion_events WHERE id = ?", (deletion_id,))
        if row is None:
            raise UsageError(f"deletion {deletion_id} does not exist (`smartplexd history` lists them)")
        if row["status"] not in ("partial", "failed"):
            raise UsageError(f"deletion {deletion_id} is {row['status']}; only partial or failed ones are retried")
        ids = [deletion_id]
    else:
        ids = [r["id"] for r in store.query("SELECT id FROM deletion_events WHERE status IN ('partial', 'failed')")]
    target = f"deletion:{deletion_id}" if deletion_id is not None else None
    lock = _take_lock(store, actor, target, {"actor": actor, "retry": deletion_id})
    try:
        with _Run(config, store, actor, pm, lock) as run:
            for did in ids:
                with store.transaction():
                    store.execute(
                        "UPDATE deletion_steps SET next_attempt_at = ? WHERE deletion_id = ? AND status = 'failed'",
                        (now, did),
                    )
                    store.execute(
                        "UPDATE deletion_events SET status = 'partial', finished_at = NULL, updated_at = ? "
                        "WHERE id = ?",
                        (now, did),
                    )
                    audit.record(store, actor, "deletion.retry", f"deletion:{did}", {"forced": True})
            run.execute(ids)
        run.notify_summary()
        return run.result
    finally:
        lock.release()


# --- restore -------------------------------------------------------------------------------------------


def restore(config: Any, store: Store, deletion_id: int, *, actor: str, pm: Any = None) -> RestoreOutcome:
    """Undo what can be undone: ask the plugins whose steps ran (Radarr/Sonarr re-add and search).

    Plex cannot undo a deletion (the files are gone), so a deletion that removed the item from Plex only is
    refused with :class:`Refused`. The tombstone is lifted so the re-downloaded item can come back through
    a sync. Records a ``restores`` row and ``deletion.restore`` in the audit log.
    """
    from smartplexd.plugins import get_plugin_manager

    target = f"deletion:{deletion_id}"
    deletion = get_deletion(store, deletion_id)
    if deletion is None:
        raise UsageError(f"deletion {deletion_id} does not exist (`smartplexd history` lists them)")
    if deletion["status"] in ("pending", "running", "skipped"):
        raise _refuse(store, actor, target, f"deletion {deletion_id} is {deletion['status']}; nothing to restore")
    if deletion["restored_at"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(deletion["restored_at"]))
        raise _refuse(store, actor, target, f"deletion {deletion_id} was already restored on {when}")
    done = [s for s in deletion["steps"] if s["status"] == "done" and s["plugin"] not in ("plex", "local")]
    if not done:
        raise _refuse(
            store,
            actor,
            target,
            f"deletion {deletion_id} ({deletion['title']}) removed the item from Plex only: no Sonarr/Radarr "
            "managed it, and Plex cannot undo a deletion (the files are gone). Restore the files from a backup "
            "and let Plex rescan.",
        )
    pm = pm or get_plugin_manager()
    ctx = PluginContext(config=config, store=store, now=time.time(), actor=actor, rule_action=deletion["action"])
    hook_deletion = {k: v for k, v in deletion.items() if k != "steps"}
    results: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    try:
        for step in done:
            cascade = CascadeTarget(step["plugin"], step["target"], step["seq"], step["action"], step["data"])
            try:
                res = first_result(
                    pm.hook.smartplexd_restore, _resolver(loop), deletion=hook_deletion, target=cascade, ctx=ctx
                )
            except Exception as exc:
                results.append({"target": step["target"], "ok": False, "message": f"{type(exc).__name__}: {exc}"})
                continue
            if res is None:
                results.append({"target": step["target"], "ok": None, "message": "nothing to restore for this step"})
            else:
                results.append({"target": res.target, "ok": res.ok, "message": res.message, "details": res.details})
    finally:
        loop.close()
    attempted = [r for r in results if r["ok"] is not None]
    if not attempted:
        raise _refuse(
            store,
            actor,
            target,
            f"deletion {deletion_id}: none of its steps can be undone ({', '.join(s['target'] for s in done)}); "
            "only Sonarr/Radarr can re-add an item",
        )
    oks = [r for r in attempted if r["ok"]]
    status = "ok" if len(oks) == len(attempted) else ("partial" if oks else "failed")
    now = time.time()
    with store.transaction():
        store.execute(
            "INSERT INTO restores (deletion_id, actor, created_at, status, details) VALUES (?, ?, ?, ?, ?)",
            (deletion_id, actor, now, status, json.dumps({"results": results}, default=str)),
        )
        if oks:
            store.execute("UPDATE deletion_events SET restored_at = ? WHERE id = ?", (now, deletion_id))
            # The item will come back under a new rating key; the tombstone must not block it.
            store.execute("UPDATE tombstones SET expires_at = ? WHERE deletion_id = ?", (now, deletion_id))
        audit.record(store, actor, "deletion.restore", target, {"status": status, "results": results})
    return RestoreOutcome(deletion_id, status, results)


# --- hooks ---------------------------------------------------------------------------------------------


def _resolver(loop: asyncio.AbstractEventLoop) -> Any:
    def resolve(value: Any) -> Any:
        return loop.run_until_complete(value) if inspect.isawaitable(value) else value

    return resolve


# --- one run -------------------------------------------------------------------------------------------

_steps_run = 0
"""Steps run by this process so far (for the crash-injection test hook)."""


def _crash_point() -> int | None:
    value = os.environ.get(CRASH_ENV)
    return int(value) if value not in (None, "") else None


def _maybe_crash_after_intents() -> None:
    if _crash_point() == 0:
        os._exit(137)


def _maybe_crash_after_step() -> None:
    global _steps_run
    _steps_run += 1
    if _crash_point() == _steps_run:
        os._exit(137)


class _StopRun(Exception):
    """Plex rejected the token: the run stops at once (carried up to :meth:`_Run.execute`)."""

    def __init__(self, server: str) -> None:
        self.server = server
        super().__init__(server)


class _Run:
    """State for one executor run: the lock, Plex clients, health, rules, a loop for async hooks."""

    def __init__(self, config: Any, store: Store, actor: str, pm: Any, lock: locks.Lock) -> None:
        from smartplexd.plugins import get_plugin_manager

        self.config = config
        self.store = store
        self.actor = actor
        self.pm = pm or get_plugin_manager()
        self.lock = lock
        self.result = RunResult()
        self.ctx = PluginContext(config=config, store=store, now=time.time(), actor=actor)
        self._loop = asyncio.new_event_loop()
        self._clients: dict[str, Any] = {}
        self._health: list[Any] | None = None
        self._rules: dict[str, Any] | None = None
        self._evaluation: Any = None
        self._verdicts: dict[str, dict[int, bool | None]] = {}

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._evaluation is not None:
            self._evaluation.close()
        for client in self._clients.values():
            client.close()
        self._loop.close()

    def resolve(self, value: Any) -> Any:
        return self._loop.run_until_complete(value) if inspect.isawaitable(value) else value

    def plex(self, server: str) -> Any:
        from smartplexd.plex.client import PlexClient

        if server not in self._clients:
            self._clients[server] = PlexClient(self.config.plex_server(server))
        return self._clients[server]

    def hook_ctx(self, action: str | None) -> PluginContext:
        self.ctx.now = time.time()
        self.ctx.rule_action = action
        return self.ctx

    # ---- intents

    def rules(self) -> dict[str, Any]:
        """The rules as they are now (per-rule limits and the re-check use the current files)."""
        if self._rules is None:
            from smartplexd.rules.facts import registry
            from smartplexd.rules.models import load_rules

            self._rules = {r.name: r for r in load_rules(self.config.rule_paths, registry(self.pm))}
        return self._rules

    def write_intents(self, plan_id: int, *, window_override: bool) -> list[int]:
        """Turn the plan's selected items into pending deletions with their steps; return their ids.

        The cascade targets are asked for first (plugins may look the item up), then everything is written
        in one transaction with one audit entry per deletion. Items over a per-run or per-rule limit, and
        items whose targets could not be determined, are written as ``skipped`` with the reason.
        """
        store, deletion = self.store, self.config.deletion
        try:
            rules = self.rules()
        except Exception as exc:
            raise _refuse(
                store, self.actor, f"plan:{plan_id}", f"the rules no longer load, so items cannot be re-checked: {exc}"
            ) from None
        plan_items = store.query(
            "SELECT id, item_id, rule, action, bytes FROM plan_items WHERE plan_id = ? AND status = 'selected' "
            "AND action IN ('delete', 'unmonitor') ORDER BY rank IS NULL, rank, id",
            (plan_id,),
        )
        run_items = run_bytes = 0
        per_rule: dict[str, list[int]] = {}
        prepared: list[dict[str, Any]] = []
        for pi in plan_items:
            row = store.query_one("SELECT * FROM media_items WHERE id = ?", (pi["item_id"],))
            if row is None:
                continue
            entry: dict[str, Any] = {"pi": pi, "row": row, "targets": [], "skip": None}
            prepared.append(entry)
            size = pi["bytes"] or row["size_bytes"] or 0
            rule = rules.get(pi["rule"])
            counts = per_rule.setdefault(pi["rule"], [0, 0])
            if run_items + 1 > deletion.max_items_per_run:
                entry["skip"] = f"over the per-run limit of {deletion.max_items_per_run} items"
            elif run_bytes + size > deletion.max_bytes_per_run:
                entry["skip"] = f"over the per-run limit of {format_size(deletion.max_bytes_per_run)}"
            elif rule is not None and rule.limits.max_items is not None and counts[0] + 1 > rule.limits.max_items:
                entry["skip"] = f"over rule {rule.name}'s limit of {rule.limits.max_items} items"
            elif rule is not None and rule.limits.max_bytes is not None and counts[1] + size > rule.limits.max_bytes:
                entry["skip"] = f"over rule {rule.name}'s limit of {format_size(rule.limits.max_bytes)}"
            if entry["skip"]:
                continue
            run_items, run_bytes = run_items + 1, run_bytes + size
            counts[0], counts[1] = counts[0] + 1, counts[1] + size
            try:
                entry["targets"] = self.targets_for(row, pi["action"])
            except Exception as exc:
                entry["skip"] = f"could not work out the cascade (nothing done): {type(exc).__name__}: {exc}"
        ids = []
        now = time.time()
        with store.transaction():
            # "applying" until every intent has run: the plan cannot be applied a second time, even after a
            # crash that leaves some intents for resume_unfinished.
            store.execute("UPDATE plans SET status = 'applying' WHERE id = ?", (plan_id,))
            for entry in prepared:
                ids.append(self._insert_intent(plan_id, entry, now, window_override))
        return [i for i, entry in zip(ids, prepared, strict=True) if not entry["skip"]]

    def targets_for(self, row: dict[str, Any], action: str) -> list[CascadeTarget]:
        item = MediaItem.from_row(row)
        facts = self.item_facts(row["id"])
        found: list[CascadeTarget] = []
        for result in self.pm.hook.smartplexd_cascade_targets(item=item, facts=facts, ctx=self.hook_ctx(action)):
            found.extend(self.resolve(result) or [])
        found.sort(key=lambda t: (t.order, t.plugin, t.target))
        if action == "delete":
            found.append(CascadeTarget("plex", f"plex:{row['server']}", PLEX_ORDER, "delete", {}))
            found.append(CascadeTarget("local", "local", LOCAL_ORDER, "tombstone", {}))
        return found

    def item_facts(self, item_id: int) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        for r in self.store.query(
            "SELECT facts FROM item_facts WHERE item_id = ? AND status = 'known' ORDER BY plugin", (item_id,)
        ):
            facts.update(json.loads(r["facts"]))
        return facts

    def _insert_intent(self, plan_id: int, entry: dict[str, Any], now: float, window_override: bool) -> int:
        pi, row, targets = entry["pi"], entry["row"], entry["targets"]
        snapshot = {
            "item": row,
            "facts": self.item_facts(row["id"]),
            "plan_bytes": pi["bytes"],
            "window_override": window_override,
        }
        status = "skipped" if entry["skip"] else "pending"
        cur = self.store.execute(
            "INSERT INTO deletion_events (plan_id, plan_item_id, item_id, server, rating_key, title, rule, action, "
            "status, reason, actor, created_at, updated_at, finished_at, snapshot) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                plan_id,
                pi["id"],
                row["id"],
                row["server"],
                row["rating_key"],
                _title(row),
                pi["rule"],
                pi["action"],
                status,
                entry["skip"],
                self.actor,
                now,
                now,
                now if entry["skip"] else None,
                json.dumps(snapshot, default=str),
            ),
        )
        deletion_id = int(cur.lastrowid or 0)
        for seq, t in enumerate(targets, start=1):
            self.store.execute(
                "INSERT INTO deletion_steps (deletion_id, seq, plugin, target, action, data) VALUES (?, ?, ?, ?, ?, ?)",
                (deletion_id, seq, t.plugin, t.target, t.action, json.dumps(t.data, default=str)),
            )
        details = {
            "plan_id": plan_id,
            "item": f"{row['server']}/{row['rating_key']}",
            "title": _title(row),
            "rule": pi["rule"],
            "action": pi["action"],
            "steps": [f"{t.plugin}:{t.action} {t.target}" for t in targets],
        }
        if entry["skip"]:
            details["skipped"] = entry["skip"]
            self.result.deletions.append(DeletionOutcome(deletion_id, _title(row), "skipped", entry["skip"]))
        audit.record(self.store, self.actor, "deletion.intent", f"deletion:{deletion_id}", details)
        return deletion_id

    # ---- running

    def execute(self, ids: list[int]) -> None:
        """Process deletions in order; a rejected Plex token stops the run and skips what is left."""
        for index, deletion_id in enumerate(ids):
            try:
                self.process(deletion_id)
            except _StopRun as stop:
                self.result.unauthorized = stop.server
                self._record_outcome(deletion_id)
                for rest in ids[index + 1 :]:
                    row = self.store.query_one("SELECT status FROM deletion_events WHERE id = ?", (rest,))
                    if row and row["status"] == "pending":
                        self.skip(rest, f"not attempted: Plex server '{stop.server}' rejected the token; run stopped")
                    self._record_outcome(rest)
                from smartplexd.notify import notify, plex_unauthorized

                notify(self.config, plex_unauthorized(stop.server), store=self.store, pm=self.pm)
                return
            self._record_outcome(deletion_id)
            self.lock.refresh()

    def _record_outcome(self, deletion_id: int) -> None:
        row = self.store.query_one(
            "SELECT id, title, status, reason, bytes_freed FROM deletion_events WHERE id = ?", (deletion_id,)
        )
        if row is not None:
            self.result.deletions = [d for d in self.result.deletions if d.id != deletion_id]
            self.result.deletions.append(
                DeletionOutcome(row["id"], row["title"], row["status"], row["reason"], row["bytes_freed"])
            )
            self.result.deletions.sort(key=lambda d: d.id)

    def load(self, deletion_id: int) -> dict[str, Any]:
        deletion = get_deletion(self.store, deletion_id)
        if deletion is None:
            raise UsageError(f"deletion {deletion_id} does not exist")
        return deletion

    def process(self, deletion_id: int) -> None:
        deletion = self.load(deletion_id)
        if deletion["status"] in ("done", "skipped"):
            return
        if deletion["status"] == "pending":
            try:
                reason = self.recheck(deletion)
            except PlexUnauthorized as exc:
                self.skip(deletion_id, f"not attempted: Plex server '{exc.server}' rejected the token; run stopped")
                raise _StopRun(exc.server) from None
            if reason:
                self.skip(deletion_id, reason)
                return
            self.start(deletion)
        try:
            for step in deletion["steps"]:
                if step["status"] in ("done", "skipped"):
                    continue
                # A failed step without a next attempt gave up; one with a future time waits for it.
                if step["status"] == "failed" and (
                    step["next_attempt_at"] is None or step["next_attempt_at"] > time.time()
                ):
                    break
                if self.run_step(deletion, step) not in ("done", "skipped"):
                    break
        finally:
            self.finalize(deletion_id)

    def start(self, deletion: dict[str, Any]) -> None:
        now = time.time()
        with self.store.transaction():
            self.store.execute(
                "UPDATE deletion_events SET status = 'running', updated_at = ?, snapshot = ? WHERE id = ?",
                (now, json.dumps(deletion["snapshot"], default=str), deletion["id"]),
            )
            audit.record(
                self.store,
                self.actor,
                "deletion.started",
                f"deletion:{deletion['id']}",
                {"title": deletion["title"], "fresh": deletion["snapshot"].get("fresh", {})},
            )
        bus.publish("deletion.started", id=deletion["id"], title=deletion["title"], plan_id=deletion["plan_id"])

    def skip(self, deletion_id: int, reason: str) -> None:
        now = time.time()
        with self.store.transaction():
            self.store.execute(
                "UPDATE deletion_events SET status = 'skipped', reason = ?, updated_at = ?, finished_at = ? "
                "WHERE id = ?",
                (reason, now, now, deletion_id),
            )
            self.store.execute(
                "UPDATE deletion_steps SET status = 'skipped' WHERE deletion_id = ? AND status = 'pending'",
                (deletion_id,),
            )
            audit.record(self.store, self.actor, "deletion.skipped", f"deletion:{deletion_id}", {"reason": reason})
        bus.publish("deletion.finished", id=deletion_id, status="skipped", reason=reason, bytes_freed=0)

    # ---- the re-check

    def recheck(self, deletion: dict[str, Any]) -> str | None:
        """Why the item must not be touched now, or None. Fills ``snapshot["fresh"]`` from Plex.

        Raises PlexUnauthorized when Plex rejects the token (the caller stops the run).
        """
        snap = deletion["snapshot"]
        row = snap["item"]
        current = self.store.query_one("SELECT deleted_at FROM media_items WHERE id = ?", (deletion["item_id"],))
        if current is None:
            return "the item is no longer in the database"
        if current["deleted_at"]:
            return "already deleted by smartplexd (tombstoned)"
        tomb = self.store.query_one(
            "SELECT deletion_id FROM tombstones WHERE server = ? AND rating_key = ? AND "
            "(expires_at IS NULL OR expires_at > ?)",
            (deletion["server"], deletion["rating_key"], time.time()),
        )
        if tomb is not None:
            return f"tombstoned by deletion {tomb['deletion_id']}"
        request_id = _request_id(deletion["rule"])
        rule = None
        if request_id is not None:
            # Included from a requester's deletion request (no rule): it must still be open.
            req = self.store.query_one("SELECT status FROM deletion_requests WHERE id = ?", (request_id,))
            if req is None or req["status"] != "open":
                return f"deletion request {request_id} is no longer open"
        else:
            rule = self.rules().get(deletion["rule"] or "")
            if rule is None or not rule.enabled:
                return f"rule {deletion['rule']!r} no longer exists or is disabled"
        unhealthy = self.unhealthy(deletion, rule)
        if unhealthy:
            return unhealthy
        from smartplexd.plex.client import PlexError

        try:
            client = self.plex(deletion["server"])
        except KeyError:
            return f"Plex server {deletion['server']!r} is no longer configured"
        try:
            fresh = client.fetch_item(deletion["rating_key"])
        except PlexError as exc:
            return f"Plex could not confirm the item is still there: {exc}"
        if fresh is None:
            return "no longer in Plex (removed outside smartplexd); nothing to do"
        facts = plex_facts(fresh)
        snap["fresh"] = facts
        played = _played_since(row, facts)
        if played:
            return played
        keep = self.config.deletion.keep_label
        if keep and keep.lower() in (label.lower() for label in facts["labels"]):
            return f"labelled {keep!r} in Plex since the plan"
        return self.rule_mismatch(rule, deletion) if rule is not None else None

    def unhealthy(self, deletion: dict[str, Any], rule: Any) -> str | None:
        """A reason when an integration the item needs (its cascade steps, its rule's facts) is not ok."""
        if not self.config.deletion.require_healthy:
            return None
        if self._health is None:
            self._health = self.check_health()
        needs: set[tuple[str, str | None]] = {(s, None) for s in (rule.sources() if rule is not None else [])}
        for step in deletion["steps"]:
            if step["plugin"] not in ("plex", "local"):
                needs.add((step["plugin"], step["target"]))
        for plugin, target in sorted(needs, key=lambda n: (n[0], n[1] or "")):
            results = [h for h in self._health if h.plugin == plugin]
            if target is not None:
                parts = set(target.replace("/", ":").split(":"))
                specific = [h for h in results if h.name in parts or h.name == target]
                results = specific or results
            bad = [h for h in results if h.status != Health.OK]
            if bad:
                h = bad[0]
                return f"{plugin} ({h.name}) is {h.status}: {h.error or 'not healthy'}; skipped until it is healthy"
        return None

    def check_health(self) -> list[Any]:
        """Ask every integration now (once per run) rather than trust the last periodic check."""
        from smartplexd.health import check_health_async

        return list(self.resolve(check_health_async(self.config, self.store, pm=self.pm)))

    def rule_mismatch(self, rule: Any, deletion: dict[str, Any]) -> str | None:
        """Evaluate the rule for this one item on the stored data; a reason when it no longer selects it.

        The rules engine evaluates whole libraries at once; the run evaluates each rule it touches once
        (on first use) and looks the item up in the result.
        """
        verdict = self.rule_verdict(rule, deletion["item_id"])
        if verdict is True:
            return None
        if verdict is None:
            return f"rule {rule.name} cannot decide any more (a fact it needs is unknown now)"
        return f"no longer matches rule {rule.name}"

    def rule_verdict(self, rule: Any, item_id: int) -> bool | None:
        """True (selected), False (not, or no longer in the library) or None (unknown) for one item."""
        if rule.name not in self._verdicts:
            from smartplexd.rules.evaluator import Evaluation
            from smartplexd.rules.facts import registry

            if self._evaluation is None:
                self._evaluation = Evaluation(
                    self.config, self.store, list(self.rules().values()), registry(self.pm), pm=self.pm
                )
                self._evaluation.build()
            self._verdicts[rule.name] = {c.id: c.result for c in self._evaluation.decide(rule)}
        return self._verdicts[rule.name].get(item_id, False)

    # ---- steps

    def run_step(self, deletion: dict[str, Any], step: dict[str, Any]) -> str:
        """Run one step: mark running (attempts + 1), do it, record the outcome. Returns the new status."""
        store, now = self.store, time.time()
        with store.transaction():
            store.execute(
                "UPDATE deletion_steps SET status = 'running', attempts = attempts + 1, started_at = ? WHERE id = ?",
                (now, step["id"]),
            )
            store.execute(
                "UPDATE deletion_events SET status = 'running', updated_at = ? WHERE id = ?", (now, deletion["id"])
            )
        step["attempts"] += 1
        if step["plugin"] == "local":
            return self.local_step(deletion, step)
        stop: str | None = None
        try:
            result = self.plex_step(deletion) if step["plugin"] == "plex" else self.plugin_step(deletion, step)
        except PlexUnauthorized as exc:
            result = StepResult(StepStatus.FAILED, str(exc))
            stop = exc.server
        else:
            _maybe_crash_after_step()
        status = self.record_step(deletion, step, result)
        if stop:
            raise _StopRun(stop)
        return status

    def plugin_step(self, deletion: dict[str, Any], step: dict[str, Any]) -> StepResult:
        item = MediaItem.from_row(deletion["snapshot"]["item"])
        target = CascadeTarget(step["plugin"], step["target"], step["seq"], step["action"], step["data"])
        try:
            result = first_result(
                self.pm.hook.smartplexd_cascade_step,
                self.resolve,
                item=item,
                target=target,
                ctx=self.hook_ctx(deletion["action"]),
            )
        except Exception as exc:
            return StepResult(StepStatus.FAILED, f"{step['plugin']} step raised {type(exc).__name__}: {exc}")
        if result is None:
            return StepResult(
                StepStatus.FAILED, f"no loaded plugin carries out {step['plugin']} steps (is the plugin installed?)"
            )
        return result

    def plex_step(self, deletion: dict[str, Any]) -> StepResult:
        from smartplexd.plex.client import PlexDeletionDisabled

        try:
            deleted = self.plex(deletion["server"]).delete_item(deletion["rating_key"])
        except PlexUnauthorized:
            raise
        except PlexDeletionDisabled as exc:
            return StepResult(StepStatus.FAILED, str(exc))
        except Exception as exc:
            return StepResult(StepStatus.FAILED, f"{type(exc).__name__}: {exc}")
        if deleted:
            return StepResult(StepStatus.DONE, "deleted in Plex")
        return StepResult(StepStatus.DONE, "already gone from Plex", already_gone=True)

    def local_step(self, deletion: dict[str, Any], step: dict[str, Any]) -> str:
        """Tombstone the row (and its children) and record the bytes freed, in one transaction with the
        step's outcome: a crash before the commit leaves nothing half-written and the step simply reruns."""
        from smartplexd.plex.sync import tombstone_guids

        store, now = self.store, time.time()
        snap = deletion["snapshot"]
        row = snap["item"]
        fresh = snap.get("fresh") or {}
        freed = int(fresh.get("size_bytes") or row.get("size_bytes") or 0)
        expires = now + self.config.deletion.tombstone_days * 86_400
        with store.transaction():
            rows = store.query(
                "SELECT * FROM media_items WHERE id = ? OR (server = ? AND deleted_at IS NULL AND "
                "(parent_rating_key = ? OR grandparent_rating_key = ?))",
                (deletion["item_id"], row["server"], row["rating_key"], row["rating_key"]),
            )
            for r in rows:
                store.execute(
                    "UPDATE media_items SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?", (now, r["id"])
                )
                store.execute(
                    "INSERT OR REPLACE INTO tombstones (server, rating_key, item_id, guids, deletion_id, created_at, "
                    "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["server"],
                        r["rating_key"],
                        r["id"],
                        json.dumps(tombstone_guids(r)),
                        deletion["id"],
                        now,
                        expires,
                    ),
                )
            store.execute("UPDATE deletion_events SET bytes_freed = ? WHERE id = ?", (freed, deletion["id"]))
            _maybe_crash_after_step()
            result = StepResult(
                StepStatus.DONE,
                f"tombstoned {len(rows)} row(s) until {time.strftime('%Y-%m-%d', time.localtime(expires))}",
            )
            status = self.record_step(deletion, step, result, details={"bytes_freed": freed, "rows": len(rows)})
        return status

    def record_step(
        self, deletion: dict[str, Any], step: dict[str, Any], result: StepResult, details: dict[str, Any] | None = None
    ) -> str:
        store, now = self.store, time.time()
        retry_cfg = self.config.deletion.retry
        next_at = None
        if result.status == StepStatus.DONE:
            status = "done"
        elif result.status == StepStatus.SKIPPED:
            status = "skipped"
        else:
            status = "failed"
            if result.retryable and step["attempts"] < retry_cfg.max_attempts:
                next_at = now + backoff_seconds(retry_cfg, step["attempts"], step["id"])
        payload = {"message": result.message, "already_gone": result.already_gone, **result.details, **(details or {})}
        error = result.message if status == "failed" else None
        with store.transaction():
            store.execute(
                "UPDATE deletion_steps SET status = ?, next_attempt_at = ?, last_error = COALESCE(?, last_error), "
                "result = ?, finished_at = ? WHERE id = ?",
                (status, next_at, error, json.dumps(payload, default=str), now, step["id"]),
            )
            audit.record(
                store,
                self.actor,
                "deletion.step",
                f"deletion:{deletion['id']}",
                {
                    "seq": step["seq"],
                    "plugin": step["plugin"],
                    "target": step["target"],
                    "action": step["action"],
                    "status": status,
                    "attempts": step["attempts"],
                    "message": result.message,
                    "next_attempt_at": next_at,
                },
            )
        step["status"], step["next_attempt_at"], step["last_error"] = status, next_at, error or step["last_error"]
        bus.publish(
            "deletion.step",
            id=deletion["id"],
            seq=step["seq"],
            plugin=step["plugin"],
            target=step["target"],
            status=status,
            message=result.message,
            next_attempt_at=next_at,
        )
        return status

    def finalize(self, deletion_id: int) -> None:
        deletion = self.load(deletion_id)
        steps = deletion["steps"]
        if any(s["status"] == "failed" and s["next_attempt_at"] is None for s in steps):
            status = "failed"
        elif any(s["status"] in ("failed", "running", "pending") for s in steps):
            status = "partial"
        else:
            status = "done"
        failing = [s for s in steps if s["status"] == "failed"]
        reason = f"{failing[0]['target']}: {failing[0]['last_error']}" if failing else None
        now = time.time()
        with self.store.transaction():
            self.store.execute(
                "UPDATE deletion_events SET status = ?, reason = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                (status, reason, now, now if status in FINAL else None, deletion_id),
            )
            request_id = _request_id(deletion["rule"])
            if status == "done" and request_id is not None:
                self.store.execute("UPDATE deletion_requests SET status = 'done' WHERE id = ?", (request_id,))
            if status == "done" and deletion["plan_item_id"]:
                self.store.execute(
                    "UPDATE leaving_soon SET status = 'deleted', updated_at = ? WHERE item_id = ? "
                    "AND status IN ('pending', 'due')",
                    (now, deletion["item_id"]),
                )
            audit.record(
                self.store,
                self.actor,
                "deletion.finished",
                f"deletion:{deletion_id}",
                {"status": status, "reason": reason, "bytes_freed": deletion["bytes_freed"]},
            )
        bus.publish(
            "deletion.finished", id=deletion_id, status=status, reason=reason, bytes_freed=deletion["bytes_freed"]
        )

    # ---- reporting

    def summary(self) -> dict[str, Any]:
        return {
            "counts": self.result.counts(),
            "bytes_freed": self.result.bytes_freed,
            "unauthorized": self.result.unauthorized,
        }

    def notify_summary(self) -> None:
        """One notification per outcome kind (done, partial, failed) for this run; never raises."""
        from smartplexd.notify import notify

        for status, severity in (("done", "success"), ("partial", "warning"), ("failed", "failure")):
            group = [d for d in self.result.deletions if d.status == status]
            if not group:
                continue
            freed = sum(d.bytes_freed for d in group)
            lines = [f"- {d.title}" + (f": {d.reason}" if d.reason else "") for d in group]
            title = {
                "done": f"Deleted {len(group)} item(s), {format_size(freed)} freed",
                "partial": f"{len(group)} deletion(s) incomplete; retrying with backoff",
                "failed": f"{len(group)} deletion(s) failed after every retry",
            }[status]
            notify(
                self.config,
                Notification(
                    event=f"deletion.{status}",
                    title=title,
                    body="\n".join(lines),
                    severity=severity,
                    details={"ids": [d.id for d in group], "bytes_freed": freed},
                ),
                store=self.store,
                pm=self.pm,
            )


# --- Plex data ----------------------------------------------------------------------------------------


def plex_facts(metadata: dict[str, Any]) -> dict[str, Any]:
    """What the re-check reads from fresh Plex metadata (parsed exactly as the sync parses it)."""
    from smartplexd.plex.sync import item_row

    row = item_row(metadata, "", "")
    return {
        "view_count": row.view_count,
        "last_viewed_at": row.last_viewed_at,
        "labels": json.loads(row.labels),
        "size_bytes": row.size_bytes or None,
    }


def _played_since(row: dict[str, Any], fresh: dict[str, Any]) -> str | None:
    stored_views = int(row.get("view_count") or 0)
    stored_last = int(row.get("last_viewed_at") or 0)
    if fresh["view_count"] > stored_views:
        return f"played since the plan (Plex play count {stored_views} → {fresh['view_count']})"
    if fresh["last_viewed_at"] and fresh["last_viewed_at"] > stored_last:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(fresh["last_viewed_at"]))
        return f"played since the plan (last viewed {when})"
    return None


def _request_id(rule: str | None) -> int | None:
    """The deletion request id of a plan entry the planner took from a request (rule ``request:<id>``)."""
    if rule and rule.startswith("request:") and rule[8:].isdigit():
        return int(rule[8:])
    return None


def _title(row: dict[str, Any]) -> str:
    if row.get("type") == "episode" and row.get("season_index") is not None:
        return f"{row['title']} (S{row['season_index']:02d}E{row.get('episode_index') or 0:02d})"
    return f"{row['title']} ({row['year']})" if row.get("year") else row["title"]
