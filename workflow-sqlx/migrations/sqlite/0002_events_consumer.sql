-- An event is consumed by one durable operation, keyed by (generation, seq); 0001 kept only the
-- seq. An event is consumed once `consumed_by_seq` is set; the first consumer is kept.
ALTER TABLE events ADD COLUMN consumed_generation INTEGER;
