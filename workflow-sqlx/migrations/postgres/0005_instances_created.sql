-- What `list` walks: every page is in (created_at, id) order, after a keyset, so this index
-- answers a page as a range read instead of a scan and sort of the whole table (an unfiltered
-- listing, a status or workflow filter, the retention sweep). Claims keep their own partial
-- indexes (0001).
CREATE INDEX instances_created ON instances (created_at, id);
