"""Logging: one format everywhere, level from config or ``SMARTPLEXD_LOG_LEVEL``, secrets masked.

Every secret value loaded from the config is registered here; :class:`SecretFilter` replaces it with
``**********`` in every record that reaches a handler, whatever logger produced it (ours, httpx,
aiohttp, plexapi). Secrets shorter than 4 characters are not masked: they would mask ordinary text.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

MASK = "**********"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: list[str]) -> None:
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by ``**********``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup(level: str | None = None, stream: object = None) -> None:
    """Configure the root logger once: format, level, the secret filter on every handler."""
    level = (os.environ.get("SMARTPLEXD_LOG_LEVEL") or level or "INFO").upper()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_smartplexd", False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
        handler._smartplexd = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(SecretFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries log full request lines; keep them at WARNING unless debugging.
    for name in ("httpx", "httpcore", "urllib3", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
