-- A deletion intent is written (with all its steps) before any side effect.
-- status: pending | running | done | partial | failed | skipped
CREATE TABLE deletion_events (
    id INTEGER PRIMARY KEY,
    plan_id INTEGER REFERENCES plans (id),
    plan_item_id INTEGER REFERENCES plan_items (id),
    item_id INTEGER NOT NULL REFERENCES media_items (id),
    server TEXT NOT NULL,
    rating_key TEXT NOT NULL,
    title TEXT NOT NULL,
    rule TEXT,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    actor TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    bytes_freed INTEGER NOT NULL DEFAULT 0,
    snapshot TEXT NOT NULL DEFAULT '{}',
    restored_at REAL
);
CREATE INDEX deletion_events_status ON deletion_events (status);

-- status: pending | running | done | failed | skipped. A failed step with next_attempt_at is in the retry
-- queue (its deletion is partial); one without gave up after retry.max_attempts (its deletion is failed).
CREATE TABLE deletion_steps (
    id INTEGER PRIMARY KEY,
    deletion_id INTEGER NOT NULL REFERENCES deletion_events (id),
    seq INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    result TEXT NOT NULL DEFAULT '{}',
    started_at REAL,
    finished_at REAL,
    UNIQUE (deletion_id, seq)
);
CREATE INDEX deletion_steps_due ON deletion_steps (status, next_attempt_at);

CREATE TABLE restores (
    id INTEGER PRIMARY KEY,
    deletion_id INTEGER NOT NULL REFERENCES deletion_events (id),
    actor TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);

-- Filed by requester tokens; admins see them in `plan` and can include them.
CREATE TABLE deletion_requests (
    id INTEGER PRIMARY KEY,
    item_id INTEGER REFERENCES media_items (id),
    server TEXT,
    rating_key TEXT,
    requested_by TEXT NOT NULL,
    reason TEXT,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    plan_id INTEGER REFERENCES plans (id)
);
