// Routine DBA operations on a delivering cluster (issue 10, items 3, 4, 7
// and 8): DROP EXTENSION with messages still undelivered, terminating the
// worker, kill -9 of the postmaster, and an invalid ably.endpoint in a
// reload. Each test runs on a stack of its own: each breaks something.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { stack, history, waitFor, status } from './helpers.mjs';
import { proxiedStack } from './proxy.mjs';
import { drained, errorOf, alive, assertVersions, pgCtl, logSince, stopAfterwards } from './checks.mjs';

const track = stopAfterwards();

/** Lines the worker `pid` (or a panic, which has no prefix) wrote that report an error. */
function workerErrors(lines, pid) {
  return lines.filter((l) => (l.includes(`[${pid}]`) && /\b(ERROR|FATAL|PANIC):/.test(l))
    || /panicked at|stack backtrace|RUST_BACKTRACE/.test(l)
    || new RegExp(`\\(PID ${pid}\\) exited with exit code [^0]`).test(l));
}

/** What went wrong, if anything, as worker `pid` stopped after DROP EXTENSION: it must log why, exit and report no error. */
async function quietStopProblems(s, pid, logStart) {
  const problems = [];
  const stopped = await errorOf(waitFor(() => logSince(s, logStart).some((l) => /stopped: the extension was dropped/.test(l)), { timeout: 10000, what: 'the worker to log that it stopped' }));
  if (stopped) problems.push(stopped.message);
  const exited = await errorOf(waitFor(() => !alive(pid), { timeout: 5000, what: `worker ${pid} to exit` }));
  if (exited) problems.push(exited.message);
  const errors = workerErrors(logSince(s, logStart), pid);
  if (errors.length) problems.push(`the worker logged errors:\n    ${errors.slice(0, 5).map((l) => l.slice(0, 300)).join('\n    ')}`);
  return problems;
}

async function runningWorker(s) {
  return waitFor(async () => {
    const st = await status(s);
    return st.state === 'running' && st.worker_pid && st;
  }, { what: 'a running worker' });
}

test('DROP EXTENSION with messages undelivered is refused (55006, HINT names ably.status); CASCADE drops it and the worker stops quietly', async () => {
  const s = await track(await proxiedStack());
  await s.query(`CREATE TABLE orders (id int PRIMARY KEY)`);
  await s.query(`SELECT ably.publish_table('orders', 'orders')`);
  const { worker_pid: pid } = await runningWorker(s);
  s.proxy.mode = 'reset'; // the sink is down
  await s.query(`INSERT INTO orders SELECT g FROM generate_series(1, 5) g`);
  await waitFor(() => s.proxy.requests.some((r) => r.mode === 'reset'), { what: 'a failed publish attempt' });
  assert.equal(Number((await status(s)).queue_depth), 5);

  // Everything that goes wrong is collected, so one run tells all of it.
  const problems = [];
  const logStart = s.cluster.log().length;
  const refused = await errorOf(s.query(`DROP EXTENSION ably_pg`));
  if (!refused) {
    problems.push('DROP EXTENSION succeeded with 5 messages undelivered');
  } else {
    if (refused.code !== '55006') problems.push(`refused with ${refused.code}, not 55006: ${refused.message}`);
    if (!/ably\.status/.test(refused.hint ?? '')) problems.push(`the HINT does not name ably.status (message: ${refused.message}, hint: ${refused.hint})`);
    const depth = Number((await status(s)).queue_depth);
    if (depth !== 5) problems.push(`queue depth ${depth} after the refused DROP, not 5`);
    await s.query(`DROP EXTENSION ably_pg CASCADE`);
  }
  problems.push(...(await quietStopProblems(s, pid, logStart)));
  assert.deepEqual(problems, []);
});

test('DROP EXTENSION of an idle extension: the worker stops without an ERROR, CREATE EXTENSION delivers again', async () => {
  const s = await track(await stack());
  const { worker_pid: pid } = await runningWorker(s);
  const logStart = s.cluster.log().length;
  await s.query(`DROP EXTENSION ably_pg`);
  // Everything that goes wrong is collected, so one run tells all of it.
  const problems = [];
  problems.push(...(await quietStopProblems(s, pid, logStart)));
  assert.deepEqual(problems, []);
  await s.query(`CREATE EXTENSION ably_pg`);
  await s.query(`CREATE TABLE orders (id int PRIMARY KEY)`);
  await s.query(`SELECT ably.publish_table('orders', 'orders-again')`);
  await s.query(`INSERT INTO orders VALUES (1)`);
  await waitFor(async () => (await history(s, 'orders-again')).length === 1, { what: 'delivery after CREATE EXTENSION' });
});

test('pg_terminate_backend(worker_pid): a new worker delivers within poll_interval + a few seconds; a normal stop still stops it', async () => {
  const s = await track(await stack({ settings: { 'ably.poll_interval': "'1s'" } }));
  await s.query(`CREATE TABLE orders (id int PRIMARY KEY)`);
  await s.query(`SELECT ably.publish_table('orders', 'terminated')`);
  const { worker_pid: first } = await runningWorker(s);
  const { rows } = await s.query(`SELECT pg_terminate_backend($1) AS ok`, [first]);
  assert.equal(rows[0].ok, true);
  const next = await waitFor(async () => {
    const st = await status(s);
    return st.worker_pid && st.worker_pid !== first && st.state === 'running' && st;
  }, { timeout: 1000 + 5000, what: 'a new worker within poll_interval + 5 s' });
  await s.query(`INSERT INTO orders VALUES (1)`);
  await waitFor(async () => (await history(s, 'terminated')).length === 1, { what: 'delivery by the new worker' });
  assert.ok(!alive(first), `the terminated worker ${first} is gone`);

  // A normal (fast) shutdown stops the new worker too, and is not held up.
  await s.pool.end();
  s.newPool();
  pgCtl(s.cluster, ['-m', 'fast', '-w', '-t', '30', 'stop']);
  assert.ok(!alive(next.worker_pid), `worker ${next.worker_pid} stopped with the server`);
});

test('kill -9 of the postmaster alone, with a hanging sink: the worker is gone within 2 s, the cluster restarts at once and delivers everything once', async () => {
  // A long request timeout: the worker must not wait for it to notice.
  const s = await track(await proxiedStack({ settings: { 'ably.request_timeout': "'60s'" } }));
  await s.query(`CREATE TABLE orders (id int PRIMARY KEY, version int NOT NULL)`);
  await s.query(`SELECT ably.publish_table('orders', 'pm-death')`);
  const { worker_pid: worker } = await runningWorker(s);
  s.proxy.mode = 'hang';
  await s.query(`INSERT INTO orders SELECT g, 1 FROM generate_series(1, 200) g`);
  await waitFor(() => s.proxy.hung.size > 0, { what: 'a publish hanging at the sink' });

  const postmaster = s.cluster.postmasterPid();
  const children = execFileSync('pgrep', ['-P', String(postmaster)]).toString().trim().split('\n').filter(Boolean).map(Number);
  assert.ok(children.includes(worker));
  process.kill(postmaster, 'SIGKILL');
  await waitFor(() => !alive(postmaster), { timeout: 2000, interval: 10, what: 'the postmaster to die' });
  await waitFor(() => !alive(worker), { timeout: 2000, interval: 20, what: `the orphaned worker ${worker} to exit within 2 s of the kill` });
  // PostgreSQL's own processes leave on postmaster death too; then the
  // data directory is free for a restart.
  await waitFor(() => children.every((p) => !alive(p)), { timeout: 10000, interval: 20, what: "every former child of the postmaster to exit" });
  await s.pool.end().catch(() => {});
  await s.cluster.startServer();
  s.newPool();
  s.proxy.mode = 'pass';
  await drained(s, { timeout: 30000 });
  assertVersions(await history(s, 'pm-death'), new Map(Array.from({ length: 200 }, (_, i) => [i + 1, [1]])));
});

const BAD_ENDPOINTS = ['foo bar', 'https://x.example', 'nonprod:', 'a/b'];
// The cluster reaches the local server through ably.endpoint (a host name),
// so the endpoint setting is what delivery depends on.
const ENDPOINT_SETTINGS = { 'ably.rest_host': "''", 'ably.endpoint': "'127.0.0.1'" };

test('an invalid ably.endpoint is refused by ALTER SYSTEM', async () => {
  const s = await track(await stack({ settings: ENDPOINT_SETTINGS }));
  const accepted = [];
  try {
    for (const bad of BAD_ENDPOINTS) {
      const e = await errorOf(s.query(`ALTER SYSTEM SET ably.endpoint = '${bad}'`));
      if (!e) accepted.push(bad);
      else assert.match(e.message, /ably\.endpoint/, `the error names the setting: ${e.message}`);
    }
  } finally {
    await s.query(`ALTER SYSTEM RESET ably.endpoint`);
  }
  assert.deepEqual(accepted, [], 'ALTER SYSTEM accepted invalid endpoints');
});

test('an invalid ably.endpoint written to postgresql.conf and reloaded: the old value stays, delivery continues, state stays running', async () => {
  const s = await track(await stack({ settings: ENDPOINT_SETTINGS }));
  await s.query(`CREATE TABLE orders (id int PRIMARY KEY)`);
  await s.query(`SELECT ably.publish_table('orders', 'endpoint')`);
  await runningWorker(s);
  const conf = join(s.cluster.data, 'postgresql.conf');
  // Everything that goes wrong is collected, so one run tells all of it.
  const problems = [];
  let id = 0;
  for (const bad of BAD_ENDPOINTS) {
    const logStart = s.cluster.log().length;
    appendFileSync(conf, `ably.endpoint = '${bad.replace(/'/g, "''")}'\n`);
    s.cluster.reload();
    // The postmaster read the file: it refused the value, or (without a
    // check) took it.
    await waitFor(() => logSince(s, logStart).some((l) => /invalid value for parameter "ably\.endpoint"|parameter "ably\.endpoint" changed to/.test(l)), { timeout: 10000, what: `the reload with '${bad}'` });
    const shown = s.cluster.psql(`SHOW ably.endpoint`).trim();
    if (shown !== '127.0.0.1') problems.push(`after reloading '${bad}', ably.endpoint is '${shown}'`);
    id += 1;
    await s.query(`INSERT INTO orders VALUES ($1)`, [id]);
    const late = await errorOf(waitFor(async () => (await history(s, 'endpoint')).length === id, { timeout: 15000, what: `delivery after reloading '${bad}'` }));
    const st = await status(s);
    if (st.state !== 'running') problems.push(`state after reloading '${bad}': ${st.state} (${st.last_error_message})`);
    if (late) {
      problems.push(late.message);
      break;
    }
  }
  assert.deepEqual(problems, []);
});
