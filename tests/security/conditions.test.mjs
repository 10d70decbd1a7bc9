// Rule conditions behave like CHECK constraints (issue 9, items 4 and 10).
//
// Proves: a condition is one boolean expression (a second statement, a FROM,
// a UNION smuggled into it → 22023, nothing recorded); it is parsed at
// publish time as the table's owner with search_path = pg_catalog, pg_temp
// (an unqualified user function is refused with a HINT to schema-qualify
// it) and stored resolved (ably.rules.condition shows the canonical text,
// as pg_get_expr shows a CHECK constraint); at write time it runs with the
// owner's rights and no name lookup through the writer's search_path, so it
// gives every writer the same result — a condition calling the owner's
// function in a schema only the owner may use works for writers who cannot
// use it, and a writer's planted operators never run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, createRole, ensurePublisherRole, rejectsWith, errorOf, assertNoForeignRuns, waitForOrExplain } from './lib.mjs';
import { extractNames, installShadows } from './shadows.mjs';

let s;
let owner;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  await ensurePublisherRole(s, 'postgres');
  for (const r of ['cowner', 'w1', 'w2']) await createRole(s, r);
  await s.su(`GRANT ably_publisher TO cowner; CREATE SCHEMA cowner AUTHORIZATION cowner; CREATE SCHEMA cowner_fns AUTHORIZATION cowner; CREATE SCHEMA w2_evil AUTHORIZATION w2`);
  await s.su(`GRANT USAGE ON SCHEMA cowner TO PUBLIC`);
  owner = await s.connect({ user: 'cowner' });
  await owner.query(`SET search_path = cowner_fns, cowner, public`);
  await owner.query(`CREATE TABLE cowner.posts (id int PRIMARY KEY, room int, status text, body text)`);
  await owner.query(`INSERT INTO cowner.posts VALUES (0, 0, 'keep', 'keep me')`);
  await owner.query(`GRANT INSERT ON cowner.posts TO w1, w2`);
  // the owner's private helpers: only cowner may use schema cowner_fns
  await owner.query(`CREATE TABLE cowner_fns.open_rooms (room int PRIMARY KEY); INSERT INTO cowner_fns.open_rooms VALUES (1)`);
  await owner.query(`CREATE FUNCTION cowner_fns.is_loud(t text) RETURNS boolean LANGUAGE sql AS $$ SELECT t = upper(t) $$`);
  await owner.query(`CREATE FUNCTION cowner_fns.visible(r int) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN RETURN EXISTS (SELECT 1 FROM cowner_fns.open_rooms o WHERE o.room = r); END $$`);
});
after(async () => {
  await owner?.end();
  await s?.stop();
});

/** Removes whatever rules a failed test left on the table. */
const cleanUp = () => owner.query(`SELECT ably.unpublish_table('cowner.posts')`);

test('a condition is one boolean expression: a second statement, FROM or UNION is 22023, and nothing is recorded', async (t) => {
  t.after(cleanUp);
  // text that only escaped the old "SELECT (<condition>)::boolean" wrapper
  // is not even an expression: refused (22023 or a syntax error)
  const escapes = [
    `true); DELETE FROM cowner.posts; SELECT (true`,
    `true)::boolean FROM pg_catalog.pg_class --`,
    `true) UNION SELECT (false`,
    `true)::boolean; SELECT (true`,
  ];
  for (const condition of escapes) {
    const e = await errorOf(owner.query(`SELECT ably.publish_table('cowner.posts', 'p', condition => $1)`, [condition]));
    assert.ok(e && ['22023', '42601'].includes(e.code), `condition ${JSON.stringify(condition)}: ${e ? `${e.code} ${e.message}` : 'accepted'}`);
  }
  // one boolean expression, nothing more: 22023
  const notOneExpression = [
    `true; DELETE FROM cowner.posts`,
    `status = 'public'; SELECT 1`,
    `true FROM pg_catalog.pg_class`,
    `true UNION SELECT false`,
    `status = 'public' UNION ALL SELECT true FROM cowner.posts`,
  ];
  for (const condition of notOneExpression) {
    await rejectsWith(owner.query(`SELECT ably.publish_table('cowner.posts', 'p', condition => $1)`, [condition]), '22023', { message: `condition ${JSON.stringify(condition)}` });
  }
  const { rows } = await s.su(`SELECT count(*)::int AS n FROM ably.rules`);
  assert.equal(rows[0].n, 0, 'a smuggled condition was recorded');
  const { rows: kept } = await s.su(`SELECT count(*)::int AS n FROM cowner.posts`);
  assert.equal(kept[0].n, 1);
});

test('a condition is resolved at publish time with search_path pg_catalog and stored as canonical text', async (t) => {
  t.after(cleanUp);
  // unqualified user function: not found under the pinned path, with a hint
  const e = await errorOf(owner.query(`SELECT ably.publish_table('cowner.posts', 'p', condition => 'is_loud(body)')`));
  assert.ok(e, 'an unqualified user function in a condition was accepted (resolved through the caller\'s search_path)');
  assert.ok(e.hint && /schema|qualif/i.test(e.hint), `expected a HINT to schema-qualify the function, got ${e.code}: ${e.message} / HINT: ${e.hint}`);
  // qualified: accepted; the stored text is what PostgreSQL shows for the
  // same expression as a CHECK constraint
  const conditions = [`cowner_fns.is_loud(body)`, `body LIKE '%@%'`, `status = 'public' AND room BETWEEN 1 AND 9`];
  for (const condition of conditions) {
    const { rows: [{ id }] } = await owner.query(`SELECT ably.publish_table('cowner.posts', 'p', condition => $1) AS id`, [condition]);
    const { rows: [{ stored }] } = await s.su(`SELECT condition AS stored FROM ably.rules WHERE id = $1`, [id]);
    await s.su(`CREATE TABLE public.shape (id int, room int, status text, body text)`);
    await s.su(`ALTER TABLE public.shape ADD CONSTRAINT c CHECK (${condition})`);
    const { rows: [{ canonical }] } = await s.su(`SELECT pg_get_expr(conbin, conrelid) AS canonical FROM pg_constraint WHERE conname = 'c' AND conrelid = 'public.shape'::regclass`);
    await s.su(`DROP TABLE public.shape`);
    assert.equal(stored, canonical, `ably.rules.condition for ${condition}`);
    await owner.query(`SELECT ably.unpublish_table('cowner.posts', $1)`, [id]);
  }
});

test("the owner's condition gives every writer the same result, with the owner's rights, and runs no writer's code", async () => {
  // w2 plants shadows for every name ably_pg and this condition use
  const condition = `cowner_fns.visible(room) AND body LIKE '%@%' AND status = 'public'`;
  const w2setup = await s.connect({ user: 'w2' });
  await installShadows(w2setup, { schema: 'w2_evil', creator: 'w2', names: extractNames(undefined, [condition, `o.room = r`, 'SELECT t = upper(t)']) });
  await w2setup.query(`ALTER ROLE w2 SET search_path = w2_evil, pg_catalog`);
  await w2setup.end();
  await owner.query(`SELECT ably.publish_table('cowner.posts', 'c:{room}', '{insert}', condition => $1)`, [condition]);

  const mark = s.logMark();
  const rows = (base) => [
    `(${base + 1}, 1, 'public', 'hi @ann')`, // open room, @, public: published
    `(${base + 2}, 1, 'public', 'no at sign')`,
    `(${base + 3}, 2, 'public', 'closed @room')`,
    `(${base + 4}, 1, 'draft', 'draft @ann')`,
  ].join(', ');
  const e1 = await errorOf(s.as('w1', `INSERT INTO cowner.posts VALUES ${rows(10)}`));
  const e2 = await errorOf(s.as('w2', `INSERT INTO cowner.posts VALUES ${rows(20)}`));
  assertNoForeignRuns(s, mark, ['w2']);
  assert.equal(e1, null, `a writer without access to the owner's schema could not insert: ${e1?.message}`);
  assert.equal(e2, null, `a writer with shadows could not insert: ${e2?.message}`);
  // a marker from the owner: once it arrived, everything before it on c:1 has
  await owner.query(`INSERT INTO cowner.posts VALUES (99, 1, 'public', 'marker @')`);
  await waitForOrExplain(s, async () => (await s.history('c:1')).some((m) => m.data.new.id === 99), { mark, creators: ['w2'], what: 'the marker' });
  assert.deepEqual((await s.history('c:1')).map((m) => m.data.new.id), [11, 21, 99], 'both writers get the same, correct result');
  assert.equal((await s.history('c:2')).length, 0);
  assertNoForeignRuns(s, mark, ['w2']);
});
