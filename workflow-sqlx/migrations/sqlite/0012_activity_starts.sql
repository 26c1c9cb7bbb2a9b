-- Activity rate limits (flow control): the claims of a rate-limited activity's tasks within the
-- period, by concurrency key, which a claim counts against the rate and prunes once a period old.
CREATE TABLE activity_starts (
    name            TEXT    NOT NULL,
    concurrency_key TEXT    NOT NULL,
    started_at      INTEGER NOT NULL
);
CREATE INDEX activity_starts_by_time ON activity_starts (name, started_at);
