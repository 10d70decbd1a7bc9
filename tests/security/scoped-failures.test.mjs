// One refused channel never pauses the database (issue 9, item 7).
//
// The cluster publishes with a second key of the local server whose
// capability covers chat:* only. A message to news:1 is refused with 401 /
// 40160 (capability); before, any 401 was taken for a bad key and paused
// every channel for a minute at a time.
// Proves: the refused message goes to ably.dead_letters with error_code
// 40160 (or only its channel backs off), other channels keep delivering at
// once, and ably.status never shows paused-auth for it; a wrong secret
// (40101) still pauses delivery (paused-auth).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, waitFor, TEST_KEY } from './lib.mjs';

const NARROW_KEY = 'appId.k2:s2';
let s;
before(async () => {
  s = await securityStack({
    keys: [TEST_KEY, `${NARROW_KEY}={"chat:*":["publish","subscribe"]}`],
    key: NARROW_KEY,
  });
  await s.su(`CREATE EXTENSION ably_pg`);
  await waitFor(async () => (await s.su(`SELECT state FROM ably.status`)).rows[0].state === 'running', { timeout: 30000, what: 'the worker' });
});
after(() => s?.stop());

test('a capability refusal (40160) is scoped to its message or channel; a bad secret (40101) still pauses', async () => {
  // watch the worker's state the whole time
  const states = new Set();
  let watching = true;
  const wc = await s.connect();
  const watcher = (async () => {
    while (watching) {
      const { rows } = await wc.query(`SELECT state FROM ably.status`);
      states.add(rows[0].state);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await s.su(`SELECT ably.publish('chat:1', 'before', '{"n": 1}')`);
    await s.su(`SELECT ably.publish('news:1', 'refused', '{"n": 2}')`);
    // the refusal happened (dead letter, or recorded as the last error)
    await waitFor(async () => {
      const { rows } = await s.su(`SELECT (SELECT count(*) FROM ably.dead_letters WHERE channel = 'news:1') AS dead, last_error_code FROM ably.status`);
      return Number(rows[0].dead) > 0 || rows[0].last_error_code === 40160;
    }, { what: 'the 40160 refusal' });
    // other channels keep delivering, right away
    for (let i = 2; i <= 5; i++) await s.su(`SELECT ably.publish('chat:1', 'after', $1)`, [JSON.stringify({ n: i })]);
    await waitFor(async () => (await s.history('chat:1')).length === 5, { timeout: 15000, what: 'chat:1 to keep delivering after the refusal' })
      .catch((e) => assert.fail(`${e.message} (worker states seen: ${[...states].join(', ')})`));
    const { rows: dead } = await s.su(`SELECT error_code, http_status FROM ably.dead_letters WHERE channel = 'news:1'`);
    const { rows: queued } = await s.su(`SELECT count(*)::int AS n FROM ably.queue WHERE channel = 'news:1'`);
    assert.ok((dead.length === 1 && dead[0].error_code === 40160) || (dead.length === 0 && queued[0].n === 1),
      `news:1 should be dead-lettered with 40160 or still queued for its channel's back-off; dead letters: ${JSON.stringify(dead)}, queued: ${queued[0].n}`);
    assert.equal((await s.history('news:1')).length, 0);
  } finally {
    watching = false;
    await watcher;
    await wc.end();
  }
  assert.ok(!states.has('paused-auth'), `ably.status showed paused-auth for a capability refusal (states seen: ${[...states].join(', ')})`);

  // a wrong secret is still a credential failure: everything pauses, nothing is lost
  await s.su(`ALTER SYSTEM SET ably.api_key = 'appId.k2:wrong-secret'`);
  await s.su(`SELECT pg_reload_conf()`);
  await s.su(`SELECT ably.publish('chat:2', 'x', '{}')`);
  const st = await waitFor(async () => {
    const { rows } = await s.su(`SELECT state, last_error_code FROM ably.status`);
    return rows[0].state === 'paused-auth' && rows[0];
  }, { what: 'paused-auth for a wrong secret' });
  assert.equal(st.last_error_code, 40101);
  const { rows } = await s.su(`SELECT count(*)::int AS n FROM ably.queue WHERE channel = 'chat:2'`);
  assert.equal(rows[0].n, 1, 'kept in the queue while paused');
});
