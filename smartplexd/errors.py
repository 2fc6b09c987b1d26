"""Errors a user can hit, each with the CLI exit code of ARCHITECTURE §6 and a message that says what to do.

0 ok · 1 error · 2 invalid config or usage · 3 finished with partial failures · 4 refused by a safety
check · 5 Plex token rejected.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_REFUSED = 4
EXIT_PLEX_UNAUTHORIZED = 5


class SmartplexdError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_ERROR


class UsageError(SmartplexdError):
    exit_code = EXIT_USAGE


class Refused(SmartplexdError):
    """A safety check said no (deletion disabled, wrong confirmation, outside the window, already running)."""

    exit_code = EXIT_REFUSED


class PartialFailure(SmartplexdError):
    exit_code = EXIT_PARTIAL


class PlexUnauthorized(SmartplexdError):
    """Plex answered 401: the token is wrong, expired or revoked. Nothing more is done on that server."""

    exit_code = EXIT_PLEX_UNAUTHORIZED

    def __init__(self, server: str, detail: str = "") -> None:
        self.server = server
        msg = (
            f"Plex server '{server}' rejected the token (401 Unauthorized){': ' + detail if detail else ''}. "
            f"Get a fresh X-Plex-Token (Plex Web → any item → Get Info → View XML, or "
            f"https://support.plex.tv/articles/204059436) and update plex.servers[{server}].token "
            f"(usually the PLEX_TOKEN environment variable), then restart or send SIGHUP."
        )
        super().__init__(msg)
