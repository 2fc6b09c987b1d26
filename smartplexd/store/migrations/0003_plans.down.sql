DROP TABLE job_runs;
DROP INDEX leaving_soon_active;
DROP TABLE leaving_soon;
DROP INDEX plan_items_plan;
DROP TABLE plan_items;
DROP TABLE plans;
