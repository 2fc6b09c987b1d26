"""The in-process event bus: sync progress, deletions, health changes.

Producers call :meth:`EventBus.publish`; the CLI progress bar and the SSE stream subscribe. Each event
gets an increasing id (the SSE ``id:``); the bus keeps the last ``history`` events so a reconnecting
client can resume from ``Last-Event-ID``. Subscribers are called in the publisher's thread and must be
quick (an async consumer hands the event to its loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]
    ts: float = field(default_factory=time.time)


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, history: int = 1000) -> None:
        self._subscribers: list[Subscriber] = []
        self._history: deque[Event] = deque(maxlen=history)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, type: str, **data: Any) -> Event:
        with self._lock:
            event = Event(next(self._ids), type, data)
            self._history.append(event)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber(event)
        return event

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Register ``subscriber``; returns a function that unregisters it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def since(self, last_id: int) -> list[Event]:
        """Events after ``last_id`` still in history (for Last-Event-ID resume)."""
        with self._lock:
            return [e for e in self._history if e.id > last_id]

    def skip_to(self, last_id: int) -> None:
        """Continue numbering after ``last_id`` (a restarted daemon keeps ids increasing)."""
        with self._lock:
            current = next(self._ids)
            self._ids = itertools.count(max(current, last_id + 1))


bus = EventBus()
"""The process-wide bus."""


class EventRecorder:
    """Persists bus events to the ``events`` table from a worker thread, in small batches.

    The daemon records its events so that another process (``smartplexd status`` next to a running daemon)
    sees a running sync's progress, and so that event ids keep increasing across restarts
    (:meth:`resume_ids`): a browser reconnecting with ``Last-Event-ID`` after a restart is not confused by
    reused ids. Publishers never wait for the database; retention trims the table.
    """

    def __init__(self, db_path: str, bus: EventBus, flush_every: float = 0.5) -> None:
        import queue

        self.db_path = db_path
        self.bus = bus
        self.flush_every = flush_every
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._work, name="event-recorder", daemon=True)
        self._unsubscribe: Callable[[], None] | None = None

    def resume_ids(self) -> int:
        """Continue the bus's numbering after the newest recorded event; returns that id."""
        from smartplexd.store import open_store

        with open_store(self.db_path) as store:
            last = store.query_one("SELECT MAX(id) AS id FROM events")["id"] or 0
        self.bus.skip_to(last)
        return last

    def start(self) -> EventRecorder:
        self._thread.start()
        self._unsubscribe = self.bus.subscribe(self._enqueue)
        return self

    def _enqueue(self, event: Event) -> None:
        import queue

        # Full means the database is far behind; dropping a progress event then is harmless.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(event)

    def close(self, timeout: float = 5.0) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        import json
        import queue

        from smartplexd.log import mask
        from smartplexd.store import open_store
        from smartplexd.store.group_commit import take_queued

        store = open_store(self.db_path)
        try:
            done = False
            while not done:
                try:
                    first = self._queue.get(timeout=self.flush_every)
                except queue.Empty:
                    continue
                if first is None:
                    break
                batch, done = take_queued(self._queue, first)
                rows = [(e.id, e.ts, e.type, mask(json.dumps(e.data, default=str))) for e in batch]
                with store.transaction():
                    store.conn.executemany(
                        "INSERT OR REPLACE INTO events (id, ts, type, data) VALUES (?, ?, ?, ?)", rows
                    )
        finally:
            store.close()
