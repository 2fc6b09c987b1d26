"""Group commit for the writer threads (event log, webhook inbox): many queued writes, one transaction.

A writer blocks for the first item, then takes whatever else is already queued with :func:`take_queued`
and writes the batch in one SQLite transaction, so a burst costs one fsync instead of one per row.
``None`` on the queue is the stop sentinel.
"""

from __future__ import annotations

import queue
from typing import TypeVar

T = TypeVar("T")


def take_queued(q: queue.Queue[T | None], first: T, limit: int | None = None) -> tuple[list[T], bool]:
    """``[first]`` plus what ``q`` holds already, without waiting, at most ``limit`` items in all.

    The flag is True when the stop sentinel (``None``) was taken: write this batch, then stop.
    """
    batch = [first]
    while limit is None or len(batch) < limit:
        try:
            item = q.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False
