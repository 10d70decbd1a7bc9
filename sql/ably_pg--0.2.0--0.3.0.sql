-- ably_pg 0.2.0 → 0.3.0, run by ALTER EXTENSION ably_pg UPDATE (superuser).
--
-- What changes: a tick's batches are no longer one row of ably.batches
-- each. The tick is stored when it is cut, with what makes the cut
-- repeatable and which of its batches are settled (src/batch.rs), so the
-- worker writes one row per cut instead of one per batch. ably.batches keeps
-- the batches a repeatable cut does not give (re-cut after a 429, split
-- after a refusal) and those 0.2.0 recorded: they are sent as before, with
-- their ids. The newest stored tick is where the next cut starts, so
-- queue_state.cut_tick goes, and so do ticks taken but not cut yet (their
-- rows are cut again, into the next tick, as after a crash).
DELETE FROM ably.ticks
 WHERE id OPERATOR(pg_catalog.>) (SELECT cut_tick FROM ably.queue_state);
ALTER TABLE ably.queue_state DROP COLUMN cut_tick;
ALTER TABLE ably.ticks
    ADD COLUMN epoch       text,
    ADD COLUMN batch_size  integer,
    ADD COLUMN max_bytes   integer,
    ADD COLUMN row_count   integer,
    ADD COLUMN batch_count integer,
    ADD COLUMN settled     integer[];
