// Per-row order and exactly-once delivery under concurrency, an Ably outage
// and a crash of the whole database.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, subscriber, waitFor, queueDepth, status } from './helpers.mjs';
import { sleep } from '../../scripts/stack.mjs';

const ROWS = 5;

let s;
before(async () => {
  s = await stack();
  await s.query(`CREATE TABLE counters (id int PRIMARY KEY, version int NOT NULL, payload text)`);
  await s.query(`SELECT ably.publish_table('counters', 'counters', '{insert,update}')`);
});
after(() => s?.stop());

/** `writers` clients each do `updates` single-row UPDATEs on random rows. */
async function hammer(writers, updates) {
  await Promise.all(
    Array.from({ length: writers }, async () => {
      for (let i = 0; i < updates; i++) {
        const id = 1 + Math.floor(Math.random() * ROWS);
        await s.query(`UPDATE counters SET version = version + 1, payload = md5(random()::text) WHERE id = $1`, [id]);
      }
    }),
  );
}

/** Checks that every row's versions arrived as 1, 2, … its final version, once each. */
async function assertCompleteAndOrdered(messages) {
  const { rows } = await s.query('SELECT id, version FROM counters ORDER BY id');
  const byRow = new Map(rows.map((r) => [r.id, []]));
  for (const m of messages) byRow.get(m.data.new.id).push(m.data.new.version);
  for (const r of rows) {
    const seen = byRow.get(r.id);
    assert.deepEqual(seen, Array.from({ length: r.version }, (_, i) => i + 1), `row ${r.id}: versions must arrive once each, in commit order`);
  }
  assert.equal(new Set(messages.map((m) => m.id)).size, messages.length, 'no message id delivered twice');
}

async function drained() {
  await waitFor(async () => (await queueDepth(s)) === 0 && Number((await status(s)).in_flight_batches) === 0, { timeout: 60000, what: 'queue drained' });
}

test('8 concurrent writers on the same rows: every row arrives in commit order, no loss, no duplicates', async () => {
  const sub = await subscriber(s, 'counters');
  try {
    await s.query(`INSERT INTO counters SELECT g, 1, '' FROM generate_series(1, ${ROWS}) g`);
    await hammer(8, 60);
    await drained();
    const { rows } = await s.query('SELECT sum(version)::int AS n FROM counters');
    await waitFor(() => sub.received.length >= rows[0].n, { what: `${rows[0].n} realtime messages` });
    await assertCompleteAndOrdered(sub.received);
    await assertCompleteAndOrdered(await history(s, 'counters'));
  } finally {
    sub.close();
  }
});

test('Ably down for 10 s while writes continue: the backlog drains, nothing lost or duplicated', async () => {
  await s.ably.stop();
  const writing = hammer(4, 50);
  await sleep(10000);
  await writing;
  const st = await status(s);
  assert.ok(['backing-off', 'running'].includes(st.state), `state while down: ${st.state}`);
  assert.ok(Number(st.queue_depth) > 0, 'the backlog waits in the queue');
  await s.ably.start(); // same port; its history starts empty
  await drained();
  // History of the restarted server holds only what arrived after the
  // outage; together with nothing left in the queue, exactly-once shows as
  // "each version at most once, and the tail complete".
  const after = await history(s, 'counters');
  assert.equal(new Set(after.map((m) => m.id)).size, after.length);
  const { rows } = await s.query('SELECT id, version FROM counters');
  for (const r of rows) {
    const versions = after.filter((m) => m.data.new.id === r.id).map((m) => m.data.new.version);
    for (let i = 1; i < versions.length; i++) assert.equal(versions[i], versions[i - 1] + 1, `row ${r.id} in order after the outage`);
    if (versions.length) assert.equal(versions.at(-1), r.version, `row ${r.id}: last version delivered`);
  }
  assert.ok(after.length > 0, 'the backlog was delivered');
});

test('kill -9 of the postmaster during a large backlog: nothing lost, nothing delivered twice', async () => {
  const sub = await subscriber(s, 'bulk');
  try {
    await s.query(`CREATE TABLE bulk (id int PRIMARY KEY, body text)`);
    await s.query(`SELECT ably.publish_table('bulk', 'bulk', '{insert}')`);
    await s.query(`ALTER SYSTEM SET ably.batch_size = 20`);
    await s.query(`SELECT pg_reload_conf()`);
    await s.query(`INSERT INTO bulk SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g`);
    await waitFor(() => sub.received.length > 500, { what: 'delivery to start' });
    await s.cluster.crash();
    await s.cluster.startServer();
    await s.pool.end().catch(() => {});
    s.newPool();
    await drained();
    await waitFor(() => sub.received.length >= 20000, { timeout: 60000, what: '20000 messages' });
    await sleep(500);
    const ids = sub.received.map((m) => m.data.new.id);
    assert.equal(ids.length, 20000, 'each row delivered exactly once to the subscriber');
    assert.equal(new Set(ids).size, 20000);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in queue order');
  } finally {
    sub.close();
    await s.query(`ALTER SYSTEM RESET ably.batch_size`);
    await s.query(`SELECT pg_reload_conf()`);
  }
});
