-- Tables of the delivery runs, same shape as the write path's: `backlog`
-- spreads its rows over N channels by room_id; `steady_*` are written by
-- pgbench at a fixed rate for latency and queue growth.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['backlog', 'steady_1000', 'steady_5000'] LOOP
        EXECUTE format(
            'CREATE TABLE %I (
                 id         bigserial   PRIMARY KEY,
                 room_id    int         NOT NULL,
                 author     text        NOT NULL,
                 body       text        NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 edited_at  timestamptz
             )', t);
    END LOOP;
END $$;
SELECT ably.publish_table('backlog', 'bench:{room_id}');
SELECT ably.publish_table(t, 'steady:{room_id}') FROM unnest(ARRAY['steady_1000', 'steady_5000']) t;
-- The backlog is written once and read by the worker: no autovacuum of it
-- may add WAL to the drain's measurement.
ALTER TABLE backlog SET (autovacuum_enabled = off);
