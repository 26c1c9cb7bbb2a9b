-- What `list` reads for a status filter ("which instances are Running"): the instances of one
-- status, already in list order, so a page of them (after a keyset) is a range read however many
-- instances of other statuses there are. 0006's (created_at, id) index made such a page walk and
-- skip every older instance of another status: a page of the few Running instances among a million
-- finished ones read the million. Several statuses are read as a page per status, merged (see
-- `shared/list.rs`). A status filter with a parent is still answered by `instances_parent`.
CREATE INDEX instances_status ON instances (status, created_at, id);
