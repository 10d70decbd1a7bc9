// The API key never reaches the server log, and the masking is no oracle
// (issue 9, item 9).
//
// With log_statement = 'all', proves that none of these puts the secret in
// any log line (STATEMENT lines and syntax-error echoes included):
//   BEGIN; ALTER SYSTEM SET ably.api_key = '…'   (fails inside a transaction)
//   a syntax error in a statement that contains the key
//   SELECT set_config('ably.api_key', '…', false) as a superuser
//   ALTER SYSTEM SET "ably"."api_key" = '…'
//   ALTER SYSTEM SET ably.api_key = '…' + reload ("parameter changed" line)
// and that `SELECT '<guess>'::int` gives the same error text and log lines
// whether or not the guess is the configured secret.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { securityStack, createRole, errorOf, waitFor, TEST_KEY } from './lib.mjs';

let s;
before(async () => {
  s = await securityStack({ settings: { log_statement: "'all'" } });
  await s.su(`CREATE EXTENSION ably_pg`);
  await createRole(s, 'prober');
});
after(() => s?.stop());

const fresh = (n) => `Sekrit${n}x${randomBytes(9).toString('hex')}`;

async function configuredKey() {
  return (await s.su(`SHOW ably.api_key`)).rows[0]['ably.api_key'];
}

test('with log_statement = all, no way of setting the key writes the secret to the log', async () => {
  const secrets = [1, 2, 3, 4, 5, 6].map(fresh);
  const mark = s.logMark();
  const c = await s.connect();
  try {
    await c.query('BEGIN');
    const e1 = await errorOf(c.query(`ALTER SYSTEM SET ably.api_key = 'appId.keyId:${secrets[0]}'`));
    assert.equal(e1?.code, '25001', 'ALTER SYSTEM inside a transaction block fails');
    await c.query('ROLLBACK');
    const e2 = await errorOf(c.query(`ALTER SYSTM SET ably.api_key = 'appId.keyId:${secrets[1]}'`));
    assert.equal(e2?.code, '42601');
    const e3 = await errorOf(c.query(`ALTER SYSTEM SET ably.api_key = 'appId.keyId:${secrets[2]}' 'trailing'`));
    assert.equal(e3?.code, '42601');
    // refused (the setting is reloaded, not set per session), but logged
    await errorOf(c.query(`SELECT set_config('ably.api_key', 'appId.keyId:${secrets[3]}', false)`));
    await c.query(`ALTER SYSTEM SET "ably"."api_key" = 'appId.keyId:${secrets[4]}'`);
    await c.query(`ALTER SYSTEM SET ably.api_key = 'appId.keyId:${secrets[5]}'`);
    await c.query(`SELECT pg_reload_conf()`);
    await c.query(`SELECT 'log_statement check'`);
  } finally {
    await c.end();
  }
  await waitFor(async () => (await configuredKey()) === `appId.keyId:${secrets[5]}`, { what: 'the reload' });
  await waitFor(() => /parameter "ably\.api_key" changed/.test(s.logSince(mark)), { what: 'the reload\'s "parameter changed" line' });
  // put the test key back for the next test
  await s.su(`ALTER SYSTEM SET ably.api_key = '${TEST_KEY}'`);
  await s.su(`SELECT pg_reload_conf()`);
  await waitFor(async () => (await configuredKey()) === TEST_KEY, { what: 'the key restored' });

  const log = s.logSince(mark);
  assert.match(log, /statement: SELECT 'log_statement check'/, 'log_statement = all is in effect');
  const leaks = log.split('\n').filter((line) => secrets.some((secret) => line.includes(secret)));
  assert.deepEqual(leaks, [], 'the secret reached the server log');
});

test('masking is no oracle: SELECT \'<guess>\'::int reads the same whether or not the guess is the secret', async () => {
  const secret = (await configuredKey()).split(':')[1];
  assert.equal(secret, TEST_KEY.split(':')[1]);
  const guess = secret.slice(0, -1) + (secret.endsWith('x') ? 'y' : 'x');
  const probe = async (literal) => {
    const c = await s.connect({ user: 'prober' });
    try {
      const pid = (await c.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
      const mark = s.logMark();
      const e = await errorOf(c.query(`SELECT '${literal}'::int`));
      await c.query(`SELECT 'probe done'`);
      await waitFor(() => s.logSince(mark).includes('probe done'), { what: 'the probe in the log' });
      const lines = s.logSince(mark).split('\n')
        .filter((l) => l.includes(`[${pid}]`) && !l.includes('probe done'))
        .map((l) => l.replace(/^.*?\[\d+\]\s*/, '').split(literal).join('<literal>'));
      return { error: `${e?.code} ${e?.message}`.split(literal).join('<literal>'), lines };
    } finally {
      await c.end();
    }
  };
  const withGuess = await probe(guess);
  const withSecret = await probe(secret);
  assert.equal(withSecret.error, withGuess.error, 'the error text tells whether the guess was the secret');
  assert.deepEqual(withSecret.lines, withGuess.lines, 'the log tells whether the guess was the secret');
});
