-- The trace an instance belongs to (a W3C traceparent), as its starter gave it or its parent's
-- for a child; NULL: derived from the instance's id and creation time.
ALTER TABLE instances ADD COLUMN trace_context TEXT;
