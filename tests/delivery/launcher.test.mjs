// Zero-configuration databases: the launcher starts one delivery worker per
// database with ably_pg installed, without a setting or a restart, and stops
// it again; ably.database is an optional allow-list; every database may have
// its own Ably key; ably.status() says what the launcher knows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as Ably from 'ably';
import { AblyServer, Cluster, waitFor, TEST_KEY } from '../../scripts/stack.mjs';

// A second app's key, which may publish to app2:* only.
const OTHER_KEY = 'otherApp.keyId:other-secret';
const OTHER_KEY_SPEC = `${OTHER_KEY}={"app2:*":["publish","subscribe","history"]}`;
let ably;
let cluster;
before(async () => {
  ably = await new AblyServer({ keys: [TEST_KEY, OTHER_KEY_SPEC] }).start();
  // No ably.database: every database may have a worker.
  cluster = await new Cluster({ ablyPort: ably.port, settings: { 'ably.database': "''", 'ably.max_workers': 3 } }).start();
});
after(async () => {
  await cluster?.stop();
  await ably?.stop();
});

const sql = (text, db = 'postgres') => cluster.psql(text, db).trim();
const state = (db) => sql(`SELECT state FROM ably.status`, db);
const history = async (channel, key = TEST_KEY) => {
  const rest = new Ably.Rest({ key, ...ably.clientOptions() });
  return (await rest.channels.get(channel).history({ limit: 1000 })).items;
};

test('CREATE EXTENSION in a new database starts delivery within seconds, without a restart or a setting', async () => {
  sql(`CREATE DATABASE app1`);
  const started = Date.now();
  sql(`CREATE EXTENSION ably_pg`, 'app1');
  await waitFor(() => state('app1') === 'running', { what: 'a worker for app1' });
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 10000, `worker running after ${elapsed} ms`);
  sql(`SELECT ably.publish('app1-notes', 'hello', '{"n": 1}')`, 'app1');
  await waitFor(async () => (await history('app1-notes')).length === 1, { what: 'delivery from app1' });
});

test('pg_terminate_backend of a worker: the launcher starts it again', async () => {
  const pid = Number(sql(`SELECT worker_pid FROM ably.status`, 'app1'));
  assert.ok(pid > 0);
  sql(`SELECT pg_terminate_backend(${pid})`);
  await waitFor(() => {
    const now = Number(sql(`SELECT coalesce(worker_pid, 0) FROM ably.status`, 'app1'));
    return now > 0 && now !== pid && state('app1') === 'running';
  }, { what: 'a new worker' });
  sql(`SELECT ably.publish('app1-notes', 'again', '{"n": 2}')`, 'app1');
  await waitFor(async () => (await history('app1-notes')).length === 2, { what: 'delivery by the new worker' });
});

test('each database may publish with its own Ably key (ALTER DATABASE ... SET ably.api_key)', async () => {
  sql(`CREATE DATABASE app2`);
  sql(`ALTER DATABASE app2 SET ably.api_key = '${OTHER_KEY}'`);
  sql(`SELECT pg_reload_conf()`);
  sql(`CREATE EXTENSION ably_pg`, 'app2');
  await waitFor(() => state('app2') === 'running', { what: 'a worker for app2' });
  sql(`SELECT ably.publish('app2:notes', 'hello', '{}')`, 'app2');
  await waitFor(async () => (await history('app2:notes')).length === 1, { what: 'delivery from app2' });
  // app2's key may not publish elsewhere (app1's may): the refusal shows
  // which key each database's worker uses.
  sql(`SELECT ably.publish('elsewhere', 'from-app2', '{}')`, 'app2');
  sql(`SELECT ably.publish('elsewhere', 'from-app1', '{}')`, 'app1');
  await waitFor(() => sql(`SELECT error_code FROM ably.dead_letters WHERE channel = 'elsewhere'`, 'app2') === '40160', { what: "app2's refusal" });
  await waitFor(async () => (await history('elsewhere')).some((m) => m.name === 'from-app1'), { what: "app1's delivery" });
  assert.ok(!(await history('elsewhere')).some((m) => m.name === 'from-app2'));
});

test('no free worker slot: status says so; DROP EXTENSION and DROP DATABASE free the slot', async () => {
  // postgres, app1 and app2 use the three slots.
  sql(`CREATE EXTENSION IF NOT EXISTS ably_pg`);
  await waitFor(() => state('postgres') === 'running', { what: 'a worker for postgres' });
  sql(`CREATE DATABASE app3`);
  sql(`CREATE EXTENSION ably_pg`, 'app3');
  await waitFor(() => state('app3') === 'no-worker-slot', { what: 'no slot for app3' });
  assert.match(cluster.log(), /no free worker slot for database "app3"; raise ably.max_workers/);

  // DROP EXTENSION stops app2's worker (its queue is empty) ...
  await waitFor(() => Number(sql(`SELECT queue_depth FROM ably.status`, 'app2')) === 0, { what: 'app2 drained' });
  sql(`DROP EXTENSION ably_pg`, 'app2');
  await waitFor(() => state('app3') === 'running', { what: 'app3 gets the freed slot' });
  assert.match(cluster.log(), /ably_pg worker for database app2 stopped: the extension was dropped/);
  assert.doesNotMatch(cluster.log(), /ERROR:.*ably/);

  // ... and DROP DATABASE (no FORCE needed) stops app1's.
  sql(`DROP DATABASE app1`);
  await waitFor(() => !sql(`SELECT string_agg(backend_type, ',') FROM pg_stat_activity WHERE datname = 'app1'`), { what: 'app1 left alone' });
});

test('ably.database is an optional allow-list, applied on reload', async () => {
  sql(`ALTER SYSTEM SET ably.database = 'postgres'`);
  sql(`SELECT pg_reload_conf()`);
  await waitFor(() => state('app3') === 'not-in-ably.database', { what: 'app3 excluded' });
  assert.equal(state('postgres'), 'running');
  sql(`ALTER SYSTEM RESET ably.database`);
  sql(`SELECT pg_reload_conf()`);
  await waitFor(() => state('app3') === 'running', { what: 'app3 allowed again' });
});
