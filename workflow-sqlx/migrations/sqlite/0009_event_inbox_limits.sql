-- Inbox limits and reads by name. Each event keeps its payload's size in bytes, so the check of
-- an inbox's room (`AssertInboxRoom`) sums sizes from an index instead of reading payloads.
-- Rows written before this migration are measured once here.
ALTER TABLE events ADD COLUMN payload_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE events SET payload_bytes = length(CAST(payload AS BLOB));

-- An event wait reads the unconsumed events of one name (ASCII case ignored, as NOCASE does)
-- after an id; the room check counts and sums an instance's unconsumed events. Both are answered
-- from this index (the check without reading the table: SQLite counts an index as covering only
-- if it holds every column the query names, `consumed_by_seq` too, always NULL here). Its WHERE
-- must be spelled as the queries' for SQLite to use it.
CREATE INDEX events_unconsumed ON events (instance_id, name COLLATE NOCASE, seq, payload_bytes, consumed_by_seq)
    WHERE consumed_by_seq IS NULL;
