-- Privileges and housekeeping that need every function to exist first.

-- Publishing is a right a DBA grants: members of ably_publisher may declare
-- rules on tables they own and queue application events, e.g.
--   GRANT ably_publisher TO app;
-- (and ably.grant_channels() can narrow the channels each role may target).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ably_publisher') THEN
        CREATE ROLE ably_publisher NOLOGIN;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION ably.publish_table(regclass, text, text[], text, text[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.unpublish_table(regclass, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.publish(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ably.publish_table(regclass, text, text[], text, text[], text) TO ably_publisher;
GRANT EXECUTE ON FUNCTION ably.unpublish_table(regclass, bigint) TO ably_publisher;
GRANT EXECUTE ON FUNCTION ably.publish(text, text, jsonb) TO ably_publisher;
REVOKE EXECUTE ON FUNCTION ably.grant_channels(regrole, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.revoke_channels(regrole, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.create_token_request(text, jsonb, interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.retry_dead_letters(bigint[], text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.start_worker() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.compile_conditions() FROM PUBLIC;
-- EXECUTE on a trigger function is checked when a trigger is created, not
-- when it fires: only ably.publish_table() (as the extension owner) and
-- superusers attach it to tables.
REVOKE EXECUTE ON FUNCTION ably.capture() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.adopt_triggers() FROM PUBLIC;

-- Keeping rules and triggers consistent in every DDL path (src/ddl.rs):
-- dropping a published table drops its rules; a rule whose trigger went
-- away (DROP COLUMN ... CASCADE, DROP FUNCTION ... CASCADE of a condition's
-- function, DROP TRIGGER) is removed with its other trigger.
CREATE FUNCTION ably.forget_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone bigint;
    other record;
BEGIN
    WITH dropped AS (
        DELETE FROM ably.rules r
         USING pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) 0
           AND d.objid OPERATOR(pg_catalog.=) r.relid::pg_catalog.oid
        RETURNING r.id)
    DELETE FROM ably.conditions c USING dropped WHERE c.rule_id OPERATOR(pg_catalog.=) dropped.id;

    -- A dropped trigger named like a rule's and on that rule's own table
    -- (not a partition's clone, not a look-alike on another table).
    FOR gone IN
        SELECT DISTINCT r.id
          FROM pg_catalog.pg_event_trigger_dropped_objects() d,
               LATERAL pg_catalog.regexp_match(d.object_identity, '^ably_rule_([0-9]+)(?:_truncate)? on (.*)$') m
          JOIN ably.rules r ON r.id OPERATOR(pg_catalog.=) m[1]::pg_catalog.int8
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.relid::pg_catalog.oid
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass
           AND m[2] OPERATOR(pg_catalog.=) (pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                                            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname))
    LOOP
        FOR other IN
            SELECT t.tgname, t.tgrelid::pg_catalog.regclass AS rel
              FROM pg_catalog.pg_trigger t
             WHERE t.tgname OPERATOR(pg_catalog.=) ANY (ARRAY['ably_rule_' OPERATOR(pg_catalog.||) gone,
                                                              'ably_rule_' OPERATOR(pg_catalog.||) gone OPERATOR(pg_catalog.||) '_truncate'])
               AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
        LOOP
            EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS %I ON %s', other.tgname, other.rel);
        END LOOP;
        DELETE FROM ably.rules WHERE id OPERATOR(pg_catalog.=) gone;
        DELETE FROM ably.conditions WHERE rule_id OPERATOR(pg_catalog.=) gone;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION ably.forget_dropped() FROM PUBLIC;
CREATE EVENT TRIGGER ably_forget_dropped ON sql_drop
    EXECUTE FUNCTION ably.forget_dropped();

-- DROP EXTENSION with undelivered messages and ALTER COLUMN TYPE of a column
-- a rule reads are refused with a hint.
CREATE FUNCTION ably.guard_ddl() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'ably_guard_ddl';
REVOKE EXECUTE ON FUNCTION ably.guard_ddl() FROM PUBLIC;
CREATE EVENT TRIGGER ably_guard_ddl ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'ALTER TABLE')
    EXECUTE FUNCTION ably.guard_ddl();

-- Rules follow ALTER TABLE ... RENAME COLUMN.
CREATE FUNCTION ably.follow_renames() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'ably_follow_renames';
REVOKE EXECUTE ON FUNCTION ably.follow_renames() FROM PUBLIC;
CREATE EVENT TRIGGER ably_follow_renames ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION ably.follow_renames();

CREATE VIEW ably.status AS SELECT * FROM ably.status();

-- Triggers that run ably.capture() belong to the extension (whether made by
-- ably.publish_table() or recreated by pg_restore).
CREATE EVENT TRIGGER ably_adopt_triggers ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION ably.adopt_triggers();

-- Delivery starts without a restart: the launcher starts this database's
-- worker once CREATE EXTENSION commits.
SELECT ably.start_worker();
