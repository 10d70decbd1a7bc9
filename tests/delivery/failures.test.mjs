// Delivery failures a DBA must be able to see and fix: a wrong key pauses
// delivery without losing anything; a message Ably refuses for good is
// dead-lettered with Ably's error and can be retried.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, waitFor, queueDepth, status, TEST_KEY } from './helpers.mjs';

let s;
before(async () => {
  s = await stack();
  await s.query(`CREATE TABLE notes (id int PRIMARY KEY, body text)`);
  await s.query(`SELECT ably.publish_table('notes', 'notes', '{insert}')`);
});
after(() => s?.stop());

test('wrong key: paused-auth with the queue kept; fixing the setting and reloading delivers everything', async () => {
  await s.query(`ALTER SYSTEM SET ably.api_key = 'appId.keyId:wrong-secret'`);
  await s.query(`SELECT pg_reload_conf()`);
  await s.query(`INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 50) g`);
  const st = await waitFor(async () => {
    const st = await status(s);
    return st.state === 'paused-auth' && st;
  }, { what: 'paused-auth' });
  assert.equal(st.last_error_code, 40101);
  assert.equal(st.last_error_status, 401);
  assert.ok(!JSON.stringify(st).includes('wrong-secret'));
  assert.equal(await queueDepth(s), 50, 'nothing dropped while paused');
  const { rows } = await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`);
  assert.equal(rows[0].n, 0, 'a bad key never dead-letters');

  await s.query(`ALTER SYSTEM SET ably.api_key = '${TEST_KEY}'`);
  await s.query(`SELECT pg_reload_conf()`);
  await waitFor(async () => (await queueDepth(s)) === 0, { what: 'delivery after reload' });
  const h = await history(s, 'notes');
  assert.deepEqual(h.map((m) => m.data.new.id), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.equal((await status(s)).state, 'running');
  assert.ok(!s.cluster.log().includes('wrong-secret'), 'the key never reaches the server log');
});

test('an oversized row is dead-lettered with 40009, later rows still arrive, and it can be retried', async () => {
  await s.query(`INSERT INTO notes VALUES (100, repeat('y', 70000))`);
  await s.query(`INSERT INTO notes VALUES (101, 'after')`);
  const dead = await waitFor(async () => {
    const { rows } = await s.query(`SELECT id, channel, http_status, error_code, error_message, data->'new'->>'id' AS row_id FROM ably.dead_letters`);
    return rows.length === 1 && rows[0];
  }, { what: 'a dead letter' });
  assert.equal(dead.error_code, 40009);
  assert.equal(dead.http_status, 413);
  assert.equal(dead.row_id, '100');
  await waitFor(async () => (await history(s, 'notes')).some((m) => m.data.new.id === 101), { what: 'row 101' });
  assert.equal(Number((await status(s)).dead_letters), 1);

  // Still too big: retried, refused again, back among the dead letters.
  const { rows: r1 } = await s.query(`SELECT ably.retry_dead_letters() AS n`);
  assert.equal(Number(r1[0].n), 1);
  await waitFor(async () => (await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`)).rows[0].n === 1 && (await queueDepth(s)) === 0, { what: 'refused again' });

  // Fixed by hand (the row, and its dead letter), retried: delivered. A
  // dead letter is sent again only while it is still its row's latest state.
  await s.query(`UPDATE notes SET body = 'trimmed' WHERE id = 100`);
  await s.query(`UPDATE ably.dead_letters SET data = json_build_object('event', 'insert', 'schema', 'public', 'table', 'notes', 'new', json_build_object('id', 100, 'body', 'trimmed'), 'old', null)`);
  await s.query(`SELECT ably.retry_dead_letters()`);
  await waitFor(async () => (await history(s, 'notes')).some((m) => m.data.event === 'insert' && m.data.new.id === 100 && m.data.new.body === 'trimmed'), { what: 'retried row 100' });
  const { rows: r2 } = await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`);
  assert.equal(r2[0].n, 0);
});
