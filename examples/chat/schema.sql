-- Chat demo schema. Every change to these tables, whoever makes it (the app's
-- server routes or a moderator in psql), reaches browsers through ably_pg rules
-- declared at the end; nothing else publishes to Ably.
-- Idempotent: safe to run again on an existing database.

CREATE EXTENSION IF NOT EXISTS ably_pg;
CREATE SCHEMA IF NOT EXISTS chat;

CREATE TABLE IF NOT EXISTS chat.rooms (
    -- The slug is the URL (/rooms/<id>) and part of the Ably channel name
    -- (chat:<id>), so it is restricted to characters safe in both.
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
    title      text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 80),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS chat.messages (
    id         bigserial PRIMARY KEY,
    room_id    text NOT NULL REFERENCES chat.rooms (id) ON DELETE CASCADE,
    author     text NOT NULL,
    -- A deleted message keeps its row as a tombstone with an empty body.
    body       text NOT NULL CHECK (char_length(body) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    edited_at  timestamptz,
    deleted_at timestamptz,
    -- Bumped by every UPDATE (see chat.messages_before_update), so a browser
    -- can tell a stale event from a newer one for the same message.
    version    integer NOT NULL DEFAULT 1,
    CONSTRAINT messages_body_present CHECK (deleted_at IS NOT NULL OR body <> '')
);
CREATE INDEX IF NOT EXISTS messages_room_id_id_idx ON chat.messages (room_id, id);

-- Earlier bodies of edited messages; purged when the message is deleted.
CREATE TABLE IF NOT EXISTS chat.message_edits (
    id         bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES chat.messages (id) ON DELETE CASCADE,
    -- The version of the message that carried this body.
    version    integer NOT NULL,
    body       text NOT NULL,
    -- The app user (chat.actor, set by the server routes) or, for an edit
    -- made outside the app, the database role.
    edited_by  text NOT NULL,
    edited_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS message_edits_message_id_idx ON chat.message_edits (message_id, version);

-- Lives in the table rather than the app so that an edit made in psql is
-- versioned and recorded like one made in the browser.
CREATE OR REPLACE FUNCTION chat.messages_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
        NEW.body := '';
        NEW.edited_at := OLD.edited_at;
        DELETE FROM chat.message_edits WHERE message_id = OLD.id;
    ELSIF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.edited_at := now();
        INSERT INTO chat.message_edits (message_id, version, body, edited_by)
        VALUES (OLD.id, OLD.version, OLD.body,
                coalesce(nullif(current_setting('chat.actor', true), ''), session_user));
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER messages_before_update
    BEFORE UPDATE ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.messages_before_update();

INSERT INTO chat.rooms (id, title, created_by)
VALUES ('general', 'General', 'system')
ON CONFLICT (id) DO NOTHING;

-- ably_pg rules: one per table, created only once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ably.rules WHERE relid = 'chat.messages'::regclass) THEN
        PERFORM ably.publish_table('chat.messages', 'chat:{room_id}');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ably.rules WHERE relid = 'chat.rooms'::regclass) THEN
        PERFORM ably.publish_table('chat.rooms', 'chat-rooms');
    END IF;
END
$$;
