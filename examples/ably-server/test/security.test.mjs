// The local server's own security (issue 9, item 11): a token cannot mint a
// stronger token, the debug endpoints are off unless asked for, a narrower
// re-authentication takes effect on a live connection, and what is no longer
// used (channels, expired tokens) is freed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import Ably from 'ably';
import WebSocket from 'ws';
import { startServer, clientOptions, uniqueChannel, eventually, closeAll, within, KEY } from './server.mjs';

const clients = [];
after(async () => { await closeAll(clients); });
function realtime(opts) {
  const c = new Ably.Realtime(opts);
  clients.push(c);
  return c;
}

const bearer = (token) => `Bearer ${Buffer.from(token).toString('base64')}`;

describe('token requests authenticated with a token', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  it('never yield another clientId, a wider capability or a later expiry', async () => {
    const keyRest = new Ably.Rest(clientOptions(server));
    const parent = await keyRest.auth.requestToken({ clientId: 'alice', capability: { 'chat:*': ['subscribe'] }, ttl: 60_000 });
    const ask = async (body) => {
      const res = await fetch(`${server.url}/keys/testapp.full/requestToken`, {
        method: 'POST',
        headers: { authorization: bearer(parent.token), 'content-type': 'application/json' },
        body: JSON.stringify({ keyName: 'testapp.full', ...body }),
      });
      return { status: res.status, body: await res.json() };
    };
    for (const clientId of ['mallory', '*']) {
      const r = await ask({ clientId });
      assert.deepEqual([r.status, r.body.error?.code], [401, 40102], clientId);
    }
    const wide = await ask({ capability: '{"*":["*"]}', ttl: 24 * 3600_000 });
    assert.equal(wide.status, 200);
    assert.equal(wide.body.clientId, 'alice');
    assert.equal(wide.body.capability, '{"chat:*":["subscribe"]}');
    assert.ok(wide.body.expires <= parent.expires, `${wide.body.expires} <= ${parent.expires}`);
    const other = await ask({ capability: '{"news":["publish"]}' });
    assert.deepEqual([other.status, other.body.error?.code], [401, 40160]);
    const plain = await ask({});
    assert.deepEqual([plain.status, plain.body.clientId, plain.body.capability], [200, 'alice', '{"chat:*":["subscribe"]}']);
    assert.ok(plain.body.expires <= parent.expires);
  });

  it('logs no key secret, token or connection key, even at debug level', async () => {
    const keyRest = new Ably.Rest(clientOptions(server));
    const token = await keyRest.auth.requestToken({ clientId: 'lou' });
    const { key, ...opts } = clientOptions(server, { token: token.token, clientId: 'lou' });
    const rt = realtime(opts);
    await rt.connection.once('connected');
    const connectionKey = rt.connection.key;
    await fetch(`${server.url}/_debug/connections/${rt.connection.id}/drop`, { method: 'POST' });
    await eventually(() => rt.connection.state === 'connected' && rt.connection.key !== connectionKey);
    await rt.channels.get(uniqueChannel('log')).publish('x', 'y');
    const log = server.log();
    assert.match(log, /connection resumed/);
    for (const secret of [KEY.split(':')[1], token.token, connectionKey.split('!')[0], rt.connection.key.split('!')[0]]) {
      assert.ok(!log.includes(secret), `the log contains a secret (${secret.length} characters)`);
    }
  });
});

describe('debug endpoints', () => {
  let plain;
  before(async () => { plain = await startServer([], { debugEndpoints: false }); });
  after(async () => { await plain?.stop(); });

  it('are not served unless the server runs with --debug-endpoints', async () => {
    const rt = realtime(clientOptions(plain));
    await rt.connection.once('connected');
    const stats = await fetch(`${plain.url}/_debug/stats`);
    assert.equal(stats.status, 404);
    assert.equal((await stats.json()).error.code, 40400);
    const drop = await fetch(`${plain.url}/_debug/connections/${rt.connection.id}/drop`, { method: 'POST' });
    assert.equal(drop.status, 404);
    assert.equal(rt.connection.state, 'connected');
  });
});

describe('re-authentication with a narrower capability', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  it('ends attachments the new token does not cover and narrows the modes of the others', async () => {
    const keyRest = new Ably.Rest(clientOptions(server));
    const [kept, lost] = [uniqueChannel('kept'), uniqueChannel('lost')];
    const authCallback = (tokenParams, callback) => {
      keyRest.auth.createTokenRequest({ capability: tokenParams.capability ?? { '*': ['*'] } })
        .then((tr) => callback(null, tr), (e) => callback(e, null));
    };
    const { key, ...tokenOptions } = clientOptions(server, { authCallback });
    const rt = realtime(tokenOptions);
    const got = { [kept]: [], [lost]: [] };
    for (const n of [kept, lost]) await rt.channels.get(n).subscribe((m) => got[n].push(m.name));
    const failed = rt.channels.get(lost).once('failed');
    await within(rt.auth.authorize({ capability: { [kept]: ['subscribe'] } }), 5000, 'authorize');
    const change = await within(failed, 5000, 'the lost channel failing');
    assert.equal(change.reason.code, 40160);
    await eventually(() => rt.channels.get(kept).modes?.length === 2);
    assert.deepEqual([...rt.channels.get(kept).modes].sort(), ['presence_subscribe', 'subscribe']);
    await keyRest.channels.get(kept).publish('still', 'x');
    await eventually(() => got[kept].includes('still'));
    await assert.rejects(rt.channels.get(kept).publish('x', 'y'), { code: 40160 });
  });

  it('stops delivery on the wire for a channel the new token does not cover', async () => {
    const keyRest = new Ably.Rest(clientOptions(server));
    const full = await keyRest.auth.requestToken({ capability: { '*': ['*'] } });
    const narrow = await keyRest.auth.requestToken({ capability: { 'wire-kept-*': ['subscribe'] } });
    const [kept, lost] = [uniqueChannel('wire-kept'), uniqueChannel('wire-lost')];
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/?format=json&v=6&access_token=${encodeURIComponent(full.token)}`);
    const frames = [];
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    await eventually(() => frames.some((f) => f.action === 4));
    for (const channel of [kept, lost]) ws.send(JSON.stringify({ action: 10, channel }));
    await eventually(() => frames.filter((f) => f.action === 11).length === 2);
    ws.send(JSON.stringify({ action: 17, auth: { accessToken: narrow.token } }));
    await eventually(() => frames.filter((f) => f.action === 4).length === 2);
    const error = frames.find((f) => f.action === 9);
    assert.deepEqual([error?.channel, error?.error.code], [lost, 40160]);
    // Delivery to one connection is in publish order: once `kept`'s message is in, `lost`'s would be too.
    await keyRest.channels.get(lost).publish('must-not-arrive', 'x');
    await keyRest.channels.get(kept).publish('arrives', 'x');
    await eventually(() => frames.some((f) => f.action === 15 && f.channel === kept));
    assert.deepEqual(frames.filter((f) => f.action === 15).map((f) => f.channel), [kept]);
    ws.close();
  });
});

describe('memory', () => {
  let server;
  before(async () => { server = await startServer(['--history-ttl', '300'], {}); });
  after(async () => { await server?.stop(); });

  /** Resident memory of the server process in bytes (Linux), else null. */
  const rss = () => {
    const status = `/proc/${server.pid}/status`;
    if (!existsSync(status)) return null;
    const kb = Number(readFileSync(status, 'utf8').match(/VmRSS:\s+(\d+) kB/)?.[1]);
    return kb * 1024;
  };

  async function inParallel(items, width, fn) {
    let next = 0;
    await Promise.all(Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]);
    }));
  }

  it('frees channels used once, and expired tokens, so memory stays flat', { timeout: 90_000 }, async () => {
    const auth = { authorization: `Basic ${Buffer.from(KEY).toString('base64')}`, 'content-type': 'application/json' };
    const payload = JSON.stringify({ name: 'once', data: 'x'.repeat(24 * 1024) });
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/?format=json&v=6&key=${encodeURIComponent(KEY)}`);
    await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
    const samples = [];
    for (let round = 0; round < 3; round++) {
      const names = Array.from({ length: 1000 }, (_, i) => `mem-${round}-${i}`);
      // Each channel is used once: a 24 KiB publish, a history read, an attach and a detach.
      await inParallel(names, 8, async (n) => {
        await fetch(`${server.url}/channels/${n}/messages`, { method: 'POST', headers: auth, body: payload });
        await fetch(`${server.url}/channels/${n}-read/messages`, { headers: auth });
        ws.send(JSON.stringify({ action: 10, channel: `${n}-rt` }));
        ws.send(JSON.stringify({ action: 12, channel: `${n}-rt` }));
      });
      const last = names.at(-1);
      await eventually(async () => {
        const res = await fetch(`${server.url}/channels/${last}/messages`, { headers: auth });
        return (await res.json()).length === 0;
      }, { timeout: 15_000, what: 'the round\'s messages leaving history' });
      await eventually(async () => (await server.stats()).channels === 0, { timeout: 15_000, what: 'no channel held' });
      samples.push(rss());
    }
    ws.close();
    const keyRest = new Ably.Rest(clientOptions(server));
    await inParallel(Array.from({ length: 300 }), 8, () => keyRest.auth.requestToken({ ttl: 3000 }));
    assert.ok((await server.stats()).tokens > 0, 'live tokens are held');
    await eventually(async () => (await server.stats()).tokens === 0, { timeout: 15_000, what: 'no token held' });

    if (samples[0] !== null) {
      // Each round stored 1000 × 24 KiB ≈ 24 MiB; kept, two rounds would add 48 MiB.
      const growth = samples[2] - samples[0];
      assert.ok(growth < 16 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB over two rounds: ${samples.join(', ')}`);
    }
  });
});
