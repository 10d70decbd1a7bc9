// Ably auth from SQL: a TokenRequest signed inside the database lets the real
// ably SDK connect to the local server and receive the published changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as Ably from 'ably';
import { stack, waitFor } from './helpers.mjs';

let s;
before(async () => {
  s = await stack();
  await s.query(`CREATE TABLE rooms (id int PRIMARY KEY, title text)`);
  await s.query(`SELECT ably.publish_table('rooms', 'room:{id}')`);
});
after(() => s?.stop());

test('a TokenRequest from ably.create_token_request() lets an ably SDK client subscribe', async () => {
  let requests = 0;
  const client = new Ably.Realtime({
    ...s.ably.clientOptions(),
    authCallback: async (_params, callback) => {
      requests++;
      try {
        const { rows } = await s.query(
          `SELECT ably.create_token_request('alice', '{"room:*": ["subscribe"]}', '10 minutes') AS tr`,
        );
        callback(null, rows[0].tr);
      } catch (e) {
        callback(e, null);
      }
    },
  });
  try {
    const channel = client.channels.get('room:7');
    const got = [];
    await channel.subscribe((m) => got.push(m));
    assert.equal(client.auth.clientId, 'alice');
    await s.query(`INSERT INTO rooms VALUES (7, 'lobby')`);
    await waitFor(() => got.length === 1, { what: 'the insert' });
    assert.equal(got[0].data.new.title, 'lobby');
    assert.ok(requests >= 1);

    // the capability is enforced: another namespace is refused
    const other = client.channels.get('private:1');
    await assert.rejects(other.attach(), (e) => e.code === 40160);
  } finally {
    client.close();
  }
});

test('token requests are refused clearly when they ask for more than the key allows or are malformed', async () => {
  await s.query(`ALTER SYSTEM SET ably.key_capability = '{"room:*": ["subscribe", "presence"]}'`);
  await s.query(`SELECT pg_reload_conf()`);
  await waitFor(async () => (await s.query(`SHOW ably.key_capability`)).rows[0]['ably.key_capability'].includes('room'), { what: 'reload' });
  await assert.rejects(
    s.query(`SELECT ably.create_token_request('bob', '{"room:*": ["publish"]}')`),
    (e) => e.code === '22023' && /publish/.test(e.message) && !/local-test-secret/.test(e.message),
  );
  await assert.rejects(s.query(`SELECT ably.create_token_request('bob', '{"room:*": "subscribe"}')`), (e) => e.code === '22023');
  await assert.rejects(s.query(`SELECT ably.create_token_request('bob', NULL, '2 days')`), (e) => e.code === '22023');
  const { rows } = await s.query(`SELECT ably.create_token_request('bob', '{"room:1": ["subscribe"]}') AS tr`);
  assert.equal(rows[0].tr.keyName, 'appId.keyId');
  assert.equal(rows[0].tr.clientId, 'bob');
  assert.equal(rows[0].tr.capability, '{"room:1":["subscribe"]}');
  assert.ok(!JSON.stringify(rows[0].tr).includes('local-test-secret'));
  // not executable by PUBLIC
  await s.query(`CREATE ROLE webapp LOGIN`);
  const c = new (await import('pg')).default.Client({ connectionString: s.cluster.url.replace('postgres@', 'webapp@') });
  await c.connect();
  try {
    await assert.rejects(c.query(`SELECT ably.create_token_request('x')`), (e) => e.code === '42501');
    await assert.rejects(c.query(`SHOW ably.api_key`), (e) => e.code === '42501');
    const { rows: settings } = await c.query(`SELECT count(*)::int AS n FROM pg_settings WHERE name = 'ably.api_key'`);
    assert.equal(settings[0].n, 0);
  } finally {
    await c.end();
  }
});
