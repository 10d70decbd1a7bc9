// The crash points of the worker's bookkeeping (src/batch.rs, src/worker.rs):
// a tick is stored once, when it is cut, and its batches are settled in
// memory, written later (acknowledgements) or at once (replacements, dead
// letters). Each test crashes the whole cluster (kill -9) at one point and
// checks what is sent afterwards, through a proxy that records every
// publish, and what arrives (each row's versions once, in order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, waitFor } from './helpers.mjs';
import { proxiedStack } from './proxy.mjs';
import { drained, assertVersions, stopAfterwards } from './checks.mjs';

const track = stopAfterwards();

async function crashAndRestart(s) {
  await s.cluster.crash();
  await s.cluster.startServer();
  await s.pool.end().catch(() => {});
  s.newPool();
}

/** Waits until the WAL written so far is on disk: what was committed
 *  asynchronously (the worker writes acknowledgements so) survives a crash. */
async function flushed(s) {
  const { rows: [{ lsn }] } = await s.query(`SELECT pg_current_wal_insert_lsn()::text AS lsn`);
  await waitFor(async () => (await s.query(`SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok`, [lsn])).rows[0].ok, { what: 'the WAL flushed' });
}

/** Row id → [1] for ids from..to. */
function once(from, to) {
  return new Map(Array.from({ length: to - from + 1 }, (_, i) => [from + i, [1]]));
}

test('crash after batches were sent, before Ably acknowledged them: the repeated cut sends the same rows under the same ids', async () => {
  const s = await track(await proxiedStack({ settings: { 'ably.batch_size': 5 } }));
  await s.query(`CREATE TABLE cp (id int PRIMARY KEY, room int NOT NULL, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('cp', 'cp:{room}')`);
  s.proxy.keepMessages = true;
  s.proxy.mode = 'swallow';
  // Three transactions over three channels: ticks with several batches
  // per channel, the head of each channel sent and never acknowledged.
  for (let t = 0; t < 3; t++) {
    await s.query(`INSERT INTO cp SELECT g, g % 3, 1 FROM generate_series(${t * 12 + 1}, ${t * 12 + 12}) g`);
  }
  await waitFor(() => new Set(s.proxy.publishes().flatMap((r) => r.channels)).size === 3, { what: 'a publish on each of the three channels' });
  const before = new Map();
  for (const r of s.proxy.publishes()) for (const m of r.messages) before.set(m.id, m.data);
  const crashAt = s.proxy.requests.length;

  s.proxy.mode = 'pass';
  await crashAndRestart(s);
  await drained(s);
  const after = new Map();
  for (const r of s.proxy.requests.slice(crashAt)) for (const m of r.messages ?? []) after.set(m.id, m.data);
  const missing = [...before.keys()].filter((id) => !after.has(id));
  assert.deepEqual(missing, [], 'every message sent before the crash is sent again under its id');
  const changed = [...before].filter(([id, data]) => JSON.stringify(after.get(id)) !== JSON.stringify(data)).map(([id]) => id);
  assert.deepEqual(changed, [], 'an id sent again carries the same row');
  for (const room of [0, 1, 2]) {
    const expected = new Map([...once(1, 36)].filter(([id]) => id % 3 === room));
    assertVersions(await history(s, `cp:${room}`), expected, `cp:${room}: `);
  }
});

test('crash while a tick waits for one channel: the batches Ably acknowledged on the others are written as settled and not sent again', async () => {
  const s = await track(await proxiedStack());
  await s.query(`CREATE TABLE wt (id int PRIMARY KEY, ch text NOT NULL, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('wt', 'wt:{ch}')`);
  // Requests for 'wt:slow' never get an answer (they time out and are
  // retried); 'wt:fast' passes.
  s.proxy.route = (entry) => (entry.channels.includes('wt:slow') ? 'hang' : 'pass');
  // The slow channel's first row takes its lane ...
  await s.query(`INSERT INTO wt VALUES (1, 'slow', 1)`);
  await waitFor(() => s.proxy.publishes().some((r) => r.channels.includes('wt:slow')), { what: 'the slow channel in flight' });
  // ... so the next tick's fast batch (its batch 0) goes alone and is
  // acknowledged, while its slow batch waits behind the first.
  await s.query(`INSERT INTO wt SELECT g, CASE WHEN g <= 11 THEN 'fast' ELSE 'slow' END, 1 FROM generate_series(2, 21) g`);
  await waitFor(async () => (await history(s, 'wt:fast')).length === 10, { what: "the fast channel's 10 messages" });
  await waitFor(async () => {
    const { rows } = await s.query(`SELECT 0 = ANY (settled) AS fast FROM ably.ticks WHERE batch_count = 2`);
    return rows.length === 1 && rows[0].fast;
  }, { timeout: 20000, what: "the fast batch written as settled in its tick" });
  await flushed(s);
  const fastIds = new Set(s.proxy.publishes().filter((r) => r.channels.includes('wt:fast')).flatMap((r) => r.ids));
  const crashAt = s.proxy.requests.length;

  s.proxy.route = null;
  await crashAndRestart(s);
  await drained(s);
  const resent = s.proxy.requests.slice(crashAt).flatMap((r) => r.ids).filter((id) => fastIds.has(id));
  assert.deepEqual(resent, [], 'no message of the settled batch is sent again');
  assertVersions(await history(s, 'wt:fast'), once(2, 11), 'wt:fast: ');
  assertVersions(await history(s, 'wt:slow'), new Map([1, ...Array.from({ length: 10 }, (_, i) => 12 + i)].map((id) => [id, [1]])), 'wt:slow: ');
});

// The local server refuses a publish that would take a channel over this
// many messages per second (429/42913): the large channel lingers for
// seconds, re-cut into smaller recorded batches, while the small channel
// of the same tick is delivered at once.
const RATE = 20;
const SLOW = 400;

test('crash while a tick lingers on a rate-limited channel: its re-cut batches are sent again under their recorded ids only, the acknowledged ones not at all', async () => {
  const s = await track(await proxiedStack({ serverArgs: ['--channel-rate-limit', String(RATE)] }));
  await s.query(`CREATE TABLE lg (id int PRIMARY KEY, ch text NOT NULL, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('lg', 'lg:{ch}')`);
  // One transaction, one tick: 'fast' first (the tick's batch 0), then 'slow'.
  await s.query(`INSERT INTO lg SELECT g, CASE WHEN g <= 10 THEN 'fast' ELSE 'slow' END, 1 FROM generate_series(1, ${10 + SLOW}) g`);
  await waitFor(async () => (await history(s, 'lg:fast')).length === 10, { what: "the fast channel's 10 messages" });
  // Its acknowledgement written, and a slow batch replaced by recorded ones.
  await waitFor(async () => {
    const { rows } = await s.query(`SELECT 0 = ANY (settled) AS fast, (SELECT count(*) FROM ably.batches)::int AS recorded FROM ably.ticks WHERE batch_count > 0`);
    return rows.length === 1 && rows[0].fast && rows[0].recorded > 0;
  }, { timeout: 20000, what: "the fast batch settled in ably.ticks and the slow channel re-cut" });
  assert.ok((await history(s, 'lg:slow')).length < SLOW, 'the slow channel still has messages to send at the crash');
  const fastIds = new Set(s.proxy.publishes().filter((r) => r.channels.includes('lg:fast')).flatMap((r) => r.ids));
  const crashAt = s.proxy.requests.length;

  await crashAndRestart(s);
  await drained(s, { timeout: 90000 });
  const resent = s.proxy.requests.slice(crashAt).flatMap((r) => r.ids).filter((id) => fastIds.has(id));
  assert.deepEqual(resent, [], 'no message of the settled batch is sent again');
  assertVersions(await history(s, 'lg:fast'), once(1, 10), 'lg:fast: ');
  assertVersions(await history(s, 'lg:slow'), once(11, 10 + SLOW), 'lg:slow: ');
});

test('crash right after a dead letter: the refused row stays one dead letter and is not sent again', async () => {
  const s = await track(await proxiedStack());
  s.proxy.keepMessages = true;
  await s.query(`CREATE TABLE dl (id int PRIMARY KEY, version int NOT NULL, body text)`);
  await s.query(`SELECT ably.publish_table('dl', 'dl')`);
  // Row 3 is over Ably's 64 KiB message limit: a batch of its own, refused
  // (40009) and moved to the dead letters together with its settlement.
  await s.query(`INSERT INTO dl SELECT g, 1, CASE WHEN g = 3 THEN repeat('x', 70000) ELSE 'ok' END FROM generate_series(1, 5) g`);
  await waitFor(async () => (await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`)).rows[0].n === 1, { what: 'the dead letter' });
  const refused = s.proxy.publishes().flatMap((r) => r.messages).filter((m) => JSON.stringify(m.data).length > 65536).map((m) => m.id);
  assert.ok(refused.length > 0, 'the oversized row was sent');
  const crashAt = s.proxy.requests.length;

  await crashAndRestart(s);
  await drained(s);
  const { rows } = await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`);
  assert.equal(rows[0].n, 1, 'one dead letter');
  const again = s.proxy.requests.slice(crashAt).flatMap((r) => r.ids).filter((id) => refused.includes(id));
  assert.deepEqual(again, [], 'the refused row is not sent again');
  assertVersions(await history(s, 'dl'), new Map([1, 2, 4, 5].map((id) => [id, [1]])), 'dl: ');
});

test('a stored tick is deleted once its batches are settled: ably.ticks holds the newest tick only when idle', async () => {
  const s = await track(await stack());
  await s.query(`CREATE TABLE idle (id int PRIMARY KEY, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('idle', 'idle')`);
  for (let i = 1; i <= 20; i++) await s.query(`INSERT INTO idle VALUES (${i}, 1)`);
  await drained(s);
  await waitFor(async () => (await s.query(`SELECT count(*)::int AS n FROM ably.ticks`)).rows[0].n === 1, { what: 'one stored tick' });
  const { rows } = await s.query(`SELECT coalesce(array_length(settled, 1), 0) = coalesce(batch_count, 0) AS settled FROM ably.ticks`);
  assert.equal(rows[0].settled, true, 'the newest tick is written as settled');
  assertVersions(await history(s, 'idle'), once(1, 20));
});
