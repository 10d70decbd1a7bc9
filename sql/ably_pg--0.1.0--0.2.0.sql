-- ably_pg 0.1.0 → 0.2.0, run by ALTER EXTENSION ably_pg UPDATE (superuser).
--
-- What changes: who may publish (ably_publisher), conditions stored as
-- expression trees, channel grants, and the PgQ-style queue (rows carry
-- their writer's transaction id and are never deleted; ticks; batches as
-- id ranges). Nothing queued is lost and nothing sent is sent under other
-- ids:
-- - every 0.1.0 queue row (undelivered: 0.1.0 deleted delivered rows) is
--   copied into the new queue as part of tick 0, which this script cuts
--   into batches itself;
-- - 0.1.0 batches in flight keep their members and their message ids
--   (<system id>-<database oid>-<batch>), so Ably de-duplicates them if
--   0.1.0 had already sent them;
-- - rows written by writers that commit after this script belong to tick 1
--   onwards, as in a new install.
-- A rule whose condition no longer compiles with search_path pinned to
-- pg_catalog (an unqualified function of your own) stops the update with
-- the parser's error: qualify the function in ably.rules.condition and run
-- ALTER EXTENSION ably_pg UPDATE again.

-- Who may publish ---------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ably_publisher') THEN
        CREATE ROLE ably_publisher NOLOGIN;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION ably.publish_table(regclass, text, text[], text, text[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.unpublish_table(regclass, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ably.publish_table(regclass, text, text[], text, text[], text) TO ably_publisher;
GRANT EXECUTE ON FUNCTION ably.unpublish_table(regclass, bigint) TO ably_publisher;
GRANT EXECUTE ON FUNCTION ably.publish(text, text, jsonb) TO ably_publisher;

-- Rules: a dump filter, compiled conditions, channel grants ----------------
-- Rules of temporary or vanished tables (0.1.0 allowed temporary tables).
DELETE FROM ably.rules r
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c
                    WHERE c.oid OPERATOR(pg_catalog.=) r.relid::pg_catalog.oid
                      AND c.relpersistence OPERATOR(pg_catalog.<>) 't');
SELECT pg_catalog.pg_extension_config_dump('ably.rules',
    'WHERE EXISTS (SELECT FROM pg_catalog.pg_class c
                    WHERE c.oid OPERATOR(pg_catalog.=) relid::pg_catalog.oid
                      AND c.relpersistence OPERATOR(pg_catalog.<>) ''t'')');

CREATE TABLE ably.conditions (
    rule_id           bigint       PRIMARY KEY,
    expr              pg_node_tree NOT NULL,
    system_identifier bigint       NOT NULL
);

CREATE TABLE ably.channel_grants (
    role        regrole     NOT NULL,
    pattern     text        NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, pattern)
);
SELECT pg_catalog.pg_extension_config_dump('ably.channel_grants',
    'WHERE EXISTS (SELECT FROM pg_catalog.pg_roles r
                    WHERE r.oid OPERATOR(pg_catalog.=) role::pg_catalog.oid)');

-- The queue, its state, ticks and batches ---------------------------------
ALTER TABLE ably.queue RENAME TO queue_010;
ALTER TABLE ably.queue_0 RENAME TO queue_010_0;
ALTER TABLE ably.queue_1 RENAME TO queue_010_1;
ALTER TABLE ably.queue_2 RENAME TO queue_010_2;
ALTER INDEX ably.queue_id_idx RENAME TO queue_010_id_idx;
ALTER TABLE ably.queue_state RENAME TO queue_state_010;
ALTER INDEX ably.queue_state_pkey RENAME TO queue_state_010_pkey;
ALTER TABLE ably.batches RENAME TO batches_010;
ALTER INDEX ably.batches_pkey RENAME TO batches_010_pkey;

CREATE TABLE ably.queue (
    txid        bigint      NOT NULL,
    id          bigint      NOT NULL,
    part        smallint    NOT NULL,
    rule_id     bigint,
    channel     text        NOT NULL,
    name        text,
    data        json        NOT NULL,
    enqueued_at timestamptz NOT NULL
) PARTITION BY LIST (part);
CREATE TABLE ably.queue_0 PARTITION OF ably.queue FOR VALUES IN (0);
CREATE TABLE ably.queue_1 PARTITION OF ably.queue FOR VALUES IN (1);
CREATE TABLE ably.queue_2 PARTITION OF ably.queue FOR VALUES IN (2);
CREATE INDEX queue_txid_idx ON ably.queue (txid);
ALTER TABLE ably.queue_0 SET (autovacuum_enabled = off);
ALTER TABLE ably.queue_1 SET (autovacuum_enabled = off);
ALTER TABLE ably.queue_2 SET (autovacuum_enabled = off);

-- The 0.1.0 rows, as committed long ago (txid 2): tick 0 saw them and the
-- empty tick -1 did not, so they are exactly tick 0's rows.
INSERT INTO ably.queue (txid, id, part, rule_id, channel, name, data, enqueued_at)
SELECT 2, id, 0, rule_id, channel, name, data, enqueued_at FROM ably.queue_010;

CREATE TABLE ably.queue_state (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    current_part    smallint    NOT NULL DEFAULT 0 CHECK (current_part BETWEEN 0 AND 2),
    retired_xid     bigint[]    NOT NULL DEFAULT '{NULL,NULL,NULL}',
    rotated_at      timestamptz NOT NULL DEFAULT now(),
    rotations       bigint      NOT NULL DEFAULT 0,
    cut_tick        bigint      NOT NULL DEFAULT 0,
    epoch           text        NOT NULL,
    epoch_timeline  integer     NOT NULL
);
INSERT INTO ably.queue_state (epoch, epoch_timeline)
SELECT pg_catalog.substr(pg_catalog.md5(pg_catalog.random()::pg_catalog.text
                                        OPERATOR(pg_catalog.||) pg_catalog.clock_timestamp()::pg_catalog.text), 1, 12),
       0;

CREATE TABLE ably.ticks (
    id          bigint      PRIMARY KEY,
    snap_xmin   bigint      NOT NULL,
    snap_xmax   bigint      NOT NULL,
    snap_xip    bigint[]    NOT NULL,
    created_at  timestamptz NOT NULL
);
INSERT INTO ably.ticks (id, snap_xmin, snap_xmax, snap_xip, created_at)
VALUES (-1, 1, 1, '{}', pg_catalog.now());
INSERT INTO ably.ticks (id, snap_xmin, snap_xmax, snap_xip, created_at)
SELECT 0,
       pg_catalog.pg_snapshot_xmin(s)::pg_catalog.text::pg_catalog.int8,
       pg_catalog.pg_snapshot_xmax(s)::pg_catalog.text::pg_catalog.int8,
       ARRAY(SELECT x::pg_catalog.text::pg_catalog.int8 FROM pg_catalog.pg_snapshot_xip(s) AS x)
           OPERATOR(pg_catalog.||) pg_catalog.pg_current_xact_id()::pg_catalog.text::pg_catalog.int8,
       pg_catalog.now()
  FROM pg_catalog.pg_current_snapshot() AS s;

CREATE TABLE ably.batches (
    id          bigint      PRIMARY KEY,
    base        text        NOT NULL,
    tick        bigint      NOT NULL,
    channel     text        NOT NULL,
    first_id    bigint      NOT NULL,
    last_id     bigint      NOT NULL,
    count       integer     NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Batches 0.1.0 had in flight: same members, same message ids.
INSERT INTO ably.batches (id, base, tick, channel, first_id, last_id, count, created_at)
SELECT b.id,
       pg_catalog.to_hex(sys.system_identifier) OPERATOR(pg_catalog.||) '-'
           OPERATOR(pg_catalog.||) db.oid::pg_catalog.text OPERATOR(pg_catalog.||) '-'
           OPERATOR(pg_catalog.||) b.id::pg_catalog.text,
       0, b.channel,
       (SELECT pg_catalog.min(x) FROM pg_catalog.unnest(b.queue_ids) AS x),
       (SELECT pg_catalog.max(x) FROM pg_catalog.unnest(b.queue_ids) AS x),
       pg_catalog.cardinality(b.queue_ids),
       b.created_at
  FROM ably.batches_010 b,
       pg_catalog.pg_control_system() AS sys,
       pg_catalog.pg_database AS db
 WHERE db.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();

-- The other 0.1.0 rows: new batches, per channel in queue order, under the
-- new epoch (a batch Ably finds too large is split by the worker).
WITH rest AS (
    SELECT q.id, q.channel,
           (pg_catalog.row_number() OVER (PARTITION BY q.channel ORDER BY q.id) OPERATOR(pg_catalog.-) 1)
               OPERATOR(pg_catalog./) 500 AS chunk
      FROM ably.queue_010 q
     WHERE NOT EXISTS (SELECT FROM ably.batches_010 b WHERE q.id OPERATOR(pg_catalog.=) ANY (b.queue_ids))
), chunks AS (
    SELECT channel, chunk, pg_catalog.min(id) AS first_id, pg_catalog.max(id) AS last_id,
           pg_catalog.count(*)::pg_catalog.int4 AS n
      FROM rest GROUP BY channel, chunk
), numbered AS (
    SELECT c.*, pg_catalog.nextval('ably.batch_id_seq'::pg_catalog.regclass) AS batch
      FROM (SELECT * FROM chunks ORDER BY first_id) AS c
)
INSERT INTO ably.batches (id, base, tick, channel, first_id, last_id, count, created_at)
SELECT n.batch, s.epoch OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) n.batch::pg_catalog.text,
       0, n.channel, n.first_id, n.last_id, n.n, pg_catalog.now()
  FROM numbered n, ably.queue_state s;

DROP TABLE ably.queue_010;
DROP TABLE ably.queue_state_010;
DROP TABLE ably.batches_010;

REVOKE ALL ON ably.queue, ably.queue_0, ably.queue_1, ably.queue_2, ably.queue_state,
              ably.ticks, ably.batches, ably.conditions, ably.channel_grants FROM PUBLIC;

-- Functions ---------------------------------------------------------------
-- retry_dead_letters gains channel and force; grants carry over.
DO $$
DECLARE
    grantees oid[];
    g oid;
BEGIN
    SELECT pg_catalog.array_agg(a.grantee) INTO grantees
      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid OPERATOR(pg_catalog.=) 'ably.retry_dead_letters(bigint[])'::pg_catalog.regprocedure
       AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
       AND a.grantee OPERATOR(pg_catalog.<>) 0::pg_catalog.oid
       AND a.grantee OPERATOR(pg_catalog.<>) p.proowner;
    DROP FUNCTION ably.retry_dead_letters(bigint[]);
    CREATE FUNCTION ably.retry_dead_letters(ids bigint[] DEFAULT NULL, channel text DEFAULT NULL, force boolean DEFAULT false)
    RETURNS bigint VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'retry_dead_letters_wrapper';
    COMMENT ON FUNCTION ably.retry_dead_letters(bigint[], text, boolean) IS
        'Queue dead letters again (all, or those with the given ids), oldest first, skipping row changes a later change superseded unless force; channel gives those without one a channel. Returns how many were queued';
    REVOKE EXECUTE ON FUNCTION ably.retry_dead_letters(bigint[], text, boolean) FROM PUBLIC;
    FOREACH g IN ARRAY COALESCE(grantees, '{}') LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION ably.retry_dead_letters(bigint[], text, boolean) TO %I',
                                  pg_catalog.pg_get_userbyid(g));
    END LOOP;
END
$$;

CREATE FUNCTION ably.grant_channels(role regrole, patterns text[])
RETURNS integer VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'grant_channels_wrapper';
COMMENT ON FUNCTION ably.grant_channels(regrole, text[]) IS
    'Allow a role''s rules and ably.publish() to target channels matching these Ably capability patterns (''*'', ''ns:*'' or a name); returns how many were added';
CREATE FUNCTION ably.revoke_channels(role regrole, patterns text[] DEFAULT NULL)
RETURNS integer VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'revoke_channels_wrapper';
COMMENT ON FUNCTION ably.revoke_channels(regrole, text[]) IS
    'Remove channel patterns granted to a role (all of them when patterns is NULL); returns how many were removed';
CREATE FUNCTION ably.start_worker() RETURNS void
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'start_worker_wrapper';
COMMENT ON FUNCTION ably.start_worker() IS
    'Ask the launcher to start this database''s delivery worker when the transaction commits (CREATE EXTENSION does)';
CREATE FUNCTION ably.compile_conditions() RETURNS integer
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'compile_conditions_wrapper';
COMMENT ON FUNCTION ably.compile_conditions() IS
    'Compile every rule''s condition again (after pg_upgrade); returns how many';
REVOKE EXECUTE ON FUNCTION ably.grant_channels(regrole, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.revoke_channels(regrole, text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.start_worker() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ably.compile_conditions() FROM PUBLIC;

-- Event triggers ----------------------------------------------------------
DROP EVENT TRIGGER ably_forget_dropped_tables;
DROP FUNCTION ably.forget_dropped_tables();
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

CREATE FUNCTION ably.guard_ddl() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'ably_guard_ddl';
REVOKE EXECUTE ON FUNCTION ably.guard_ddl() FROM PUBLIC;
CREATE EVENT TRIGGER ably_guard_ddl ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'ALTER TABLE')
    EXECUTE FUNCTION ably.guard_ddl();

CREATE FUNCTION ably.follow_renames() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'ably_follow_renames';
REVOKE EXECUTE ON FUNCTION ably.follow_renames() FROM PUBLIC;
CREATE EVENT TRIGGER ably_follow_renames ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION ably.follow_renames();

-- Conditions become expression trees (and their functions dependencies).
SELECT ably.compile_conditions();

-- Delivery resumes under the new worker once this commits.
SELECT ably.start_worker();
