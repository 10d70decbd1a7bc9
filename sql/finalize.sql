-- Privileges and housekeeping that need every function to exist first.

-- Application events outside row changes: granted explicitly, e.g.
--   GRANT EXECUTE ON FUNCTION ably.publish(text, text, jsonb) TO app;
REVOKE EXECUTE ON FUNCTION ably.publish(text, text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.create_token_request(text, jsonb, interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.retry_dead_letters(bigint[]) FROM PUBLIC;
-- EXECUTE on a trigger function is checked when a trigger is created, not
-- when it fires: only ably.publish_table() (as the extension owner) and
-- superusers attach it to tables.
REVOKE EXECUTE ON FUNCTION ably.capture() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.adopt_triggers() FROM PUBLIC;

-- Dropping a published table drops its triggers; drop its rules too.
CREATE FUNCTION ably.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM ably.rules r
     USING pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_catalog.pg_class'::regclass
       AND d.objsubid = 0
       AND d.objid = r.relid::oid;
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
