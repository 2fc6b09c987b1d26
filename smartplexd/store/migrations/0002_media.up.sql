-- One row per Plex item. Rows are never hard-deleted while history refers to them: a sweep sets
-- removed_at (gone from Plex), a deletion by smartplexd sets deleted_at (tombstone).
CREATE TABLE media_items (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    section_id TEXT NOT NULL,
    section_title TEXT NOT NULL,
    rating_key TEXT NOT NULL,
    type TEXT NOT NULL,
    title TEXT NOT NULL,
    year INTEGER,
    guid TEXT,
    tmdb_id INTEGER,
    tvdb_id INTEGER,
    imdb_id TEXT,
    parent_rating_key TEXT,
    grandparent_rating_key TEXT,
    season_index INTEGER,
    episode_index INTEGER,
    added_at INTEGER,
    updated_at INTEGER,
    last_viewed_at INTEGER,
    view_count INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    files TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '[]',
    collections TEXT NOT NULL DEFAULT '[]',
    sources TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT,
    seen_in_sync INTEGER,
    removed_at REAL,
    deleted_at REAL,
    UNIQUE (server, rating_key)
);
CREATE INDEX media_items_section ON media_items (server, section_id);
CREATE INDEX media_items_parent ON media_items (server, parent_rating_key);
CREATE INDEX media_items_grandparent ON media_items (server, grandparent_rating_key);
CREATE INDEX media_items_tmdb ON media_items (tmdb_id);
CREATE INDEX media_items_tvdb ON media_items (tvdb_id);

-- An item deleted by smartplexd must not come back through a sync or webhook within the window.
CREATE TABLE tombstones (
    server TEXT NOT NULL,
    rating_key TEXT NOT NULL,
    item_id INTEGER REFERENCES media_items (id),
    guids TEXT NOT NULL DEFAULT '[]',
    deletion_id INTEGER,
    created_at REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (server, rating_key)
);

-- Facts per item and plugin. status: known (facts hold values), absent (the service answered and does not
-- hold the item), unknown (the service failed: error says why). Stale rows are unknown too.
CREATE TABLE item_facts (
    item_id INTEGER NOT NULL REFERENCES media_items (id),
    plugin TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'known',
    facts TEXT NOT NULL DEFAULT '{}',
    fetched_at REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (item_id, plugin)
);

CREATE TABLE sync_events (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    kind TEXT NOT NULL,
    library TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    duration_ms INTEGER,
    status TEXT NOT NULL,
    items_seen INTEGER NOT NULL DEFAULT 0,
    added INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sync_events_server ON sync_events (server, started_at);

-- What a full sync learned from each listing page it parsed (smartplexd/plex/sync.py): when Plex sends a
-- page with the same body digest again, its items are checked against media_items without parsing it.
-- A pure cache: any row may be deleted at any time.
CREATE TABLE sync_pages (
    server TEXT NOT NULL,
    section_id TEXT NOT NULL,
    type TEXT NOT NULL,
    start INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body_digest TEXT NOT NULL,
    total INTEGER NOT NULL,
    items INTEGER NOT NULL,
    digests TEXT NOT NULL,
    refs TEXT NOT NULL,
    PRIMARY KEY (server, section_id, type, start)
);

CREATE TABLE integration_health (
    name TEXT PRIMARY KEY,
    plugin TEXT NOT NULL,
    status TEXT NOT NULL,
    version TEXT,
    latency_ms REAL,
    checked_at REAL NOT NULL,
    error TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
