"""Plex webhooks → normalized :class:`~smartplexd.model.WebhookEvent` values.

Plex posts ``multipart/form-data`` whose ``payload`` field is the JSON document (see
``contracts/plex.md`` "Plex webhooks"); the web layer extracts that field and hands the parsed JSON here.
Only events that change what smartplexd knows about an item matter:

* ``media.play``, ``media.resume``, ``media.scrobble``, ``playback.started`` → ``item.watched`` (someone is
  using the item: refresh its play counts and cancel a pending "leaving soon");
* ``library.new`` → ``item.added``;
* everything else (pause, stop, rate, on deck, admin.*, device.new) → ``unknown``: stored, not acted on.
"""

from __future__ import annotations

import time
from typing import Any

from smartplexd.model import WebhookEvent

EVENT_TYPES = {
    "media.play": "item.watched",
    "media.resume": "item.watched",
    "media.scrobble": "item.watched",
    "playback.started": "item.watched",
    "library.new": "item.added",
}


class MalformedPlexPayload(ValueError):
    """The payload is not a Plex webhook document (no ``event`` string)."""


def parse(payload: dict[str, Any], now: float | None = None) -> list[WebhookEvent]:
    """Normalize one Plex webhook payload; raises :class:`MalformedPlexPayload` when it is not one.

    ``server`` is Plex's own server *title* (``Server.title``), not a smartplexd server name: the caller
    maps it to a configured server. ``at`` is the time of receipt (Plex sends no event timestamp).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise MalformedPlexPayload("a Plex webhook payload needs an 'event' string")
    event = payload["event"]
    metadata = payload.get("Metadata") if isinstance(payload.get("Metadata"), dict) else {}
    server = payload.get("Server") if isinstance(payload.get("Server"), dict) else {}
    account = payload.get("Account") if isinstance(payload.get("Account"), dict) else {}
    rating_key = metadata.get("ratingKey")
    kind = EVENT_TYPES.get(event, "unknown")
    if rating_key is None and kind != "unknown":
        kind = "unknown"  # nothing to act on without the item's key
    ids = _guids(metadata.get("Guid"))
    return [
        WebhookEvent(
            type=kind,
            source="plex",
            rating_key=str(rating_key) if rating_key is not None else None,
            server=server.get("title"),
            tmdb_id=_int(ids.get("tmdb")),
            tvdb_id=_int(ids.get("tvdb")),
            imdb_id=ids.get("imdb"),
            user=account.get("title"),
            at=now if now is not None else time.time(),
            details={
                "event": event,
                "item_type": metadata.get("type"),
                "title": metadata.get("title"),
                "server_uuid": server.get("uuid"),
                "library": metadata.get("librarySectionTitle"),
            },
        )
    ]


def _guids(guids: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(guids, list):
        for guid in guids:
            value = guid.get("id") if isinstance(guid, dict) else None
            if isinstance(value, str) and "://" in value:
                scheme, _, ident = value.partition("://")
                out[scheme] = ident
    return out


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
