import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, subscriber, waitFor, queueDepth } from './helpers.mjs';

let s;
before(async () => {
  s = await stack();
  await s.query(`CREATE TABLE messages (id bigserial PRIMARY KEY, room_id int NOT NULL, author text, body text, version int NOT NULL DEFAULT 1)`);
  await s.query(`SELECT ably.publish_table('messages', 'chat:{room_id}')`);
});
after(() => s?.stop());

test('insert, update and delete arrive with channel, name, data and idempotent ids; rollbacks never do', async () => {
  const sub = await subscriber(s, 'chat:1');
  try {
    const client = await s.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO messages (room_id, author, body) VALUES (1, 'ghost', 'rolled back')`);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rows } = await s.query(`INSERT INTO messages (room_id, author, body) VALUES (1, 'ann', 'hi') RETURNING id`);
    const id = Number(rows[0].id);
    await s.query(`UPDATE messages SET body = 'hello', version = 2 WHERE id = $1`, [id]);
    await s.query(`DELETE FROM messages WHERE id = $1`, [id]);

    await waitFor(() => sub.received.length >= 3, { what: '3 realtime messages' });
    const got = await history(s, 'chat:1');
    assert.deepEqual(got.map((m) => m.name), ['messages.insert', 'messages.update', 'messages.delete']);
    assert.deepEqual(got[0].data, { event: 'insert', schema: 'public', table: 'messages', new: { id, room_id: 1, author: 'ann', body: 'hi', version: 1 }, old: null });
    assert.equal(got[1].data.new.body, 'hello');
    assert.equal(got[1].data.old.body, 'hi');
    assert.equal(got[2].data.new, null);
    assert.equal(got[2].data.old.body, 'hello');
    // <epoch>-t<tick>-<batch>:<index>, the epoch drawn when the extension was created
    const { rows: [{ epoch }] } = await s.query('SELECT epoch FROM ably.queue_state');
    for (const m of got) assert.match(m.id, new RegExp(`^${epoch}-t\\d+-\\d+:\\d+$`));
    assert.equal(new Set(got.map((m) => m.id)).size, 3);
    assert.deepEqual(sub.received.map((m) => m.id), got.map((m) => m.id));
    assert.ok(!got.some((m) => m.data.new?.author === 'ghost'));
    await waitFor(async () => (await queueDepth(s)) === 0, { what: 'empty queue' });
  } finally {
    sub.close();
  }
});

test('ably.publish() sends an application event after commit', async () => {
  await s.query(`SELECT ably.publish('notices', 'maintenance', '{"at": "tonight"}')`);
  const got = await waitFor(async () => {
    const h = await history(s, 'notices');
    return h.length === 1 && h;
  }, { what: 'notice' });
  assert.equal(got[0].name, 'maintenance');
  assert.deepEqual(got[0].data, { at: 'tonight' });
});

test('status reports a running worker and never the key', async () => {
  const { rows } = await s.query('SELECT * FROM ably.status');
  assert.equal(rows[0].state, 'running');
  assert.ok(rows[0].worker_pid > 0);
  assert.ok(Number(rows[0].messages_delivered) >= 4);
  const all = JSON.stringify(rows) + s.cluster.log();
  assert.ok(!all.includes('local-test-secret'), 'the key secret leaked into status or the server log');
});
