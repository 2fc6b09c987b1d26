CREATE TABLE plans (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    rules TEXT NOT NULL DEFAULT '[]',
    status TEXT NOT NULL DEFAULT 'draft',
    total_items INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    unknown_sources TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}'
);

-- status: selected | leaving_soon (in its grace period) | skipped (unknown facts) | excluded (keep label, grace
-- period, tombstone, covered by its show, already selected) | limited (rule, global or storage limits)
CREATE TABLE plan_items (
    id INTEGER PRIMARY KEY,
    plan_id INTEGER NOT NULL REFERENCES plans (id),
    item_id INTEGER NOT NULL REFERENCES media_items (id),
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    reasons TEXT NOT NULL DEFAULT '[]',
    skip_reason TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    rank INTEGER
);
CREATE INDEX plan_items_plan ON plan_items (plan_id, status);

-- "Leaving soon": items in their grace period, shown in a Plex collection until due.
CREATE TABLE leaving_soon (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES media_items (id),
    rule TEXT NOT NULL,
    collection TEXT,
    plan_id INTEGER REFERENCES plans (id),
    added_at REAL NOT NULL,
    due_at REAL NOT NULL,
    last_viewed_at_start INTEGER,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX leaving_soon_active ON leaving_soon (item_id, rule) WHERE status IN ('pending', 'due');

-- Scheduler job status, readable by `status` and the status page from any process.
CREATE TABLE job_runs (
    job_id TEXT PRIMARY KEY,
    description TEXT,
    next_run_at REAL,
    last_run_at REAL,
    last_status TEXT,
    last_error TEXT,
    last_duration_ms INTEGER
);
