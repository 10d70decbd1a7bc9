// Stale rules never break a dump (issue 9, item 6).
//
// A temporary table's rule outlived its backend (no sql_drop fires when a
// backend drops its temp schema); a pg_dump taken while such a rule existed
// failed to restore ably.rules, and every write to a published table in the
// restored database then failed with "ably_pg rule 1 does not exist".
// Proves: whatever ably.rules holds — a rule for a live temporary table of
// another session, a rule whose table was dropped without ably_pg noticing
// (event triggers off), a rule with a condition — `pg_dump -Fc` restores
// into a new database with pg_restore --exit-on-error, and writes to the
// published tables there still queue their changes (conditions included).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { securityStack, errorOf, PG_BIN, PINNED } from './lib.mjs';

let s;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  await s.su(`CREATE TABLE public.items (id int PRIMARY KEY, name text)`);
  await s.su(`SELECT ably.publish_table('public.items', 'items')`);
  await s.su(`SELECT ably.publish_table('public.items', 'items:x', '{insert}', condition => $$name LIKE 'x%'$$)`);
});
after(() => s?.stop());

test('pg_dump restores cleanly whatever ably.rules holds, and writes keep working in the restored database', async () => {
  // 1. a rule for a live temporary table of another session (via the API
  //    where it is still allowed, else written directly, else nothing)
  const holder = await s.connect();
  await holder.query(`CREATE TEMP TABLE tmp_msgs (id int, room int)`);
  const viaApi = await errorOf(holder.query(`SELECT ably.publish_table('pg_temp.tmp_msgs', 'tmp:{room}')`));
  if (viaApi) {
    await errorOf(holder.query(`INSERT INTO ably.rules (relid, events, channel) VALUES ('pg_temp.tmp_msgs'::regclass, '{insert}', 'tmp:{room}')`));
  }
  // 2. a rule whose table was dropped while ably_pg's event triggers were off
  await s.su(`CREATE TABLE public.gone (id int PRIMARY KEY)`);
  await s.su(`SELECT ably.publish_table('public.gone', 'gone')`);
  const c = await s.connect();
  await c.query(`SET session_replication_role = replica`);
  await c.query(`DROP TABLE public.gone`);
  await c.end();

  const { rows: rules } = await s.su(`SELECT id, relid::oid AS relid, channel FROM ably.rules ORDER BY id`);
  console.log(`# ably.rules before the dump: ${JSON.stringify(rules)}`);

  // dump while the temp table's session is alive, restore into a new database
  const dump = execFileSync(join(PG_BIN, 'pg_dump'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-Fc', 'postgres'], { env: { ...process.env, PGOPTIONS: PINNED } });
  await holder.end();
  await s.su(`CREATE DATABASE restored`);
  let restoreError = null;
  try {
    execFileSync(join(PG_BIN, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '--exit-on-error', '-d', 'restored'], { input: dump, stdio: 'pipe', env: { ...process.env, PGOPTIONS: PINNED } });
  } catch (e) {
    restoreError = e.stderr?.toString() || e.message;
  }
  assert.equal(restoreError, null, `pg_restore failed: ${restoreError}`);

  // the restored database has the rules of the real table, and they work
  const { rows: restored } = await s.su(`SELECT channel FROM ably.rules WHERE relid = 'public.items'::regclass ORDER BY channel`, [], 'restored');
  assert.deepEqual(restored.map((r) => r.channel), ['items', 'items:x']);
  await s.su(`INSERT INTO public.items VALUES (1, 'xylophone'), (2, 'drum')`, [], 'restored');
  const { rows: queued } = await s.su(`SELECT channel, count(*)::int AS n FROM ably.queue GROUP BY channel ORDER BY channel`, [], 'restored');
  assert.deepEqual(queued, [{ channel: 'items', n: 2 }, { channel: 'items:x', n: 1 }], 'the restored triggers queue changes, with the condition');
});
