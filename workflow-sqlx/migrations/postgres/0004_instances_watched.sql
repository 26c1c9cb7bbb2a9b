-- Whether a process other than the one running the instance waits for its end (`Store::watch`,
-- set by a client waiting for a result). A finish sends its `Finished` NOTIFY only then: most
-- instances are awaited, if at all, by the process that runs them, which needs no signal, and a
-- NOTIFY costs every commit that sends one a global queue lock and wakes every listener.
-- Instances stored before this migration read as unwatched; their waiters poll.
ALTER TABLE instances ADD COLUMN watched BOOLEAN NOT NULL DEFAULT false;
