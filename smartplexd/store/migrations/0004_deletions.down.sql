DROP TABLE deletion_requests;
DROP TABLE restores;
DROP INDEX deletion_steps_due;
DROP TABLE deletion_steps;
DROP INDEX deletion_events_status;
DROP TABLE deletion_events;
