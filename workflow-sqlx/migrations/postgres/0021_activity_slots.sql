-- Activity slots: a worker's share of a capped activity's concurrency under one key, taken while
-- the cap has room and nothing of that key is queued. The worker runs that many attempts of its
-- own at once with no task row; every capped claim and leasing write counts live slots as it
-- counts running tasks.
CREATE TABLE activity_slots (
    name TEXT NOT NULL,
    concurrency_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    slots BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (name, concurrency_key, owner)
);
CREATE INDEX activity_slots_by_owner ON activity_slots (owner);
