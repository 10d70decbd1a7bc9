// A writer's memory stays bounded however often a published table's
// relcache entry is invalidated (issue 9, item 10).
//
// Each invalidation made the trigger compile the rule again and leak the
// condition's saved plan (5,000 ALTERs → 46 MB in one writing backend).
// Proves: 5,000 relcache invalidations of a published table with a
// condition (ALTER TABLE … ALTER COLUMN … SET STATISTICS from another
// session), each followed by an INSERT in one long-lived writer backend,
// grow that backend's memory (pg_backend_memory_contexts, read from the
// same session) by less than 4 MB. (A multi-statement condition being
// refused with 22023 is proved in conditions.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, createRole, ensurePublisherRole, waitFor } from './lib.mjs';

const INVALIDATIONS = 5000;
const LIMIT = 4 * 1024 * 1024;
let s;
before(async () => {
  s = await securityStack({ settings: { fsync: 'off', synchronous_commit: 'off' } });
  await s.su(`CREATE EXTENSION ably_pg`);
  await ensurePublisherRole(s, 'postgres');
  await createRole(s, 'rowner');
  await createRole(s, 'rwriter');
  await s.su(`GRANT ably_publisher TO rowner; GRANT pg_read_all_stats TO rwriter; CREATE SCHEMA rowner AUTHORIZATION rowner`);
  await s.as('rowner', `CREATE TABLE rowner.t (id bigserial PRIMARY KEY, x int, body text)`);
  await s.as('rowner', `GRANT INSERT ON rowner.t TO rwriter; GRANT USAGE ON SEQUENCE rowner.t_id_seq TO rwriter; GRANT USAGE ON SCHEMA rowner TO rwriter`);
  await s.as('rowner', `SELECT ably.publish_table('rowner.t', 'r', '{insert}', condition => $$body LIKE '%@%' AND x > 0$$)`);
});
after(() => s?.stop());

test(`${INVALIDATIONS} relcache invalidations leave a writing backend's memory bounded`, async () => {
  const writer = await s.connect({ user: 'rwriter' });
  const alterer = await s.connect();
  const memory = async () => Number((await writer.query(`SELECT sum(total_bytes)::bigint AS b FROM pg_backend_memory_contexts`)).rows[0].b);
  const round = async (i) => {
    await alterer.query(`ALTER TABLE rowner.t ALTER COLUMN x SET STATISTICS ${(i % 500) + 1}`);
    await writer.query(`INSERT INTO rowner.t (x, body) VALUES (1, 'no mention')`);
  };
  try {
    for (let i = 0; i < 200; i++) await round(i); // warm every cache once
    const before = await memory();
    for (let i = 0; i < INVALIDATIONS; i++) await round(i);
    const after = await memory();
    const grown = after - before;
    console.log(`# writer backend memory: ${before} → ${after} bytes (+${(grown / 1048576).toFixed(1)} MB over ${INVALIDATIONS} invalidations)`);
    assert.ok(grown < LIMIT, `the writer's memory grew by ${(grown / 1048576).toFixed(1)} MB over ${INVALIDATIONS} invalidations`);
    // the rule still works: a row that meets the condition is published
    await writer.query(`INSERT INTO rowner.t (x, body) VALUES (1, 'hi @ann')`);
    await waitFor(async () => (await s.history('r')).length === 1, { what: 'the row with @' });
    assert.equal((await s.history('r'))[0].data.new.body, 'hi @ann');
  } finally {
    await writer.end();
    await alterer.end();
  }
});
