// What a DBA relies on: a standby that waits for promotion, DROP EXTENSION
// that leaves no trigger behind, pg_dump/pg_restore that keep the rules, and
// a queue that reclaims its space by rotation instead of bloating.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { stack, history, waitFor, queueDepth, status } from './helpers.mjs';
import { Cluster, PG_BIN } from '../../scripts/stack.mjs';
import { join } from 'node:path';

let s;
before(async () => {
  s = await stack();
  await s.query(`CREATE TABLE items (id int PRIMARY KEY, name text)`);
  await s.query(`SELECT ably.publish_table('items', 'items')`);
});
after(() => s?.stop());

test('a standby waits for promotion, then delivers', async () => {
  const replica = await s.cluster.standby();
  try {
    await waitFor(() => replica.psql('SELECT state FROM ably.status').trim() === 'standby', { what: 'standby state' });
    await s.query(`INSERT INTO items VALUES (1, 'from primary')`);
    await waitFor(async () => (await history(s, 'items')).length === 1, { what: 'primary delivery' });
    replica.promote();
    replica.psql(`INSERT INTO items VALUES (2, 'from promoted standby')`);
    await waitFor(async () => (await history(s, 'items')).some((m) => m.data.new.id === 2), { what: 'delivery after promotion' });
    assert.equal(replica.psql('SELECT state FROM ably.status').trim(), 'running');
    const ids = (await history(s, 'items')).map((m) => m.data.new.id);
    assert.deepEqual(ids, [1, 2], 'row 1 is not published twice by the promoted standby');
  } finally {
    await replica.stop();
  }
});

test('the queue rotates and truncates drained parts: bounded size, no dead rows', async () => {
  await s.query(`ALTER SYSTEM SET ably.queue_rotate_rows = 1000`);
  await s.query(`SELECT pg_reload_conf()`);
  const rotations = async () => Number((await s.query(`SELECT rotations FROM ably.queue_state`)).rows[0].rotations);
  const before = await rotations();
  for (let i = 0; i < 8; i++) {
    await s.query(`INSERT INTO items SELECT g, 'x' FROM generate_series(${1000 + i * 1000}, ${1999 + i * 1000}) g`);
    await waitFor(async () => (await queueDepth(s)) === 0, { what: 'drained' });
  }
  // Writers moved on at least once per 1,000 delivered rows (a part is
  // only reused once truncated, so the count depends on timing: at least 2).
  await waitFor(async () => (await rotations()) >= before + 2, { what: 'two rotations' });
  // Rows are never deleted or updated, so no part has a dead row to vacuum;
  // drained parts are truncated instead.
  const { rows } = await s.query(
    `SELECT coalesce(sum(s.n_dead_tup), 0)::int AS dead
       FROM pg_class c JOIN pg_stat_all_tables s ON s.relid = c.oid
      WHERE c.oid IN ('ably.queue_0'::regclass, 'ably.queue_1'::regclass, 'ably.queue_2'::regclass)`,
  );
  assert.equal(rows[0].dead, 0, 'no dead rows in the queue parts');
  // With two rotations at least one part other than the current one held
  // rows: both of them end up truncated (only index metapages left; a full
  // part holds 1,000 rows, well over 100 kB).
  await waitFor(async () => {
    const { rows: sizes } = await s.query(
      `SELECT p, pg_total_relation_size(format('ably.queue_%s', p)::regclass) AS size
         FROM generate_series(0, 2) p, ably.queue_state q WHERE p <> q.current_part`,
    );
    return sizes.length === 2 && sizes.every((r) => Number(r.size) <= 65536);
  }, { timeout: 30000, what: 'the drained parts truncated' });
  await s.query(`ALTER SYSTEM RESET ably.queue_rotate_rows`);
  await s.query(`SELECT pg_reload_conf()`);
});

test("autovacuum sees the worker's bookkeeping: ably.ticks reports its inserts and deletes", async () => {
  // A background worker flushes its table statistics only if it asks to;
  // without them the dead rows of ably.ticks (and of ably.batches, written
  // only for batches re-cut after a refusal) are invisible to autovacuum.
  for (let i = 0; i < 20; i++) await s.query(`INSERT INTO items VALUES (${20000 + i}, 'stats')`);
  await waitFor(async () => (await queueDepth(s)) === 0, { what: 'drained' });
  await waitFor(async () => {
    const { rows } = await s.query(
      `SELECT n_tup_ins, n_tup_del FROM pg_stat_all_tables WHERE schemaname = 'ably' AND relname = 'ticks'`,
    );
    return rows.length === 1 && Number(rows[0].n_tup_ins) > 0 && Number(rows[0].n_tup_del) > 0;
  }, { timeout: 30000, what: 'statistics of ably.ticks' });
});

test('pg_dump and pg_restore keep the rules; DROP EXTENSION removes every trigger it made', async () => {
  await s.query(`CREATE DATABASE restored`);
  const dump = execFileSync(join(PG_BIN, 'pg_dump'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-Fc', 'postgres']);
  execFileSync(join(PG_BIN, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-d', 'restored'], { input: dump });
  const rules = s.cluster.psql(`SELECT relid::text || ' ' || channel FROM ably.rules ORDER BY id`, 'restored').trim();
  assert.equal(rules, 'items items');
  s.cluster.psql(`INSERT INTO items VALUES (424242, 'restored')`, 'restored');
  assert.equal(s.cluster.psql(`SELECT count(*) FROM ably.queue`, 'restored').trim(), '1', 'the restored trigger queues changes');
  assert.equal(s.cluster.psql(`SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ably_rule_%'`, 'restored').trim() !== '0', true);

  // It holds an undelivered message (no worker serves 'restored'): a plain
  // DROP EXTENSION is refused; CASCADE discards it.
  assert.throws(() => s.cluster.psql(`DROP EXTENSION ably_pg`, 'restored'), /not delivered/);
  s.cluster.psql(`DROP EXTENSION ably_pg CASCADE`, 'restored');
  assert.equal(s.cluster.psql(`SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ably_rule_%'`, 'restored').trim(), '0');
  s.cluster.psql(`INSERT INTO items VALUES (424243, 'no extension')`, 'restored');
  s.cluster.psql(`CREATE EXTENSION ably_pg`, 'restored');
  assert.equal(s.cluster.psql(`SELECT count(*) FROM ably.rules`, 'restored').trim(), '0');
});

test('without shared_preload_libraries, changes still queue and status says why nothing delivers', async () => {
  const bare = new Cluster({ ablyPort: s.ably.port, settings: { shared_preload_libraries: "''" } });
  await bare.start();
  try {
    bare.psql(`CREATE EXTENSION ably_pg`);
    bare.psql(`CREATE TABLE t (id int); SELECT ably.publish_table('t', 'c')`);
    bare.psql(`INSERT INTO t VALUES (1)`);
    assert.equal(bare.psql(`SELECT state || ' ' || queue_depth FROM ably.status`).trim(), 'not-loaded 1');
  } finally {
    await bare.stop();
  }
});
