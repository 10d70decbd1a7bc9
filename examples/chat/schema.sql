-- Chat demo schema. Every change to the published tables, whoever makes it
-- (the app's server routes or a moderator in psql), reaches browsers through
-- the ably_pg rules declared at the end; nothing else publishes to Ably.
-- Idempotent: safe to run again on an existing database (also one made by an
-- earlier version of this file).
--
-- Identity: the app gives every browser session a random id (kept in its
-- sealed cookie). Rows store that id (author_id, user_id) for ownership and
-- the display name (author, user_name) for showing; names may repeat.

SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS ably_pg;
CREATE SCHEMA IF NOT EXISTS chat;

CREATE TABLE IF NOT EXISTS chat.rooms (
    -- The slug is the URL (/rooms/<id>) and part of the Ably channel name
    -- (chat:<id>): lower case, no ASCII punctuation but '-', no spaces or
    -- control characters. Letters of any script are allowed, so a room titled
    -- in Japanese gets a readable address.
    id         text PRIMARY KEY,
    title      text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 80),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE chat.rooms DROP CONSTRAINT IF EXISTS rooms_id_check;
ALTER TABLE chat.rooms ADD CONSTRAINT rooms_id_check CHECK (
    char_length(id) BETWEEN 1 AND 40
    AND id = lower(id)
    AND id !~ '[\x01-\x2c\x2e\x2f\x3a-\x60\x7b-\x7f[:space:][:cntrl:]]'
    AND left(id, 1) <> '-'
);

CREATE TABLE IF NOT EXISTS chat.messages (
    id         bigserial PRIMARY KEY,
    room_id    text NOT NULL REFERENCES chat.rooms (id) ON DELETE CASCADE,
    -- The display name at the time of writing.
    author     text NOT NULL,
    -- The writer's session id; only that session may edit or delete the
    -- message. NULL for rows written outside the app (psql).
    author_id  text,
    -- A deleted message keeps its row as a tombstone with an empty body.
    body       text NOT NULL CHECK (char_length(body) <= 4000),
    created_at timestamptz NOT NULL DEFAULT now(),
    edited_at  timestamptz,
    -- Who made the last edit / the delete: a session id, or the database role
    -- for a change made outside the app. Differs from author_id when a
    -- moderator changed the message.
    edited_by  text,
    deleted_at timestamptz,
    deleted_by text,
    -- Chosen by the sending browser, so that retrying a send whose answer was
    -- lost cannot post the message twice, and so that the browser recognises
    -- its own message when ably_pg delivers it.
    client_key uuid UNIQUE,
    -- Bumped by every UPDATE (see chat.messages_before_update), so a browser
    -- can tell a stale event from a newer one for the same message.
    version    integer NOT NULL DEFAULT 1,
    CONSTRAINT messages_body_present CHECK (deleted_at IS NOT NULL OR body <> '')
);
-- Columns added since the first version of this file.
ALTER TABLE chat.messages ADD COLUMN IF NOT EXISTS author_id text;
ALTER TABLE chat.messages ADD COLUMN IF NOT EXISTS edited_by text;
ALTER TABLE chat.messages ADD COLUMN IF NOT EXISTS deleted_by text;
ALTER TABLE chat.messages ADD COLUMN IF NOT EXISTS client_key uuid UNIQUE;
CREATE INDEX IF NOT EXISTS messages_room_id_id_idx ON chat.messages (room_id, id);

-- Earlier bodies of edited messages; purged when the message is deleted.
CREATE TABLE IF NOT EXISTS chat.message_edits (
    id         bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES chat.messages (id) ON DELETE CASCADE,
    -- The version of the message that carried this body.
    version    integer NOT NULL,
    body       text NOT NULL,
    -- The app user's display name (chat.actor, set by the server routes) or,
    -- for an edit made outside the app, the database role.
    edited_by  text NOT NULL,
    edited_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS message_edits_message_id_idx ON chat.message_edits (message_id, version);

-- One row per (message, person, emoji). Published on the message's room
-- channel, so toggling a reaction in a browser or in psql reaches everyone:
--   INSERT INTO chat.reactions (message_id, emoji) VALUES (42, '🎉');
--   DELETE FROM chat.reactions WHERE message_id = 42 AND user_id = session_user;
CREATE TABLE IF NOT EXISTS chat.reactions (
    message_id bigint NOT NULL REFERENCES chat.messages (id) ON DELETE CASCADE,
    -- Copied from the message (chat.reactions_before_write): the ably_pg
    -- rule's channel template needs the room in the published row.
    room_id    text NOT NULL,
    -- A session id, or the database role for a reaction added in psql.
    user_id    text NOT NULL DEFAULT session_user,
    user_name  text NOT NULL DEFAULT session_user CHECK (char_length(user_name) BETWEEN 1 AND 64),
    emoji      text NOT NULL CHECK (char_length(emoji) BETWEEN 1 AND 16),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);

-- How far each session has read each room; drives the unread counts. Never
-- published: it is private to the session.
CREATE TABLE IF NOT EXISTS chat.room_reads (
    user_id      text NOT NULL,
    room_id      text NOT NULL REFERENCES chat.rooms (id) ON DELETE CASCADE ON UPDATE CASCADE,
    last_read_id bigint NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Lives in the table rather than the app so that an edit made in psql is
-- versioned and recorded like one made in the browser. The app's routes set
-- chat.actor_id (session id) and chat.actor (display name) for the
-- transaction; without them the database role is the actor.
CREATE OR REPLACE FUNCTION chat.messages_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    actor_id text := coalesce(nullif(current_setting('chat.actor_id', true), ''), session_user);
    actor    text := coalesce(nullif(current_setting('chat.actor', true), ''), session_user);
BEGIN
    NEW.version := OLD.version + 1;
    IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
        NEW.body := '';
        NEW.edited_at := OLD.edited_at;
        NEW.edited_by := OLD.edited_by;
        NEW.deleted_by := actor_id;
        DELETE FROM chat.message_edits WHERE message_id = OLD.id;
        DELETE FROM chat.reactions WHERE message_id = OLD.id;
    ELSIF NEW.body IS DISTINCT FROM OLD.body THEN
        NEW.edited_at := now();
        NEW.edited_by := actor_id;
        INSERT INTO chat.message_edits (message_id, version, body, edited_by)
        VALUES (OLD.id, OLD.version, OLD.body, actor);
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER messages_before_update
    BEFORE UPDATE ON chat.messages
    FOR EACH ROW EXECUTE FUNCTION chat.messages_before_update();

CREATE OR REPLACE FUNCTION chat.reactions_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT m.room_id INTO NEW.room_id FROM chat.messages m WHERE m.id = NEW.message_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % does not exist', NEW.message_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER reactions_before_write
    BEFORE INSERT OR UPDATE ON chat.reactions
    FOR EACH ROW EXECUTE FUNCTION chat.reactions_before_write();

INSERT INTO chat.rooms (id, title, created_by)
VALUES ('general', 'General', 'system')
ON CONFLICT (id) DO NOTHING;

-- ably_pg rules: one per published table, created only once. Each change
-- arrives as an Ably message named '<table>.<event>' whose data is
-- {event, schema, table, new, old}.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ably.rules WHERE relid = 'chat.messages'::regclass) THEN
        PERFORM ably.publish_table('chat.messages', 'chat:{room_id}');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ably.rules WHERE relid = 'chat.reactions'::regclass) THEN
        PERFORM ably.publish_table('chat.reactions', 'chat:{room_id}');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ably.rules WHERE relid = 'chat.rooms'::regclass) THEN
        PERFORM ably.publish_table('chat.rooms', 'chat-rooms');
    END IF;
END
$$;
