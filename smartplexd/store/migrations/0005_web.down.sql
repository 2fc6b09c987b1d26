DROP TABLE ai_usage;
DROP TABLE events;
DROP INDEX webhook_events_status;
DROP TABLE webhook_events;
