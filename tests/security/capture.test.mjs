// search_path capture, every attacker, every entry point.
//
// Proves: no function, aggregate, operator or type an attacker creates ever
// runs with more rights than the attacker's own, whatever ably_pg runs on
// its behalf or later — in the writer's trigger, in ably.publish_table and
// friends, in ably_pg's event triggers, and in the background worker's
// delivery rounds and queue maintenance.
//
// Setup: database `app` (served by the worker) is owned by the attacker
// `dbowner`. Three more attackers work in it: `writer` (INSERT/UPDATE/
// DELETE/TRUNCATE on published tables owned by a superuser and by
// `tblowner`), `tblowner` (owns a published table, member of
// ably_publisher) and `nobody` (default rights, plus a schema of its own to
// plant objects in). Each attacker shadows every name ably_pg's SQL uses
// (tests/security/shadows.mjs generates the list from the source) in its
// own schema and puts that schema first via ALTER ROLE … SET search_path;
// the database owner plants its shadows in `public` and sets the database's
// search_path, which the worker and every session without a role setting
// see. Each shadow logs `ably-shadow [<what>] of <creator> ran as <user>`
// and, when not running as its creator, tries ALTER ROLE <creator>
// SUPERUSER. Every test asserts that no shadow of its attacker ran as
// anyone else and that the attacker is not a superuser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as lib from './lib.mjs';
import { securityStack, createRole, ensurePublisherRole, isSuperuser, waitFor, errorOf, waitForOrExplain } from './lib.mjs';
import { extractNames, installShadows, describeNames } from './shadows.mjs';

const ATTACKER_CONDITION = `body LIKE '%@%'`;
let s;
let names;

/** Runs each attack step, recording how it ended. */
async function attempts(steps) {
  const out = [];
  for (const [label, fn, allowed = []] of steps) {
    const t0 = Date.now();
    const e = await errorOf(fn);
    out.push({ label, ok: !e || allowed.includes(e.code), error: e && `${e.code}: ${e.message}`, ms: Date.now() - t0 });
  }
  if (process.env.SECTEST_VERBOSE) console.log(out);
  return out;
}

const assertNoForeignRuns = (mark, creators) => lib.assertNoForeignRuns(s, mark, creators);

async function assertNotSuperuser(...roles) {
  for (const role of roles) assert.equal(await isSuperuser(s, role), false, `${role} became a superuser`);
}

function assertAllEnded(results) {
  const bad = results.filter((r) => !r.ok);
  assert.deepEqual(bad, [], `entry points failed under attack:\n${bad.map((r) => `  ${r.label}: ${r.error}`).join('\n')}`);
}

async function plant(role, schema) {
  const c = await s.connect({ user: role, db: 'app', pinned: false });
  const plan = await installShadows(c, { schema, creator: role, names });
  const sum = plan.summary;
  console.log(`# ${role}: shadows in ${schema}: ${sum.functions.length} functions, ${sum.aggregates.length} aggregates, ` +
    `${sum.operators.length} operators, ${sum.types.length} types${plan.failed.length ? ` (${plan.failed.length} variants PostgreSQL refused)` : ''}`);
  await c.end();
  return plan;
}

before(async () => {
  s = await securityStack({ settings: { 'ably.database': "'app'" } });
  for (const r of ['dbowner', 'writer', 'tblowner', 'nobody']) await createRole(s, r);
  await s.su(`CREATE DATABASE app OWNER dbowner`);
  const app = (sql) => s.su(sql, [], 'app');
  await app(`CREATE EXTENSION ably_pg`);
  await ensurePublisherRole(s, 'app');
  await app(`GRANT ably_publisher TO tblowner`);
  // what a DBA grants an application role
  await app(`GRANT EXECUTE ON FUNCTION ably.create_token_request(text, jsonb, interval), ably.retry_dead_letters(bigint[], text, boolean) TO tblowner`);
  await app(`CREATE SCHEMA app; GRANT USAGE ON SCHEMA app TO PUBLIC; GRANT CREATE ON SCHEMA app TO tblowner`);
  await app(`CREATE FUNCTION app.noop_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
  // a superuser's published table
  await app(`CREATE TABLE app.su_posts (id int PRIMARY KEY, room int, body text, extra int)`);
  await app(`GRANT INSERT, UPDATE, DELETE, TRUNCATE ON app.su_posts TO writer`);
  await app(`SELECT ably.publish_table('app.su_posts', 'chat:{room}')`);
  await app(`SELECT ably.publish_table('app.su_posts', 'feed', '{insert,update,delete,truncate}')`);
  await app(`SELECT ably.publish_table('app.su_posts', 'mention:{room}', '{insert}', condition => $c$${ATTACKER_CONDITION}$c$)`);
  await app(`CREATE TABLE app.bulk (id int PRIMARY KEY)`);
  await app(`SELECT ably.publish_table('app.bulk', 'bulk', '{insert}')`);
  await app(`CREATE TABLE app.victim_scratch (id int PRIMARY KEY, room int)`);
  await app(`SELECT ably.publish_table('app.victim_scratch', 'vs:{room}')`);
  // tblowner's published tables
  const own = (sql) => s.as('tblowner', sql, [], 'app');
  await own(`CREATE TABLE app.own_posts (id int PRIMARY KEY, room int, body text, extra int)`);
  await own(`GRANT INSERT, UPDATE, DELETE, TRUNCATE ON app.own_posts TO writer`);
  await own(`SELECT ably.publish_table('app.own_posts', 'own:{room}')`);
  await own(`SELECT ably.publish_table('app.own_posts', 'ownfeed', '{insert,delete}', condition => $c$${ATTACKER_CONDITION}$c$)`);
  await own(`CREATE TABLE app.own_scratch (id int PRIMARY KEY, room int)`);
  await own(`SELECT ably.publish_table('app.own_scratch', 'os:{room}')`);
  await own(`CREATE TABLE app.own_dropme (id int PRIMARY KEY, room int)`);
  await own(`SELECT ably.publish_table('app.own_dropme', 'od:{room}')`);
  // each attacker's schema; nobody's own table
  await app(`CREATE SCHEMA w_evil AUTHORIZATION writer; CREATE SCHEMA o_evil AUTHORIZATION tblowner; CREATE SCHEMA n_evil AUTHORIZATION nobody`);
  await s.as('nobody', `CREATE TABLE n_evil.mine (id int PRIMARY KEY, room int, body text, extra int)`, [], 'app');

  names = extractNames(undefined, [ATTACKER_CONDITION]);
  console.log(describeNames(names).replace(/^/gm, '# '));
  await plant('writer', 'w_evil');
  await plant('tblowner', 'o_evil');
  await plant('nobody', 'n_evil');
  for (const [role, schema] of [['writer', 'w_evil'], ['tblowner', 'o_evil'], ['nobody', 'n_evil']]) {
    await s.as(role, `ALTER ROLE ${role} SET search_path = ${schema}, pg_catalog`, [], 'app');
  }
  // the worker is up and delivering
  await waitFor(async () => (await s.su(`SELECT state FROM ably.status`, [], 'app')).rows[0].state === 'running', { timeout: 60000, what: 'the worker for app' });
}, { timeout: 180000 });
after(() => s?.stop());

test('writer-only role: INSERT/UPDATE/DELETE/TRUNCATE/COPY, NULL template column and conditions run none of its code as anyone else', async () => {
  const mark = s.logMark();
  const w = (sql) => () => s.as('writer', sql, [], 'app');
  const results = await attempts([
    ['insert (superuser table)', w(`INSERT INTO app.su_posts VALUES (1, 1, 'hello @ann', 0), (2, 2, 'plain', 0)`)],
    ['update (superuser table)', w(`UPDATE app.su_posts SET extra = 1`)],
    ['delete (superuser table)', w(`DELETE FROM app.su_posts`)],
    ['insert with NULL channel column', w(`INSERT INTO app.su_posts VALUES (3, NULL, 'no room', 0)`)],
    ['insert, pg_catalog implicitly first', async () => {
      const c = await s.connect({ user: 'writer', db: 'app', pinned: false });
      try {
        await c.query(`SET search_path = w_evil, public`);
        await c.query(`INSERT INTO app.su_posts VALUES (4, 4, 'implicit @path', 0)`);
      } finally {
        await c.end();
      }
    }],
    ['COPY (superuser table)', () => s.psql(`COPY app.su_posts (id, room, body, extra) FROM STDIN`, { user: 'writer', db: 'app', input: '5\t5\tcopied @x\t0\n6\t5\tcopied\t0\n' })],
    ['insert (tblowner table)', w(`INSERT INTO app.own_posts VALUES (1, 1, 'hi @own', 0), (2, 2, 'plain', 0)`)],
    ['update (tblowner table)', w(`UPDATE app.own_posts SET extra = 1`)],
    ['delete (tblowner table)', w(`DELETE FROM app.own_posts`)],
    ['COPY (tblowner table)', () => s.psql(`COPY app.own_posts (id, room, body, extra) FROM STDIN`, { user: 'writer', db: 'app', input: '7\t7\tcopied @y\t0\n' })],
    ['truncate (superuser table)', w(`TRUNCATE app.su_posts`)],
    ['truncate (tblowner table)', w(`TRUNCATE app.own_posts`)],
  ]);
  assertNoForeignRuns(mark, ['writer']);
  await assertNotSuperuser('writer');
  assertAllEnded(results);
  // the changes went through the whole path: queued, delivered by the worker
  await waitFor(async () => (await s.history('feed')).some((m) => m.data.event === 'truncate'), { what: 'the truncate on feed' });
  await waitFor(async () => (await s.history('mention:5')).length === 1, { what: 'the COPY row with @ on mention:5' });
  await waitFor(async () => (await s.history('ownfeed')).some((m) => m.data.event === 'truncate'), { what: 'the truncate on ownfeed' });
  const mentions = [...await s.history('mention:1'), ...await s.history('mention:2'), ...await s.history('mention:4')];
  assert.deepEqual(mentions.map((m) => m.data.new.id).sort(), [1, 4], 'the condition held exactly for the rows with @');
  const { rows } = await s.su(`SELECT count(*)::int AS n FROM ably.dead_letters WHERE channel IS NULL`, [], 'app');
  assert.equal(rows[0].n, 1, 'the row with a NULL channel column is a dead letter');
  assertNoForeignRuns(mark, ['writer']);
});

test('table owner: publish_table, unpublish_table, publish, token requests, dead-letter retry, status and DDL run none of its code as anyone else', async () => {
  const mark = s.logMark();
  const o = (sql) => () => s.as('tblowner', sql, [], 'app');
  const results = await attempts([
    ['publish_table with a condition, then unpublish_table of that rule', async () => {
      const c = await s.connect({ user: 'tblowner', db: 'app', pinned: false });
      try {
        const { rows } = await c.query(`SELECT ably.publish_table('app.own_posts', 'own2:{room}', '{insert}', condition => $c$${ATTACKER_CONDITION} AND room > 0$c$) AS id`);
        await c.query(`SELECT ably.unpublish_table('app.own_posts', $1)`, [rows[0].id]);
      } finally {
        await c.end();
      }
    }],
    ['publish_table duplicate (42710)', o(`SELECT ably.publish_table('app.own_posts', 'own:{room}')`), ['42710']],
    ['unpublish_table all rules', o(`SELECT ably.unpublish_table('app.own_scratch')`)],
    ['publish', o(`SELECT ably.publish('own:99', 'evt', '{"a": 1}')`)],
    ['create_token_request', o(`SELECT ably.create_token_request('bob', '{"chat:*": ["subscribe"]}', '10 minutes')`)],
    ['retry_dead_letters', o(`SELECT ably.retry_dead_letters()`)],
    ['status()', o(`SELECT * FROM ably.status()`), ['42501']],
    ['status view', o(`SELECT * FROM ably.status`), ['42501']],
    ['write own table', o(`INSERT INTO app.own_posts VALUES (20, 20, 'owner @self', 0)`)],
    ['CREATE TRIGGER', o(`CREATE TRIGGER noop AFTER INSERT ON app.own_posts FOR EACH ROW EXECUTE FUNCTION app.noop_trigger()`)],
    ['ALTER TABLE RENAME COLUMN', o(`ALTER TABLE app.own_posts RENAME COLUMN extra TO extra2`)],
    ['ALTER TABLE DROP COLUMN', o(`ALTER TABLE app.own_posts DROP COLUMN extra2`)],
    ['DROP TABLE (published)', o(`DROP TABLE app.own_dropme`)],
  ]);
  assertNoForeignRuns(mark, ['tblowner']);
  await assertNotSuperuser('tblowner');
  assertAllEnded(results);
  await waitFor(async () => (await s.history('own:99')).length === 1, { what: 'the ably.publish message' });
  await waitFor(async () => (await s.history('own:20')).length === 1, { what: "the owner's row" });
  assertNoForeignRuns(mark, ['tblowner']);
});

test('role with default rights: every entry point is refused or runs none of its code as anyone else', async () => {
  const mark = s.logMark();
  const n = (sql) => () => s.as('nobody', sql, [], 'app');
  const results = await attempts([
    ['status view', n(`SELECT * FROM ably.status`), ['42501']],
    ['publish_table own table', n(`SELECT ably.publish_table('n_evil.mine', 'mine:{room}', condition => $c$${ATTACKER_CONDITION}$c$)`), ['42501']],
    ['unpublish_table own table', n(`SELECT ably.unpublish_table('n_evil.mine')`), ['42501']],
    ['publish', n(`SELECT ably.publish('chat:general', 'x', '{}')`), ['42501']],
    ['create_token_request', n(`SELECT ably.create_token_request('x')`), ['42501']],
    ['retry_dead_letters', n(`SELECT ably.retry_dead_letters()`), ['42501']],
    ['publish_table temp table', async () => {
      const c = await s.connect({ user: 'nobody', db: 'app', pinned: false });
      try {
        await c.query(`CREATE TEMP TABLE messages (id int, room_id int, body text)`);
        await c.query(`SELECT ably.publish_table('pg_temp.messages', 'chat:{room_id}')`);
        await c.query(`INSERT INTO pg_temp.messages VALUES (1, 1, 'forged')`);
      } finally {
        await c.end();
      }
    }, ['42501', '0A000']],
    ['write own table', n(`INSERT INTO n_evil.mine VALUES (1, 1, 'x @y', 0)`)],
    ['CREATE TRIGGER', n(`CREATE TRIGGER noop AFTER INSERT ON n_evil.mine FOR EACH ROW EXECUTE FUNCTION app.noop_trigger()`)],
    ['ALTER TABLE RENAME COLUMN', n(`ALTER TABLE n_evil.mine RENAME COLUMN extra TO extra2`)],
    ['ALTER TABLE DROP COLUMN', n(`ALTER TABLE n_evil.mine DROP COLUMN extra2`)],
    ['DROP TABLE', n(`DROP TABLE n_evil.mine`)],
  ]);
  assertNoForeignRuns(mark, ['nobody']);
  await assertNotSuperuser('nobody');
  assertAllEnded(results);
});

// The database owner's shadows live in `public` and reach every session that
// has no search_path of its own through ALTER DATABASE, the worker included.
let dbOwnerMark = null;
async function plantDbOwnerShadows() {
  if (dbOwnerMark !== null) return dbOwnerMark;
  dbOwnerMark = s.logMark();
  await plant('dbowner', 'public');
  await s.as('dbowner', `ALTER DATABASE app SET search_path = public, pg_catalog`, [], 'app');
  // the worker reads database settings when it connects: make it reconnect
  // (a worker that exits cleanly is not restarted, so restart the server)
  const { rows } = await s.su(`SELECT worker_pid FROM ably.status`, [], 'app');
  const old = rows[0].worker_pid;
  s.restart();
  await waitForOrExplain(s, async () => {
    const st = (await s.su(`SELECT worker_pid, state FROM ably.status`, [], 'app')).rows[0];
    return st.worker_pid && st.worker_pid !== old && st.state === 'running';
  }, { mark: dbOwnerMark, creators: ['dbowner'], timeout: 60000, what: 'the worker to reconnect' });
  return dbOwnerMark;
}

test('database owner: the worker\'s delivery rounds, dead letters and queue rotation run none of its code', async () => {
  const mark = await plantDbOwnerShadows();
  // a delivery round with several channels
  await s.su(`INSERT INTO app.su_posts SELECT g, g % 3, 'round @' || g, 0 FROM generate_series(100, 130) g`, [], 'app');
  await waitForOrExplain(s, async () => (await s.history('chat:2')).some((m) => m.data.new?.id === 128), { mark, creators: ['dbowner'], what: 'delivery after the worker reconnected' });
  // a message Ably refuses (too large): the worker moves it to dead letters
  await s.su(`INSERT INTO app.su_posts VALUES (200, 7, repeat('x', 70000), 0)`, [], 'app');
  await waitForOrExplain(s, async () => (await s.su(`SELECT count(*)::int AS n FROM ably.dead_letters WHERE error_code = 40009`, [], 'app')).rows[0].n >= 1, { mark, creators: ['dbowner'], what: 'a dead letter from the worker' });
  // rotation and truncation of queue parts
  await s.su(`ALTER SYSTEM SET ably.queue_rotate_rows = 1000`);
  await s.su(`SELECT pg_reload_conf()`);
  const { rows: before } = await s.su(`SELECT current_part FROM ably.queue_state`, [], 'app');
  try {
    for (let i = 0; i < 4; i++) {
      await s.su(`INSERT INTO app.bulk SELECT g FROM generate_series(${i * 1000 + 1}, ${i * 1000 + 1000}) g`, [], 'app');
      await waitForOrExplain(s, async () => (await s.su(`SELECT count(*)::int AS n FROM ably.queue`, [], 'app')).rows[0].n === 0, { mark, creators: ['dbowner'], timeout: 60000, what: 'the queue to drain' });
    }
    await waitForOrExplain(s, async () => {
      const { rows } = await s.su(
        `SELECT q.current_part, (SELECT count(*) FROM generate_series(0, 2) p
                                  WHERE p <> q.current_part AND pg_relation_size(format('ably.queue_%s', p)::regclass) = 0) AS empty
           FROM ably.queue_state q`, [], 'app');
      return rows[0].current_part !== before[0].current_part && Number(rows[0].empty) > 0;
    }, { mark, creators: ['dbowner'], timeout: 60000, what: 'a rotation and a truncated part' });
  } finally {
    await s.su(`ALTER SYSTEM RESET ably.queue_rotate_rows`);
    await s.su(`SELECT pg_reload_conf()`);
  }
  assertNoForeignRuns(mark, ['dbowner']);
  await assertNotSuperuser('dbowner');
});

test('a superuser working in the attacker\'s database (its search_path) runs none of the attacker\'s code through ably_pg', async () => {
  await plantDbOwnerShadows();
  const mark = s.logMark();
  // A superuser session that takes the database's search_path. Every
  // statement below is fully qualified or literal-only, so any shadow that
  // runs was reached through ably_pg's own SQL.
  const v = (sql) => async () => {
    const c = await s.connect({ user: 'postgres', db: 'app', pinned: false });
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  const results = await attempts([
    ['insert', v(`INSERT INTO app.su_posts VALUES (300, 30, 'su @write', 0), (301, NULL, 'no room', 0)`)],
    ['update', v(`UPDATE app.su_posts SET extra = 2 WHERE id OPERATOR(pg_catalog.=) 300`)],
    ['delete', v(`DELETE FROM app.su_posts WHERE id OPERATOR(pg_catalog.=) 300`)],
    ['truncate', v(`TRUNCATE app.victim_scratch`)],
    ['status', v(`SELECT * FROM ably.status`)],
    ['publish_table', v(`SELECT ably.publish_table('app.su_posts', 'su2:{room}', '{insert}', condition => $c$${ATTACKER_CONDITION}$c$)`)],
    ['unpublish_table', v(`SELECT ably.unpublish_table('app.victim_scratch')`)],
    ['publish', v(`SELECT ably.publish('su:1', 'x', '{"a": 1}')`)],
    ['create_token_request', v(`SELECT ably.create_token_request('alice', '{"chat:*": ["subscribe"]}', '10 minutes')`)],
    ['retry_dead_letters', v(`SELECT ably.retry_dead_letters()`)],
    ['CREATE TRIGGER', v(`CREATE TRIGGER noop AFTER INSERT ON app.su_posts FOR EACH ROW EXECUTE FUNCTION app.noop_trigger()`)],
    ['ALTER TABLE RENAME COLUMN', v(`ALTER TABLE app.su_posts RENAME COLUMN extra TO extra_renamed`)],
    ['ALTER TABLE DROP COLUMN', v(`ALTER TABLE app.su_posts DROP COLUMN extra_renamed`)],
    ['DROP TABLE (published)', v(`DROP TABLE app.victim_scratch`)],
  ]);
  assertNoForeignRuns(mark, ['dbowner']);
  await assertNotSuperuser('dbowner');
  assertAllEnded(results);
  await waitFor(async () => (await s.history('su:1')).length === 1, { what: 'the superuser\'s ably.publish message' });
});

test('over the whole run: no attacker is a superuser and no shadow ever ran as anyone but its creator', async () => {
  assertNoForeignRuns(0);
  await assertNotSuperuser('dbowner', 'writer', 'tblowner', 'nobody');
});
