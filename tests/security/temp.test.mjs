// Temporary tables cannot be published (issue 9, item 5).
//
// The attack: a role with default rights creates TEMP TABLE messages,
// publishes it to 'chat:{room_id}' (and to '{author}' with name '{body}'),
// then INSERTs/DELETEs rows — forged messages reached the real chat:general.
// Proves: that attack delivers nothing; ably.publish_table on a temporary
// table fails with SQLSTATE 0A000 and a HINT for every caller, members of
// ably_publisher and superusers included; no rule for a temporary table is
// ever recorded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, createRole, ensurePublisherRole, rejectsWith, errorOf, waitFor } from './lib.mjs';

let s;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  await ensurePublisherRole(s, 'postgres');
  await createRole(s, 'mallory');
  await createRole(s, 'pub');
  await s.su(`GRANT ably_publisher TO pub`);
  await s.su(`CREATE TABLE public.messages (id int PRIMARY KEY, room_id text, author text, body text)`);
  await s.su(`SELECT ably.publish_table('public.messages', 'chat:{room_id}')`);
});
after(() => s?.stop());

async function tempRules() {
  const { rows } = await s.su(
    `SELECT count(*)::int AS n FROM ably.rules r LEFT JOIN pg_class c ON c.oid = r.relid::oid
      WHERE c.oid IS NULL OR c.relpersistence = 't'`);
  return rows[0].n;
}

test('a default-rights role\'s temp table never puts forged messages on chat:general', async () => {
  const c = await s.connect({ user: 'mallory' });
  let e1;
  let e2;
  try {
    await c.query(`CREATE TEMP TABLE messages (id int, room_id text, author text, body text)`);
    e1 = await errorOf(c.query(`SELECT ably.publish_table('pg_temp.messages', 'chat:{room_id}')`));
    e2 = await errorOf(c.query(`SELECT ably.publish_table('pg_temp.messages', '{author}', name => '{body}')`));
    await c.query(`INSERT INTO pg_temp.messages VALUES (1, 'general', 'victim', 'forged by mallory')`);
    await c.query(`DELETE FROM pg_temp.messages`);
  } finally {
    await c.end();
  }
  // a legitimate message after the attack: once it is on chat:general,
  // anything queued before it on that channel has been delivered too
  await s.su(`INSERT INTO public.messages VALUES (100, 'general', 'admin', 'legit')`);
  const h = await waitFor(async () => {
    const h = await s.history('chat:general');
    return h.some((m) => m.data.new?.id === 100) && h;
  }, { what: 'the legitimate message' });
  const forged = h.filter((m) => m.data.table !== 'messages' || m.data.schema !== 'public');
  assert.deepEqual(forged.map((m) => `${m.data.schema}.${m.data.table} ${m.data.event} ${JSON.stringify(m.data.new ?? m.data.old)}`), [],
    'forged messages reached chat:general');
  assert.equal((await s.history('victim')).length, 0, "a message reached the victim's own channel");
  assert.ok(e1 && ['42501', '0A000'].includes(e1.code), `publish_table on a temp table: ${e1 ? `${e1.code} ${e1.message}` : 'succeeded'}`);
  assert.ok(e2 && ['42501', '0A000'].includes(e2.code), `publish_table on a temp table: ${e2 ? `${e2.code} ${e2.message}` : 'succeeded'}`);
  assert.equal(await tempRules(), 0, 'a rule for a temporary table was recorded');
});

test('ably.publish_table on a temporary table is 0A000 with a HINT for publishers and superusers', async () => {
  for (const user of ['pub', 'postgres']) {
    const c = await s.connect({ user });
    try {
      await c.query(`CREATE TEMP TABLE t (id int, room int)`);
      await rejectsWith(c.query(`SELECT ably.publish_table('pg_temp.t', 'room:{room}')`), '0A000', { hint: true, message: `as ${user}` });
      await rejectsWith(c.query(`SELECT ably.publish_table('pg_temp.t', 'fixed', '{insert,truncate}')`), '0A000', { hint: true, message: `as ${user}, fixed channel` });
    } finally {
      await c.end();
    }
  }
  assert.equal(await tempRules(), 0, 'a rule for a temporary table was recorded');
});
