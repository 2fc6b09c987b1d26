"""The in-process event bus: sync progress, deletions, health changes.

Producers call :meth:`EventBus.publish`; the CLI progress bar and the SSE stream subscribe. Each event
gets an increasing id (the SSE ``id:``); the bus keeps the last ``history`` events so a reconnecting
client can resume from ``Last-Event-ID``. Subscribers are called in the publisher's thread and must be
quick (an async consumer hands the event to its loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

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
