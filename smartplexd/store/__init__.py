"""SQLite storage: the connection (db.py), numbered migrations and cross-process locks."""

from smartplexd.store.db import Store, open_store

__all__ = ["Store", "open_store"]
