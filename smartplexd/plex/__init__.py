"""Plex: the client (:mod:`smartplexd.plex.client`) and the library mirror (:mod:`smartplexd.plex.sync`)."""

from smartplexd.plex.client import PlexClient, PlexDeletionDisabled, PlexError, RetryPolicy

__all__ = ["PlexClient", "PlexDeletionDisabled", "PlexError", "RetryPolicy"]
