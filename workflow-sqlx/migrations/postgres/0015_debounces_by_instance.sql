-- A purge deletes the debounce keys pointing at the purged instances, so keys used once do not
-- stay forever (SQLite's migration 0016): this index finds them by instance.
CREATE INDEX debounces_by_instance ON debounces (instance_id);
