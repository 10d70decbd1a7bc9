// Message ids never repeat within Ably's two-minute idempotency window, or
// Ably drops the later message as a duplicate of the earlier one while the
// worker counts it delivered (issue 10, item 1). Ids are
// <epoch>-t<tick>-<batch>:<index> (a tick's repeatable cut) or
// <epoch>-<batch>:<index> (a recorded batch, src/batch.rs); the epoch is
// drawn at CREATE EXTENSION and again on a new timeline, so tick numbers or
// a batch sequence that moved back (re-creation, promotion of a standby)
// cannot reuse an id.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stack, history, waitFor } from './helpers.mjs';
import { drained } from './checks.mjs';

/** A message id without its `-[t<tick>-]<batch>:<index>` tail. */
const prefixOf = (id) => id.replace(/-(t\d+-)?\d+:\d+$/, '');

const stacks = [];
after(async () => {
  for (const s of stacks) await s.stop();
});

test('DROP and CREATE EXTENSION within two minutes: every message after re-creation is delivered', async () => {
  const s = await stack();
  stacks.push(s);
  await s.query(`CREATE TABLE items (id int PRIMARY KEY, label text)`);
  const publish = () => s.query(`SELECT ably.publish_table('items', 'ids-recreate')`);
  await publish();
  // One tick per row: the second incarnation's ticks get the first one's
  // tick numbers again.
  for (let id = 1; id <= 5; id++) {
    await s.query(`INSERT INTO items VALUES ($1, 'first')`, [id]);
    await drained(s);
  }
  await waitFor(async () => (await history(s, 'ids-recreate')).length === 5, { what: '5 messages before re-creation' });

  await s.query(`DROP EXTENSION ably_pg`);
  await s.query(`CREATE EXTENSION ably_pg`);
  await publish();
  for (let id = 6; id <= 10; id++) {
    await s.query(`INSERT INTO items VALUES ($1, 'second')`, [id]);
    // the worker holds each delivered (or lost) before the next is written
    await drained(s);
  }
  const got = await history(s, 'ids-recreate');
  const rows = got.map((m) => m.data.new.id);
  const missing = [6, 7, 8, 9, 10].filter((id) => !rows.includes(id));
  assert.deepEqual(missing, [], `rows written after re-creation that Ably dropped as duplicates (ids ${got.map((m) => m.id).join(', ')})`);
  assert.deepEqual(rows, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(new Set(got.map((m) => m.id)).size, got.length, 'no id used twice');

  // <epoch>-…:<index>, with the epoch of the incarnation that sent it
  const { rows: [{ epoch }] } = await s.query(`SELECT epoch FROM ably.queue_state`);
  const second = got.filter((m) => m.data.new.id > 5);
  for (const m of second) assert.match(m.id, new RegExp(`^${epoch}-(t\\d+-)?\\d+:\\d+$`));
  assert.ok(got.filter((m) => m.data.new.id <= 5).every((m) => prefixOf(m.id) !== epoch), 'a new epoch after re-creation');
});

test('a promoted standby sends under a new epoch, not the primary\'s', async () => {
  const s = await stack();
  stacks.push(s);
  await s.query(`CREATE TABLE items (id int PRIMARY KEY, label text)`);
  await s.query(`SELECT ably.publish_table('items', 'ids-promote')`);
  await s.query(`INSERT INTO items VALUES (1, 'primary')`);
  await drained(s);
  const replica = await s.cluster.standby();
  try {
    await waitFor(() => replica.psql(`SELECT state FROM ably.status`).trim() === 'standby', { what: 'standby state' });
    replica.promote();
    await waitFor(() => replica.psql(`SELECT state FROM ably.status`).trim() === 'running', { what: 'promoted worker running' });
    replica.psql(`INSERT INTO items VALUES (2, 'promoted')`);
    const got = await waitFor(async () => {
      const h = await history(s, 'ids-promote');
      return h.some((m) => m.data.new.id === 2) && h;
    }, { what: 'delivery from the promoted standby' });
    const fromPrimary = got.find((m) => m.data.new.id === 1);
    const fromPromoted = got.find((m) => m.data.new.id === 2);
    assert.notEqual(prefixOf(fromPromoted.id), prefixOf(fromPrimary.id), `ids ${fromPrimary.id} (primary) and ${fromPromoted.id} (promoted) share their prefix`);
    const primaryEpoch = s.cluster.psql(`SELECT epoch FROM ably.queue_state`).trim();
    const promotedEpoch = replica.psql(`SELECT epoch FROM ably.queue_state`).trim();
    assert.notEqual(promotedEpoch, primaryEpoch, 'a new epoch on the new timeline');
    assert.equal(prefixOf(fromPromoted.id), promotedEpoch);
    assert.equal(prefixOf(fromPrimary.id), primaryEpoch);
  } finally {
    await replica.stop();
  }
});
