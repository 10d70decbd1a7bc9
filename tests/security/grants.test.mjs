// Channel grants: a DBA restricts where each role may publish.
//
// Proves: ably.grant_channels(role regrole, patterns text[]) and
// ably.revoke_channels(role regrole, patterns text[] DEFAULT NULL) manage
// ably.channel_grants(role regrole, pattern text, …), are not executable by
// PUBLIC, and the table is not writable by PUBLIC. Patterns are Ably
// capability resources: '*', 'ns:*' (channels starting with 'ns:') or an
// exact name. When a grant applies to the caller (granted to it or to a role
// whose privileges it has), ably.publish_table refuses a channel template
// that could render a channel outside the patterns, and ably.publish a
// channel outside them — 42501 with a HINT. With no applying grant, any
// channel is allowed. Grants are dumped with the rules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { securityStack, createRole, ensurePublisherRole, rejectsWith, PG_BIN, PINNED } from './lib.mjs';

let s;
let alice;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  await ensurePublisherRole(s, 'postgres');
  for (const r of ['alice', 'bob', 'carol']) {
    await createRole(s, r);
    await s.su(`GRANT ably_publisher TO ${r}; CREATE SCHEMA ${r} AUTHORIZATION ${r}`);
  }
  await s.su(`CREATE ROLE chat_team NOLOGIN; GRANT chat_team TO carol`);
  await s.as('alice', `CREATE TABLE alice.messages (id int PRIMARY KEY, room_id int, author text, body text)`);
  await s.as('carol', `CREATE TABLE carol.messages (id int PRIMARY KEY, room_id int, author text, body text)`);
  alice = await s.connect({ user: 'alice' });
});
after(async () => {
  await alice?.end();
  await s?.stop();
});

test('grant_channels/revoke_channels exist, are for superusers only, and the grants table is read-only to others', async () => {
  await rejectsWith(alice.query(`SELECT ably.grant_channels('alice', ARRAY['*'])`), '42501', { message: 'grant_channels by a non-superuser' });
  await rejectsWith(alice.query(`SELECT ably.revoke_channels('alice')`), '42501', { message: 'revoke_channels by a non-superuser' });
  await rejectsWith(alice.query(`INSERT INTO ably.channel_grants (role, pattern) VALUES ('alice', '*')`), '42501', { message: 'writing ably.channel_grants' });
  const { rows } = await s.su(
    `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
      WHERE p.pronamespace = 'ably'::regnamespace AND p.proname IN ('grant_channels', 'revoke_channels')
        AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'`);
  assert.deepEqual(rows, [], 'executable by PUBLIC');
  const { rows: args } = await s.su(
    `SELECT proname::text, pg_get_function_identity_arguments(oid) AS args FROM pg_proc
      WHERE pronamespace = 'ably'::regnamespace AND proname IN ('grant_channels', 'revoke_channels') ORDER BY 1`);
  assert.deepEqual(args.map((r) => `${r.proname}(${r.args})`), ['grant_channels(role regrole, patterns text[])', 'revoke_channels(role regrole, patterns text[])']);
});

test('with a grant of chat:*, templates and channels outside it are refused with 42501 and a HINT', async () => {
  await s.su(`SELECT ably.grant_channels('alice', ARRAY['chat:*'])`);
  const { rows } = await s.su(`SELECT role::text, pattern FROM ably.channel_grants ORDER BY pattern`);
  assert.deepEqual(rows, [{ role: 'alice', pattern: 'chat:*' }]);
  // fits
  for (const channel of ['chat:{room_id}', 'chat:general', 'chat:{room_id}:{author}']) {
    const { rows: r } = await alice.query(`SELECT ably.publish_table('alice.messages', $1, '{insert}') AS id`, [channel]);
    await alice.query(`SELECT ably.unpublish_table('alice.messages', $1)`, [r[0].id]);
  }
  await alice.query(`SELECT ably.publish('chat:1', 'x', '{}')`);
  // does not fit
  for (const channel of ['{author}', 'news:{room_id}', 'chat{room_id}', 'chatroom', '{author}:chat:x']) {
    await rejectsWith(alice.query(`SELECT ably.publish_table('alice.messages', $1, '{insert}')`, [channel]), '42501', { hint: true, message: `template ${channel}` });
  }
  for (const channel of ['news:1', 'chat', 'chatx:1', 'private:chat:1']) {
    await rejectsWith(alice.query(`SELECT ably.publish($1, 'x', '{}')`, [channel]), '42501', { hint: true, message: `publish to ${channel}` });
  }
  const { rows: left } = await s.su(`SELECT count(*)::int AS n FROM ably.rules`);
  assert.equal(left[0].n, 0, 'a refused rule was recorded');
});

test('an exact pattern allows exactly that channel; * allows everything; a grant to a group applies to its members', async () => {
  await s.su(`SELECT ably.grant_channels('bob', ARRAY['notices'])`);
  const bob = await s.connect({ user: 'bob' });
  try {
    await bob.query(`SELECT ably.publish('notices', 'x', '{}')`);
    await rejectsWith(bob.query(`SELECT ably.publish('notices:1', 'x', '{}')`), '42501', { hint: true, message: 'notices:1 with an exact grant' });
    await rejectsWith(bob.query(`SELECT ably.publish('notice', 'x', '{}')`), '42501', { hint: true, message: 'notice with an exact grant' });
    await bob.query(`CREATE TABLE bob.t (id int, kind text)`);
    await bob.query(`SELECT ably.publish_table('bob.t', 'notices', '{insert}')`);
    await rejectsWith(bob.query(`SELECT ably.publish_table('bob.t', 'notices{kind}', '{insert}')`), '42501', { hint: true, message: 'template notices{kind}' });
    await s.su(`SELECT ably.grant_channels('bob', ARRAY['*'])`);
    await bob.query(`SELECT ably.publish('anything:at:all', 'x', '{}')`);
    await bob.query(`SELECT ably.publish_table('bob.t', '{kind}', '{insert}')`);
  } finally {
    await bob.end();
  }
  await s.su(`SELECT ably.grant_channels('chat_team', ARRAY['team:*'])`);
  const carol = await s.connect({ user: 'carol' });
  try {
    await carol.query(`SELECT ably.publish('team:1', 'x', '{}')`);
    await rejectsWith(carol.query(`SELECT ably.publish('chat:1', 'x', '{}')`), '42501', { hint: true, message: "outside the group's grant" });
    await rejectsWith(carol.query(`SELECT ably.publish_table('carol.messages', '{author}', '{insert}')`), '42501', { hint: true, message: "template outside the group's grant" });
    await carol.query(`SELECT ably.publish_table('carol.messages', 'team:{room_id}', '{insert}')`);
  } finally {
    await carol.end();
  }
});

test('revoke_channels removes some or all patterns; with no applying grant every channel is allowed again', async () => {
  await s.su(`SELECT ably.grant_channels('alice', ARRAY['news:*'])`);
  await alice.query(`SELECT ably.publish('news:1', 'x', '{}')`);
  await s.su(`SELECT ably.revoke_channels('alice', ARRAY['news:*'])`);
  await rejectsWith(alice.query(`SELECT ably.publish('news:1', 'x', '{}')`), '42501', { hint: true, message: 'after revoking news:*' });
  await alice.query(`SELECT ably.publish('chat:1', 'x', '{}')`);
  await s.su(`SELECT ably.revoke_channels('alice')`);
  const { rows } = await s.su(`SELECT count(*)::int AS n FROM ably.channel_grants WHERE role = 'alice'::regrole`);
  assert.equal(rows[0].n, 0);
  await alice.query(`SELECT ably.publish('news:1', 'x', '{}')`);
  await alice.query(`SELECT ably.publish_table('alice.messages', '{author}', '{insert}')`);
});

test('channel grants are dumped with the rules', async () => {
  const dump = execFileSync(join(PG_BIN, 'pg_dump'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-Fc', 'postgres'], { env: { ...process.env, PGOPTIONS: PINNED } });
  await s.su(`CREATE DATABASE restored`);
  execFileSync(join(PG_BIN, 'pg_restore'), ['-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '--exit-on-error', '-d', 'restored'], { input: dump, stdio: 'pipe', env: { ...process.env, PGOPTIONS: PINNED } });
  const q = `SELECT role::text, pattern FROM ably.channel_grants ORDER BY 1, 2`;
  const { rows: here } = await s.su(q);
  const { rows: there } = await s.su(q, [], 'restored');
  assert.ok(here.length > 0);
  assert.deepEqual(there, here);
});
