-- Workflow rate limits (flow control; SQLite's migration 0015): the starts of a rate-limited
-- workflow within its period, one row per claim with how many instances it started, which a claim
-- counts against the rate and prunes once a period old.
CREATE TABLE workflow_starts (
    workflow   TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    starts     BIGINT NOT NULL
);
CREATE INDEX workflow_starts_by_time ON workflow_starts (workflow, started_at);
