// Only Ably's replies count (issue 10, items 2, 6 and 10). Whatever sits
// between the worker and Ably — a captive portal answering 200 "ok", a stub
// answering 201 "{}", a load balancer's 404 page — must neither mark
// messages delivered nor dead-letter them: they are retried, and arrive
// exactly once and in per-row order once Ably answers again. A channel name
// too long for a URL is never retried forever and never floods the log.
import { test, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { history, waitFor, queueDepth } from './helpers.mjs';
import { sleep as pause } from '../../scripts/stack.mjs';
import { proxiedStack } from './proxy.mjs';
import { drained, assertVersions } from './checks.mjs';

let s;
before(async () => {
  s = await proxiedStack();
});
after(() => s?.stop());
// a failed test must not leave the next one behind a fake Ably
beforeEach(() => {
  if (s) s.proxy.mode = 'pass';
});

/** Creates a published table whose rows go to `channel`. */
async function table(name, channel) {
  await s.query(`CREATE TABLE ${name} (id int PRIMARY KEY, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('${name}', '${channel}')`);
}

/** Inserts rows 1..n (version 1), then updates each to version 2 and 3, one statement per change. */
async function writeVersions(name, n) {
  for (let id = 1; id <= n; id++) await s.query(`INSERT INTO ${name} VALUES ($1, 1)`, [id]);
  for (let v = 2; v <= 3; v++) {
    for (let id = 1; id <= n; id++) await s.query(`UPDATE ${name} SET version = $2 WHERE id = $1`, [id, v]);
  }
  return new Map(Array.from({ length: n }, (_, i) => [i + 1, [1, 2, 3]]));
}

async function deadLetters(channel) {
  const { rows } = await s.query(`SELECT count(*)::int AS n FROM ably.dead_letters WHERE channel = $1`, [channel]);
  return rows[0].n;
}

for (const [mode, what] of [['ok200', 'HTTP 200 "ok"'], ['created201', 'HTTP 201 "{}"']]) {
  test(`a proxy answering ${what} to publishes loses nothing: once it passes through, everything arrives once, in order`, async () => {
    const name = `fake_${mode}`;
    await table(name, name);
    s.proxy.mode = mode;
    const expected = await writeVersions(name, 20);
    // The worker has had several of the proxy's answers, or took the first
    // ones as deliveries and has nothing left to send.
    const answered = () => s.proxy.publishes().filter((r) => r.mode === mode).length;
    await waitFor(async () => answered() >= 3 || (answered() >= 1 && (await queueDepth(s)) === 0), { what: `3 publishes answered with ${what}` });
    const faked = new Set(s.proxy.publishes().filter((r) => r.mode === mode).flatMap((r) => r.ids));
    s.proxy.mode = 'pass';
    await drained(s);
    const got = await history(s, name);
    assertVersions(got, expected);
    assert.equal(await deadLetters(name), 0);
    // what the proxy swallowed was sent again, with the same ids
    const ids = new Set(got.map((m) => m.id));
    assert.ok([...faked].every((id) => ids.has(id)), 'every message the proxy answered for was re-sent under its id');
  });
}

test('a load balancer\'s 404 HTML page for 5 s dead-letters nothing; everything arrives in order once it passes through', async () => {
  const name = 'lb404';
  await table(name, name);
  s.proxy.mode = 'html404';
  const until = Date.now() + 5000; // the scenario: 5 s of 404 pages
  const writing = writeVersions(name, 30);
  await waitFor(() => s.proxy.requests.filter((r) => r.status === 404).length >= 2, { what: 'two 404 pages served' });
  const expected = await writing;
  await pause(Math.max(0, until - Date.now()));
  s.proxy.mode = 'pass';
  assert.equal(await deadLetters(name), 0, 'a 404 without an Ably error dead-lettered messages');
  await drained(s, { timeout: 60000 });
  assert.equal(await deadLetters(name), 0, 'a 404 without an Ably error dead-lettered messages');
  assertVersions(await history(s, name), expected);
});

test('a channel name too long for a URL (70 kB) is not retried forever, and the log stays small', async () => {
  const logStart = s.cluster.log().length;
  const long = 'L'.repeat(70000);
  await s.query(`CREATE TABLE longnames (id int PRIMARY KEY, room text NOT NULL)`);
  await s.query(`SELECT ably.publish_table('longnames', '{room}')`);
  await s.query(`SELECT ably.publish($1, 'app-event', '{"from": "ably.publish"}')`, [long]);
  await s.query(`INSERT INTO longnames VALUES (1, $1)`, [long + 'T']);
  // later messages flow
  await s.query(`SELECT ably.publish('after-long', 'app-event', '{"n": 1}')`);
  await s.query(`INSERT INTO longnames VALUES (2, 'after-long')`);
  await waitFor(async () => (await history(s, 'after-long')).length === 2, { timeout: 30000, what: 'the messages written after the long ones' });
  // Each long one ends dead-lettered with a reason, or delivered: the queue
  // drains instead of retrying it forever.
  await drained(s, { timeout: 30000 });
  for (const [channel, via] of [[long, 'ably.publish'], [long + 'T', 'a template column']]) {
    const { rows } = await s.query(`SELECT error_message, error_code, http_status FROM ably.dead_letters WHERE channel = $1`, [channel]);
    if (rows.length > 0) {
      assert.equal(rows.length, 1, `${via}: dead-lettered once`);
      assert.ok(rows[0].error_message && rows[0].error_message.length > 0, `${via}: dead letter has a reason`);
      assert.ok(rows[0].error_message.length < 2000, `${via}: the reason does not carry the whole name`);
    } else {
      // delivered: a request carrying it was accepted by the local server
      const accepted = s.proxy.requests.some((r) => r.channels.includes(channel) && r.status === 201);
      assert.ok(accepted, `${via}: neither dead-lettered nor accepted by the server`);
    }
  }
  // The log does not carry the name, let alone once per retry.
  const lines = s.cluster.log().slice(logStart).split('\n');
  const longest = Math.max(0, ...lines.map((l) => l.length));
  assert.ok(longest <= 4096, `a log line of ${longest} characters (${lines.filter((l) => l.length > 4096).length} such lines)`);
});
