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
REVOKE EXECUTE ON FUNCTION ably.retry_dead_letters(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.start_worker() FROM PUBLIC;
-- EXECUTE on a trigger function is checked when a trigger is created, not
-- when it fires: only ably.publish_table() (as the extension owner) and
-- superusers attach it to tables.
REVOKE EXECUTE ON FUNCTION ably.capture() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.adopt_triggers() FROM PUBLIC;

-- Dropping a published table drops its triggers; drop its rules too.
CREATE FUNCTION ably.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    WITH gone AS (
        DELETE FROM ably.rules r
         USING pg_catalog.pg_event_trigger_dropped_objects() d
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) 0
           AND d.objid OPERATOR(pg_catalog.=) r.relid::pg_catalog.oid
        RETURNING r.id)
    DELETE FROM ably.conditions c USING gone WHERE c.rule_id OPERATOR(pg_catalog.=) gone.id;
END
$$;
REVOKE EXECUTE ON FUNCTION ably.forget_dropped_tables() FROM PUBLIC;
CREATE EVENT TRIGGER ably_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION ably.forget_dropped_tables();

CREATE VIEW ably.status AS SELECT * FROM ably.status();

-- Triggers that run ably.capture() belong to the extension (whether made by
-- ably.publish_table() or recreated by pg_restore).
CREATE EVENT TRIGGER ably_adopt_triggers ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION ably.adopt_triggers();

-- Delivery starts without a restart: the launcher starts this database's
-- worker once CREATE EXTENSION commits.
SELECT ably.start_worker();
