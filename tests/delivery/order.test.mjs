// Per-channel order and progress when Ably refuses what the worker sends
// (issue 10, items 5 and 9): a channel rate limit far below the backlog, a
// batch size lowered by a reload, and a batch Ably refuses whole while
// single messages fit. Each test needs the local server started with other
// limits, so each has a stack of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, waitFor, status } from './helpers.mjs';
import { proxiedStack } from './proxy.mjs';
import { drained, assertVersions, logSince, stopAfterwards } from './checks.mjs';

const track = stopAfterwards();

async function deadLetters(s) {
  const { rows } = await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters`);
  return rows[0].n;
}

// The local server's limit: a fixed one-second window per channel, refusing
// (429/42913) a whole publish that would take the channel over it.
const RATE = 100;
const BACKLOG = 1000;

test(`a backlog of ${BACKLOG} rows on one channel limited to ${RATE} messages/s is delivered completely and in order`, async () => {
  const s = await track(await stack({ serverArgs: ['--channel-rate-limit', String(RATE)] }));
  await s.query(`CREATE TABLE ticks (id int PRIMARY KEY, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('ticks', 'rate-limited')`);
  // One transaction: the worker sees the whole backlog at once and cuts it
  // into batches of ably.batch_size (500), each over the limit.
  await s.query(`INSERT INTO ticks SELECT g, 1 FROM generate_series(1, ${BACKLOG}) g`);
  await waitFor(async () => (await history(s, 'rate-limited')).length >= 1, { timeout: 20000, what: 'the first rate-limited messages to pass' });
  // At most RATE per second: ~10 s at full speed; allow for back-off.
  await drained(s, { timeout: 45000 });
  const st = await status(s);
  assert.equal(st.last_error_code, 42913, `the channel was rate limited (last error: ${st.last_error_code} ${st.last_error_message})`);
  assert.equal(await deadLetters(s), 0, 'a rate limit never dead-letters');
  assertVersions(await history(s, 'rate-limited'), new Map(Array.from({ length: BACKLOG }, (_, i) => [i + 1, [1]])));
});

test('lowering ably.batch_size with a reload applies to batches not yet sent', async () => {
  const s = await track(await proxiedStack());
  await s.query(`CREATE TABLE ticks (id int PRIMARY KEY, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('ticks', 'resized')`);
  s.proxy.mode = 'reset'; // the sink is down while the backlog is cut
  await s.query(`INSERT INTO ticks SELECT g, 1 FROM generate_series(1, 2000) g`);
  await waitFor(() => s.proxy.requests.some((r) => r.mode === 'reset' && r.ids.length > 0), { what: 'a failed first publish' });
  const logStart = s.cluster.log().length;
  await s.query(`ALTER SYSTEM SET ably.batch_size = 10`);
  await s.query(`SELECT pg_reload_conf()`);
  await waitFor(() => logSince(s, logStart).some((l) => /parameter "ably\.batch_size" changed to "10"/.test(l)), { what: 'the reload' });
  // Only what was already sent may go again as it was (same ids).
  const tried = new Set(s.proxy.publishes().flatMap((r) => r.ids));
  const switchedAt = s.proxy.requests.length;
  s.proxy.mode = 'pass';
  await drained(s, { timeout: 45000 });
  const after = s.proxy.publishes().slice(switchedAt).filter((r) => r.mode === 'pass');
  const fresh = after.filter((r) => !r.ids.some((id) => tried.has(id)));
  const oversized = fresh.filter((r) => r.ids.length > 10).map((r) => r.ids.length);
  assert.deepEqual(oversized, [], `requests sent after the reload with batches never sent before (${fresh.length} requests; sizes of those over 10 shown)`);
  assertVersions(await history(s, 'resized'), new Map(Array.from({ length: 2000 }, (_, i) => [i + 1, [1]])));
});

test('a batch Ably refuses whole (40009) is split into single messages that keep the channel\'s order', async () => {
  // Server limit 4 kB per publish; the cluster's ably.max_message_size stays
  // 64 kB, so a batch of ten ~1 kB messages is refused whole while each of
  // them fits alone, and a batch of ten small messages passes.
  const s = await track(await stack({ serverArgs: ['--max-message-size', '4096'], settings: { 'ably.batch_size': 10 } }));
  await s.query(`CREATE TABLE docs (id int PRIMARY KEY, version int NOT NULL, label text NOT NULL)`);
  // The message name comes from label (1 kB on insert, 1 byte after the
  // update); the data holds only id and version.
  await s.query(`SELECT ably.publish_table('docs', 'split', events => '{insert,update}', name => '{label}', columns => '{id,version}')`);
  // One transaction, one tick, all pending at once: the inserts of rows
  // 1..20 (two batches, each refused whole), then their updates (two
  // batches that Ably accepts). No update may overtake its row's insert.
  await s.query(`BEGIN; INSERT INTO docs SELECT g, 1, repeat('x', 1000) FROM generate_series(1, 20) g; UPDATE docs SET version = 2, label = 'u'; COMMIT`);
  await drained(s, { timeout: 30000 });
  // the scenario happened: Ably refused a batch for its size
  const st = await status(s);
  assert.equal(st.last_error_code, 40009, `last error: ${st.last_error_code} ${st.last_error_message}`);
  assert.equal(await deadLetters(s), 0, 'every single message fits: nothing dead-lettered');
  assertVersions(await history(s, 'split'), new Map(Array.from({ length: 20 }, (_, i) => [i + 1, [1, 2]])));
});
