// The four escalations the attack review found (issue 9, items 1–4), each
// replayed exactly as reported, with the one object the reviewer planted:
//   1. a writer's generate_series(int, int) / now() run by the trigger as
//      the extension owner (the latter through a NULL channel column);
//   2. a table owner's OPERATOR =(regclass, regclass) run inside
//      ably.publish_table / ably.unpublish_table;
//   3. the database owner's public.pg_relation_size(text) (and nextval,
//      setval; unnest(bigint[]) too, though PostgreSQL already qualifies the
//      multi-argument unnest the worker uses) run by the background worker
//      as the bootstrap superuser;
//   4. a writer's OPERATOR ~~(text, text) run as the table's owner through a
//      rule condition `body LIKE '%@%'` — reading the owner's private table,
//      or becoming superuser when the owner is one.
// Each planted object logs who ran it and tries ALTER ROLE … SUPERUSER.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  securityStack, createRole, isSuperuser, waitForOrExplain, assertNoForeignRuns, errorOf,
} from './lib.mjs';
import { literal } from './shadows.mjs';

let s;
const app = (sql, params) => s.su(sql, params, 'app');

/** The body of a planted function: report, try to escalate, behave. */
function spy(what, creator, ret, extra = '') {
  return `LANGUAGE plpgsql AS $spy$
    BEGIN
      RAISE LOG 'ably-shadow [%] of % ran as %', ${literal(what)}, ${literal(creator)}, current_user;
      ${extra}
      IF current_user::text OPERATOR(pg_catalog.<>) ${literal(creator)} THEN
        BEGIN
          EXECUTE ${literal(`ALTER ROLE ${creator} SUPERUSER`)};
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
      END IF;
      ${ret}
    END $spy$`;
}

before(async () => {
  s = await securityStack({ settings: { 'ably.database': "'app'" } });
  for (const r of ['dbo', 'me1', 'me2', 'me4', 'owner4']) await createRole(s, r);
  await s.su(`CREATE DATABASE app OWNER dbo`);
  await app(`CREATE EXTENSION ably_pg`);
  await app(`CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO PUBLIC`);
  for (const r of ['me1', 'me2', 'me4']) await app(`CREATE SCHEMA myschema_${r} AUTHORIZATION ${r}`);
  await waitForOrExplain(s, async () => (await app(`SELECT state FROM ably.status`)).rows[0].state === 'running', { mark: 0, timeout: 60000, what: 'the worker for app' });
}, { timeout: 120000 });
after(() => s?.stop());

test('item 1a: a writer\'s generate_series(int, int) never runs as the extension owner', async () => {
  await app(`CREATE TABLE app.t1 (id int PRIMARY KEY, room int, body text)`);
  await app(`GRANT INSERT ON app.t1 TO me1`);
  await app(`SELECT ably.publish_table('app.t1', 'one:{room}')`);
  const c = await s.connect({ user: 'me1', db: 'app', pinned: false });
  await c.query(`CREATE FUNCTION myschema_me1.generate_series(int, int) RETURNS SETOF int
    ${spy('generate_series(int,int)', 'me1', 'RETURN QUERY SELECT * FROM pg_catalog.generate_series($1, $2);')}`);
  const mark = s.logMark();
  await c.query(`SET search_path = myschema_me1, pg_catalog`);
  const e = await errorOf(c.query(`INSERT INTO app.t1 VALUES (1, 1, 'hi')`));
  await c.end();
  assertNoForeignRuns(s, mark, ['me1']);
  assert.equal(await isSuperuser(s, 'me1'), false, 'me1 became a superuser');
  assert.equal(e, null, `the insert failed: ${e?.message}`);
  await waitForOrExplain(s, async () => (await s.history('one:1')).length === 1, { mark, creators: ['me1'], what: 'delivery' });
});

test('item 1b: a writer\'s now() never runs as the extension owner when a channel column is NULL', async () => {
  await app(`CREATE TABLE app.t1b (id int PRIMARY KEY, room int, body text)`);
  await app(`GRANT INSERT ON app.t1b TO me1`);
  await app(`SELECT ably.publish_table('app.t1b', 'oneb:{room}')`);
  const c = await s.connect({ user: 'me1', db: 'app', pinned: false });
  await c.query(`CREATE FUNCTION myschema_me1.now() RETURNS timestamptz ${spy('now()', 'me1', 'RETURN pg_catalog.now();')}`);
  const mark = s.logMark();
  await c.query(`SET search_path = myschema_me1, pg_catalog`);
  const e = await errorOf(c.query(`INSERT INTO app.t1b VALUES (1, NULL, 'no room')`));
  await c.end();
  assertNoForeignRuns(s, mark, ['me1']);
  assert.equal(await isSuperuser(s, 'me1'), false, 'me1 became a superuser');
  assert.equal(e, null, `the insert failed: ${e?.message}`);
  const { rows } = await app(`SELECT error_message FROM ably.dead_letters WHERE channel IS NULL AND data::text LIKE '%no room%'`);
  assert.equal(rows.length, 1, 'the row is kept as a dead letter');
  assert.match(rows[0].error_message, /room/);
});

test('item 2: a table owner\'s OPERATOR =(regclass, regclass) never runs inside publish_table/unpublish_table', async () => {
  const c = await s.connect({ user: 'me2', db: 'app', pinned: false });
  await c.query(`CREATE TABLE myschema_me2.mine (id int PRIMARY KEY, room int)`);
  await c.query(`CREATE FUNCTION myschema_me2.regclass_eq(regclass, regclass) RETURNS boolean
    ${spy('=(regclass,regclass)', 'me2', 'RETURN $1::oid OPERATOR(pg_catalog.=) $2::oid;')}`);
  await c.query(`CREATE OPERATOR myschema_me2.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = myschema_me2.regclass_eq)`);
  const mark = s.logMark();
  await c.query(`SET search_path = myschema_me2, public`);
  // Where ably_publisher exists (the fixed code), me2 is a legitimate publisher.
  await app(`DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ably_publisher') THEN GRANT ably_publisher TO me2; END IF; END $$`);
  const e1 = await errorOf(c.query(`SELECT ably.publish_table('myschema_me2.mine', 'two:{room}')`));
  const e2 = await errorOf(c.query(`SELECT ably.unpublish_table('myschema_me2.mine')`));
  await c.end();
  assertNoForeignRuns(s, mark, ['me2']);
  assert.equal(await isSuperuser(s, 'me2'), false, 'me2 became a superuser');
  assert.equal(e1, null, `publish_table failed: ${e1?.message}`);
  assert.equal(e2, null, `unpublish_table failed: ${e2?.message}`);
});

test('item 3: the database owner\'s public.pg_relation_size(text), nextval, setval and unnest never run in the worker', async () => {
  await app(`CREATE TABLE app.t3 (id int PRIMARY KEY)`);
  await app(`SELECT ably.publish_table('app.t3', 'three')`);
  const mark = s.logMark();
  const c = await s.connect({ user: 'dbo', db: 'app', pinned: false });
  await c.query(`CREATE FUNCTION public.pg_relation_size(text) RETURNS bigint
    ${spy('pg_relation_size(text)', 'dbo', 'RETURN pg_catalog.pg_relation_size($1::regclass);')}`);
  await c.query(`CREATE FUNCTION public.nextval(text) RETURNS bigint
    ${spy('nextval(text)', 'dbo', 'RETURN pg_catalog.nextval($1::regclass);')}`);
  await c.query(`CREATE FUNCTION public.setval(text, bigint) RETURNS bigint
    ${spy('setval(text,bigint)', 'dbo', 'RETURN pg_catalog.setval($1::regclass, $2);')}`);
  await c.query(`CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint
    ${spy('unnest(bigint[])', 'dbo', 'RETURN QUERY SELECT * FROM pg_catalog.unnest($1);')}`);
  await c.end();
  // a delivery round (batch ids, batch records) and maintenance rounds
  await app(`INSERT INTO app.t3 SELECT generate_series(1, 20)`);
  await waitForOrExplain(s, async () => (await s.history('three')).length === 20, { mark, creators: ['dbo'], what: 'delivery' });
  // maintenance runs every 250 ms: give it rounds to find the shadow
  const rounds = Number((await app(`SELECT requests FROM ably.status`)).rows[0].requests);
  await app(`INSERT INTO app.t3 SELECT generate_series(21, 22)`);
  await waitForOrExplain(s, async () => Number((await app(`SELECT requests FROM ably.status`)).rows[0].requests) > rounds
    && (await s.history('three')).length === 22, { mark, creators: ['dbo'], what: 'another round' });
  assertNoForeignRuns(s, mark, ['dbo']);
  assert.equal(await isSuperuser(s, 'dbo'), false, 'dbo became a superuser');
});

test('item 4: a writer\'s OPERATOR ~~(text, text) never runs as the owner through body LIKE \'%@%\'', async () => {
  // owner4's private table, and owner4's published table the writer may write
  const o = await s.connect({ user: 'owner4', db: 'app', pinned: false });
  await app(`CREATE SCHEMA owner4_private AUTHORIZATION owner4; GRANT CREATE ON SCHEMA app TO owner4`);
  await app(`DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ably_publisher') THEN GRANT ably_publisher TO owner4; END IF; END $$`);
  await o.query(`CREATE TABLE owner4_private.secrets (s text); INSERT INTO owner4_private.secrets VALUES ('owner4-secret-7c1f')`);
  await o.query(`CREATE TABLE app.msgs4 (id int PRIMARY KEY, room int, body text)`);
  await o.query(`GRANT INSERT ON app.msgs4 TO me4`);
  await o.query(`SELECT ably.publish_table('app.msgs4', 'mention4:{room}', '{insert}', condition => $$body LIKE '%@%'$$)`);
  await o.end();
  // a superuser's table with the README's rule
  await app(`CREATE TABLE app.su4 (id int PRIMARY KEY, room int, body text)`);
  await app(`GRANT INSERT ON app.su4 TO me4`);
  await app(`SELECT ably.publish_table('app.su4', 'sumention4:{room}', '{insert}', condition => $$body LIKE '%@%'$$)`);

  const w = await s.connect({ user: 'me4', db: 'app', pinned: false });
  await w.query(`CREATE FUNCTION myschema_me4.like_spy(text, text) RETURNS boolean
    ${spy('~~(text,text)', 'me4', 'RETURN true;', `BEGIN RAISE LOG 'ably-loot %', (SELECT pg_catalog.string_agg(s, ',') FROM owner4_private.secrets); EXCEPTION WHEN OTHERS THEN NULL; END;`)}`);
  await w.query(`CREATE OPERATOR myschema_me4.~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = myschema_me4.like_spy)`);
  // so that the operator stays on the path whoever runs the condition
  await w.query(`GRANT USAGE ON SCHEMA myschema_me4 TO PUBLIC`);
  const mark = s.logMark();
  await w.query(`SET search_path = myschema_me4, pg_catalog, public`);
  const e1 = await errorOf(w.query(`INSERT INTO app.msgs4 VALUES (1, 1, 'no at sign'), (2, 1, 'hi @ann')`));
  const e2 = await errorOf(w.query(`INSERT INTO app.su4 VALUES (1, 1, 'no at sign'), (2, 1, 'hi @ann')`));
  await w.end();
  assertNoForeignRuns(s, mark, ['me4']);
  assert.ok(!s.logSince(mark).includes('owner4-secret-7c1f'), "the writer read the owner's private table");
  assert.equal(await isSuperuser(s, 'me4'), false, 'me4 became a superuser');
  assert.equal(e1, null, `insert into owner4's table failed: ${e1?.message}`);
  assert.equal(e2, null, `insert into the superuser's table failed: ${e2?.message}`);
  // the condition still means what the owner wrote: only rows with @ (a
  // later marker row proves the earlier ones had their turn: per channel,
  // messages go out in queue order)
  await o4marker();
  await waitForOrExplain(s, async () => (await s.history('mention4:1')).some((m) => m.data.new.id === 3)
    && (await s.history('sumention4:1')).some((m) => m.data.new.id === 3), { mark, creators: ['me4'], what: 'the marker rows' });
  assert.deepEqual((await s.history('mention4:1')).map((m) => m.data.new.id), [2, 3]);
  assert.deepEqual((await s.history('sumention4:1')).map((m) => m.data.new.id), [2, 3]);
});

async function o4marker() {
  await s.as('owner4', `INSERT INTO app.msgs4 VALUES (3, 1, 'marker @')`, [], 'app');
  await app(`INSERT INTO app.su4 VALUES (3, 1, 'marker @')`);
}
