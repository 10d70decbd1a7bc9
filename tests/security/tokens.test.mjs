// Token requests cannot be rearranged (issue 9, item 8).
//
// The signed text of a TokenRequest is newline-separated (keyName, ttl,
// capability, clientId, timestamp, nonce). A request signed for client_id
// "alice\n<ts>\n<x>" has the same signed text as one for clientId "alice"
// with timestamp <ts> and nonce "<x>\n<timestamp>\n<nonce>", so it could be
// turned into a valid request for "alice" (or "*") the caller was never
// given. Proves: ably.create_token_request refuses a client_id with any
// control character (newline, carriage return, tab, other C0 controls, DEL)
// with 22023 and a HINT, a client_id over 256 characters with 22023, and a
// capability resource name with a control character with 22023 — so the
// rearrangement attack is impossible; ordinary requests still work.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { securityStack, rejectsWith, errorOf } from './lib.mjs';

let s;
let c;
before(async () => {
  s = await securityStack();
  await s.su(`CREATE EXTENSION ably_pg`);
  c = await s.connect();
});
after(async () => {
  await c?.end();
  await s?.stop();
});

/** Tries the rearrangement against the local server; the token it got, or null. */
async function rearranged(victim) {
  const ts = Date.now();
  const nonceTail = 'rearranged000000';
  const tr = (await c.query(`SELECT ably.create_token_request($1) AS tr`, [`${victim}\n${ts}\n${nonceTail}`])).rows[0].tr;
  const forged = { keyName: tr.keyName, ttl: tr.ttl, capability: tr.capability, clientId: victim, timestamp: ts, nonce: `${nonceTail}\n${tr.timestamp}\n${tr.nonce}`, mac: tr.mac };
  const res = await fetch(`${s.ably.url}/keys/${encodeURIComponent(tr.keyName)}/requestToken`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forged),
  });
  const body = await res.json();
  return res.ok ? body : null;
}

test('the rearrangement attack is impossible: client_id with a newline is refused', async () => {
  for (const victim of ['alice', '*']) {
    const e = await errorOf(async () => {
      const token = await rearranged(victim);
      assert.fail(`a request signed for a client_id containing newlines was issued${token ? `, and rearranged into a token for clientId ${JSON.stringify(token.clientId)}` : ''}`);
    });
    assert.ok(e.code === '22023', e.message);
    assert.ok(e.hint, 'expected a HINT');
  }
});

test('control characters and over-long client_ids are 22023 with a HINT; capability resources too', async () => {
  const controls = { newline: '\n', 'carriage return': '\r', tab: '\t', NUL: null, 'C0 \\x01': '\x01', 'C0 \\x1b': '\x1b', 'C0 \\x1f': '\x1f', DEL: '\x7f' };
  for (const [name, ch] of Object.entries(controls)) {
    if (ch === null) continue; // a NUL cannot be in a text value at all
    await rejectsWith(c.query(`SELECT ably.create_token_request($1)`, [`bob${ch}x`]), '22023', { hint: true, message: `client_id with ${name}` });
  }
  await rejectsWith(c.query(`SELECT ably.create_token_request($1)`, ['b'.repeat(257)]), '22023', { message: 'client_id of 257 characters' });
  const ok = await c.query(`SELECT ably.create_token_request($1) AS tr`, ['b'.repeat(256)]);
  assert.equal(ok.rows[0].tr.clientId.length, 256);
  for (const ch of ['\n', '\t', '\x01', '\x7f']) {
    const cap = JSON.stringify({ [`chat:${ch}1`]: ['subscribe'] });
    await rejectsWith(c.query(`SELECT ably.create_token_request('bob', $1::jsonb)`, [cap]), '22023', { message: `capability resource with ${JSON.stringify(ch)}` });
  }
  // ordinary requests are unaffected, and the local server accepts them
  const { rows } = await c.query(`SELECT ably.create_token_request('alice', '{"chat:*": ["subscribe"]}') AS tr`);
  const res = await fetch(`${s.ably.url}/keys/${encodeURIComponent(rows[0].tr.keyName)}/requestToken`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rows[0].tr),
  });
  assert.equal(res.status, 200, await res.text());
});
