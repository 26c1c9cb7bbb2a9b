-- A worker's instances by owner, then id: a lease renewal (and a release) goes through them a
-- chunk at a time in id order, each chunk a range of this index, not a sort of all of them.
DROP INDEX instances_owner;
CREATE INDEX instances_owner ON instances (owner, id) WHERE owner IS NOT NULL;
