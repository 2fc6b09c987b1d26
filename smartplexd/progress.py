"""A terminal progress bar with rate and ETA, fed by progress events (done/total).

Only draws when the stream is a terminal; in logs, CI and ``--json`` runs it stays silent.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from smartplexd.units import format_duration


class ProgressBar:
    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int | None, label: str | None = None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        if label:
            self.label = label
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        if total:
            frac = min(done / total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            eta = (total - done) / rate if rate > 0 else None
            text = f"\r{self.label} [{bar}] {frac:4.0%} {done}/{total} {rate:,.0f}/s ETA {format_duration(eta)}"
        else:
            text = f"\r{self.label} {done} {rate:,.0f}/s"
        self.stream.write(text.ljust(100)[:160])
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
