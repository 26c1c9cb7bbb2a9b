-- Inbox limits and reads by name. Each event keeps its payload's size in bytes, so the check of
-- an inbox's room (`AssertInboxRoom`) sums sizes from an index instead of reading payloads.
-- Rows written before this migration are measured once here.
ALTER TABLE events ADD COLUMN payload_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE events SET payload_bytes = octet_length(payload);

-- An event wait reads the unconsumed events of one name (ASCII case ignored: `name` is COLLATE
-- "C", whose lower() folds ASCII letters only) after an id; the room check counts and sums an
-- instance's unconsumed events. Both are answered from this index.
CREATE INDEX events_unconsumed ON events (instance_id, lower(name), seq) INCLUDE (payload_bytes)
    WHERE consumed_by_seq IS NULL;
