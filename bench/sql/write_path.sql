-- The write-path variants: one table per variant, all of the same shape (a
-- chat message), so that the only difference between them is what fires on
-- a write. Run once on a fresh cluster with ably_pg created.

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['w_plain', 'w_notify', 'w_outbox', 'w_ably', 'w_ably_paused',
                             'u_plain', 'u_ably', 'u_ably_paused'] LOOP
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

-- The rows the UPDATE variants change (:rows is set by run.mjs through psql).
INSERT INTO u_plain (room_id, author, body)
    SELECT g % 100 + 1, 'user' || (g % 1000), 'a chat message of a typical length, seeded ' || g
    FROM generate_series(1, :rows) g;
INSERT INTO u_ably SELECT * FROM u_plain;
INSERT INTO u_ably_paused SELECT * FROM u_plain;
SELECT setval(pg_get_serial_sequence(t, 'id'), :rows) FROM unnest(ARRAY['u_ably', 'u_ably_paused']) t;

-- The old connector's approach: every change is a NOTIFY carrying the row.
CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat', row_to_json(NEW)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER notify AFTER INSERT OR UPDATE ON w_notify
    FOR EACH ROW EXECUTE FUNCTION bench_notify();

-- A hand-written transactional outbox.
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    channel    text        NOT NULL,
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION bench_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (channel, name, payload)
        VALUES ('chat:' || NEW.room_id, TG_TABLE_NAME || '.' || lower(TG_OP), to_jsonb(NEW));
    RETURN NULL;
END $$;
CREATE TRIGGER outbox AFTER INSERT OR UPDATE ON w_outbox
    FOR EACH ROW EXECUTE FUNCTION bench_outbox();

-- ably_pg: one rule per table.
SELECT ably.publish_table(t, 'chat:{room_id}')
    FROM unnest(ARRAY['w_ably', 'w_ably_paused', 'u_ably', 'u_ably_paused']) t;

VACUUM ANALYZE;
