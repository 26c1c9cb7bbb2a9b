-- The trace of the instance that queued an activity attempt (a W3C traceparent), so the worker
-- that runs it, in any process, continues that trace.
ALTER TABLE activity_tasks ADD COLUMN trace_context TEXT;
