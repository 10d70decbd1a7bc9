// Schema changes of a channel-template column (issue 10, items 11-13): a
// published table never becomes unwritable, and ably.rules always matches
// the triggers that exist.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, waitFor } from './helpers.mjs';
import { errorOf } from './checks.mjs';

let s;
before(async () => {
  s = await stack();
});
after(() => s?.stop());

async function publishedTable(name) {
  await s.query(`CREATE TABLE ${name} (id int PRIMARY KEY, room text NOT NULL, body text)`);
  const { rows } = await s.query(`SELECT ably.publish_table('${name}', '${name}:{room}') AS id`);
  return Number(rows[0].id);
}

async function rulesOf(name) {
  const { rows } = await s.query(`SELECT id, channel FROM ably.rules WHERE relid = $1::regclass`, [name]);
  return rows;
}

/** Triggers on the table that run ably.capture(). */
async function captureTriggers(name) {
  const { rows } = await s.query(
    `SELECT count(*)::int AS n FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE t.tgrelid = $1::regclass AND n.nspname = 'ably' AND p.proname = 'capture'`,
    [name],
  );
  return rows[0].n;
}

const arrived = (channel, n) => waitFor(async () => {
  const h = await history(s, channel);
  return h.length >= n && h;
}, { what: `${n} messages on ${channel}` });

test('RENAME COLUMN of a template column: the rule follows, later writes publish to the same channel', async () => {
  await publishedTable('renamed');
  await s.query(`INSERT INTO renamed VALUES (1, 'a', 'before')`);
  await arrived('renamed:a', 1);
  await s.query(`ALTER TABLE renamed RENAME COLUMN room TO room_name`);
  // Everything that goes wrong is collected, so one run tells all of it.
  const problems = [];
  const rules = await rulesOf('renamed');
  if (rules.length !== 1 || rules[0].channel !== 'renamed:{room_name}') problems.push(`ably.rules after the rename: ${JSON.stringify(rules)}`);
  for (const sql of [`INSERT INTO renamed VALUES (2, 'a', 'after')`, `UPDATE renamed SET body = 'edited' WHERE id = 1`]) {
    const e = await errorOf(s.query(sql));
    if (e) problems.push(`${sql}: ${e.code} ${e.message}`);
  }
  assert.deepEqual(problems, []);
  const got = await arrived('renamed:a', 3);
  assert.deepEqual(got.map((m) => [m.data.event, m.data.new.id, m.data.new.body]), [['insert', 1, 'before'], ['insert', 2, 'after'], ['update', 1, 'edited']]);
  assert.equal(got[1].data.new.room_name, 'a');
});

test('DROP COLUMN of a template column is refused (2BP01); with CASCADE the rule goes with its triggers and writes still work', async () => {
  await publishedTable('dropped');
  // Everything that goes wrong is collected, so one run tells all of it.
  const problems = [];
  const refused = await errorOf(s.query(`ALTER TABLE dropped DROP COLUMN room`));
  if (!refused) {
    problems.push('DROP COLUMN of a template column succeeded without CASCADE');
  } else {
    if (refused.code !== '2BP01') problems.push(`refused with ${refused.code}, not 2BP01: ${refused.message}`);
    if ((await rulesOf('dropped')).length !== 1) problems.push('the refused DROP COLUMN changed ably.rules');
    await s.query(`ALTER TABLE dropped DROP COLUMN room CASCADE`);
  }
  const rules = await rulesOf('dropped');
  const triggers = await captureTriggers('dropped');
  if (rules.length !== 0 || triggers !== 0) problems.push(`after the column went: ably.rules ${JSON.stringify(rules)}, ${triggers} capture trigger(s); want neither`);
  for (const sql of [`INSERT INTO dropped VALUES (1, 'still writable')`, `UPDATE dropped SET body = 'edited' WHERE id = 1`]) {
    const e = await errorOf(s.query(sql));
    if (e) problems.push(`${sql}: ${e.code} ${e.message}`);
  }
  assert.deepEqual(problems, []);
});

test('ALTER COLUMN TYPE of a template column: refused with 0A000 and a HINT naming ably.unpublish_table, or allowed and still publishing', async () => {
  await publishedTable('retyped');
  const e = await errorOf(s.query(`ALTER TABLE retyped ALTER COLUMN room TYPE varchar(64)`));
  const { rows: [{ type }] } = await s.query(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'retyped'::regclass AND attname = 'room'`);
  if (e) {
    // refused: helpfully, and nothing changed
    assert.equal(e.code, '0A000', `${e.code}: ${e.message}`);
    assert.match(e.hint ?? '', /ably\.unpublish_table/, `the refusal has no HINT naming ably.unpublish_table (message: ${e.message}, hint: ${e.hint})`);
    assert.equal(type, 'text', 'the refused ALTER changed nothing');
  } else {
    assert.equal(type, 'character varying(64)');
  }
  // Either way the table stays writable, and the rule still publishes.
  assert.equal((await rulesOf('retyped')).length, 1);
  await s.query(`INSERT INTO retyped VALUES (1, 'a', 'after')`);
  await s.query(`UPDATE retyped SET body = 'edited' WHERE id = 1`);
  const got = await arrived('retyped:a', 2);
  assert.deepEqual(got.map((m) => m.data.event), ['insert', 'update']);
});
