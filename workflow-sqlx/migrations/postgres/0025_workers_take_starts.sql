-- The workflows whose starts each worker takes assigned at their creation (`Lease::Assign`): a
-- client without a runtime reads the live workers that take its workflow (`Store::start_takers`)
-- and creates the start owned by one of them, which runs it when the store signals it, so no
-- claim rewrites the row. Empty for a worker that takes none (an older version, a runtime on a
-- given clock); a worker's flow-controlled workflows are never among them.
ALTER TABLE workers ADD COLUMN takes TEXT[] NOT NULL DEFAULT '{}';
