"""Who is calling: API bearer tokens with roles, and webhook sender authentication.

Every comparison of a presented credential is constant-time (:func:`hmac.compare_digest`) and checks all
configured candidates, so response time says nothing about which token or how many characters matched.

Webhook senders authenticate the way each can (ARCHITECTURE §3 ``webhooks``):

* ``hmac``: Standard Webhooks — ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` headers;
  ``v1`` = base64 HMAC-SHA256 over ``{id}.{timestamp}.{raw body}`` with the secret's decoded bytes
  (``whsec_`` + base64). Any configured secret may match (rotation); the timestamp must be within the
  source's ``tolerance`` (5 minutes) of now. The message id is the idempotency key.
* ``basic``: HTTP Basic (Sonarr, Radarr).
* ``header``: a configured header holds the secret (Overseerr ``Authorization``, Tautulli custom headers);
  ``Bearer <secret>`` is accepted as well as the bare secret.
* ``url_token``: ``?token=<secret>`` (Plex can set nothing but a URL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("viewer", "requester", "admin")
"""Each role can do what the roles before it can: viewers read, requesters also file deletion requests,
admins do everything."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated API caller; ``actor`` is what the audit log records."""

    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def bearer_caller(authorization: str | None, tokens: list[Any]) -> Caller | None:
    """The caller whose configured token matches ``Authorization: Bearer <token>``, else None.

    ``tokens`` are :class:`smartplexd.config.TokenConfig` entries.
    """
    if not authorization:
        return None
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    presented_bytes = presented.strip().encode()
    found: Caller | None = None
    for token in tokens:
        # No early exit: every token is compared so timing does not reveal which one matched.
        if hmac.compare_digest(presented_bytes, token.token.get_secret_value().encode()):
            found = found or Caller(token.name, token.role)
    return found


class WebhookAuthError(Exception):
    """The webhook's credentials are missing or wrong; ``str()`` says which check failed (for the audit)."""


def _any_equal(presented: bytes, candidates: list[bytes]) -> bool:
    ok = False
    for candidate in candidates:
        ok |= hmac.compare_digest(presented, candidate)
    return ok


def hmac_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` stripped, base64-decoded.

    A secret that is not base64 (someone configured a plain passphrase) is used as its UTF-8 bytes, so
    sender and receiver still agree as long as both were given the same string.
    """
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return raw.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message (what a sender puts in ``webhook-signature``)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(
    body: bytes,
    headers: Mapping[str, str],
    keys: list[bytes],
    tolerance: float = 300.0,
    now: float | None = None,
) -> str:
    """Check a Standard Webhooks signature; returns the ``webhook-id`` or raises :class:`WebhookAuthError`.

    ``headers`` must be case-insensitive (aiohttp's are). ``keys`` are the decoded secrets (:func:`hmac_key`).
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise WebhookAuthError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if "." in msg_id or len(msg_id) > 256:
        raise WebhookAuthError("invalid webhook-id")
    try:
        ts = int(timestamp)
    except ValueError:
        raise WebhookAuthError("webhook-timestamp is not an integer") from None
    now = time.time() if now is None else now
    if ts < now - tolerance:
        raise WebhookAuthError("webhook-timestamp too old (replayed or delayed message)")
    if ts > now + tolerance:
        raise WebhookAuthError("webhook-timestamp too new (sender clock ahead?)")
    presented = []
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and value:
            presented.append(value.encode())
    if not presented:
        raise WebhookAuthError("no v1 signature in webhook-signature")
    expected = [sign(key, msg_id, ts, body).split(",", 1)[1].encode() for key in keys]
    ok = False
    for value in presented:
        ok |= _any_equal(value, expected)
    if not ok:
        raise WebhookAuthError("no matching signature")
    return msg_id


def verify_basic(authorization: str | None, username: str, passwords: list[str]) -> None:
    """Check ``Authorization: Basic``; raises :class:`WebhookAuthError`."""
    if not authorization or not authorization[:6].lower() == "basic ":
        raise WebhookAuthError("missing Basic authorization")
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookAuthError("malformed Basic authorization") from None
    user, sep, password = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, username.encode())
    password_ok = _any_equal(password, [p.encode() for p in passwords])
    if not sep or not (user_ok and password_ok):
        raise WebhookAuthError("wrong username or password")


def verify_header(value: str | None, header: str, secrets: list[str]) -> None:
    """Check that header ``header`` holds one of ``secrets`` (bare or as ``Bearer <secret>``)."""
    if not value:
        raise WebhookAuthError(f"missing {header} header")
    presented = value.strip()
    bare = presented[7:].strip() if presented[:7].lower() == "bearer " else presented
    candidates = [s.encode() for s in secrets]
    if not (_any_equal(bare.encode(), candidates) | _any_equal(presented.encode(), candidates)):
        raise WebhookAuthError(f"wrong secret in {header} header")


def verify_url_token(token: str | None, secrets: list[str]) -> None:
    """Check ``?token=``; raises :class:`WebhookAuthError`."""
    if not token:
        raise WebhookAuthError("missing ?token= in the webhook URL")
    if not _any_equal(token.encode(), [s.encode() for s in secrets]):
        raise WebhookAuthError("wrong ?token= in the webhook URL")
