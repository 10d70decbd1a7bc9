// Who may publish at all.
//
// Proves: EXECUTE on ably.publish_table, ably.unpublish_table and
// ably.publish is not granted to PUBLIC; CREATE EXTENSION creates (if
// missing) the NOLOGIN role ably_publisher holding EXECUTE on them; a role
// without it gets 42501 from each (also on its own table and on a temporary
// table), and ably.create_token_request / ably.retry_dead_letters are not
// executable by PUBLIC either. Membership in ably_publisher is enough to
// publish one's own tables.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, createRole, rejectsWith } from './lib.mjs';

const PUBLISHER_FUNCTIONS = [
  'ably.publish_table(regclass,text,text[],text,text[],text)',
  'ably.unpublish_table(regclass,bigint)',
  'ably.publish(text,text,jsonb)',
];
const NOT_PUBLIC = [
  ...PUBLISHER_FUNCTIONS,
  'ably.create_token_request(text,jsonb,interval)',
  'ably.retry_dead_letters(bigint[], text, boolean)',
];

let s;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  await createRole(s, 'plain');
  await s.su(`CREATE SCHEMA plain AUTHORIZATION plain`);
});
after(() => s?.stop());

async function publicGrants(db) {
  const { rows } = await s.su(
    `SELECT p.oid::regprocedure::text AS fn
       FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
      WHERE p.pronamespace = 'ably'::regnamespace AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'`, [], db);
  return rows.map((r) => r.fn.replace(/\s+/g, ''));
}

test('CREATE EXTENSION creates a NOLOGIN ably_publisher that may publish; PUBLIC may not', async () => {
  const { rows } = await s.su(`SELECT rolcanlogin FROM pg_roles WHERE rolname = 'ably_publisher'`);
  assert.equal(rows.length, 1, 'CREATE EXTENSION created no role ably_publisher');
  assert.equal(rows[0].rolcanlogin, false, 'ably_publisher must be NOLOGIN');
  for (const fn of PUBLISHER_FUNCTIONS) {
    const { rows: r } = await s.su(`SELECT has_function_privilege('ably_publisher', $1, 'EXECUTE') AS ok`, [fn]);
    assert.equal(r[0].ok, true, `ably_publisher may not execute ${fn}`);
  }
  const open = await publicGrants('postgres');
  for (const fn of NOT_PUBLIC) assert.ok(!open.includes(fn.replace(/\s+/g, '')), `${fn} is executable by PUBLIC`);
});

test('a role with default rights gets 42501 from every publishing function, ably_publisher lets it publish its own table', async () => {
  const c = await s.connect({ user: 'plain' });
  try {
    await c.query(`CREATE TABLE plain.notes (id int PRIMARY KEY, body text)`);
    await rejectsWith(c.query(`SELECT ably.publish_table('plain.notes', 'notes')`), '42501', { message: 'publish_table on its own table' });
    await rejectsWith(c.query(`SELECT ably.unpublish_table('plain.notes')`), '42501', { message: 'unpublish_table on its own table' });
    await rejectsWith(c.query(`SELECT ably.publish('notes', 'x', '{}')`), '42501', { message: 'publish' });
    await rejectsWith(c.query(`SELECT ably.create_token_request('x')`), '42501', { message: 'create_token_request' });
    await rejectsWith(c.query(`SELECT ably.retry_dead_letters()`), '42501', { message: 'retry_dead_letters' });
    await c.query(`CREATE TEMP TABLE scratch (id int)`);
    await rejectsWith(c.query(`SELECT ably.publish_table('pg_temp.scratch', 'notes')`), '42501', { message: 'publish_table on a temp table' });
    const { rows } = await s.su(`SELECT count(*)::int AS n FROM ably.rules`);
    assert.equal(rows[0].n, 0, 'no rule was recorded');
  } finally {
    await c.end();
  }
  await s.su(`GRANT ably_publisher TO plain`);
  const c2 = await s.connect({ user: 'plain' });
  try {
    const { rows } = await c2.query(`SELECT ably.publish_table('plain.notes', 'notes') AS id`);
    assert.ok(Number(rows[0].id) > 0);
    await c2.query(`SELECT ably.publish('notes', 'x', '{}')`);
    assert.equal((await c2.query(`SELECT ably.unpublish_table('plain.notes') AS n`)).rows[0].n, 1);
  } finally {
    await c2.end();
    await s.su(`REVOKE ably_publisher FROM plain`);
  }
});

test('CREATE EXTENSION where ably_publisher already exists (another database, or re-created) works and grants it there', async () => {
  await s.su(`CREATE DATABASE second`);
  await s.su(`CREATE EXTENSION ably_pg`, [], 'second');
  for (const fn of PUBLISHER_FUNCTIONS) {
    const { rows } = await s.su(`SELECT has_function_privilege('ably_publisher', $1, 'EXECUTE') AS ok`, [fn], 'second');
    assert.equal(rows[0].ok, true, `in a second database, ably_publisher may not execute ${fn}`);
  }
  const open = await publicGrants('second');
  for (const fn of NOT_PUBLIC) assert.ok(!open.includes(fn.replace(/\s+/g, '')), `${fn} is executable by PUBLIC in the second database`);
  await s.su(`DROP EXTENSION ably_pg`, [], 'second');
  await s.su(`CREATE EXTENSION ably_pg`, [], 'second');
  const { rows } = await s.su(`SELECT has_function_privilege('ably_publisher', 'ably.publish(text,text,jsonb)', 'EXECUTE') AS ok`, [], 'second');
  assert.equal(rows[0].ok, true);
});
