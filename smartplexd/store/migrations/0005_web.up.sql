-- Every accepted webhook is stored before it is answered 2xx; processing happens after.
-- status: received | retry (deferred, e.g. a full sync holds the server's lock) | processed | ignored | failed
CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    event_type TEXT,
    status TEXT NOT NULL DEFAULT 'received',
    payload TEXT NOT NULL,
    processed_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    error TEXT,
    UNIQUE (source, event_id)
);
CREATE INDEX webhook_events_status ON webhook_events (status, received_at);

-- Events for the status page (SSE); ids are the resume points for Last-Event-ID, across processes.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);

-- One row per call to the AI provider (every attempt, failed ones too). ask_id groups the calls of one
-- question; the monthly budget sums cost_usd by ts.
CREATE TABLE ai_usage (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    ask_id TEXT,
    actor TEXT,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_ms INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    error TEXT
);
CREATE INDEX ai_usage_ts ON ai_usage (ts);
