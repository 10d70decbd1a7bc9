// Token authentication: signed TokenRequests from authCallback and authUrl,
// Bearer tokens over REST, access_token over realtime, expiry and renewal.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import Ably from 'ably';
import WebSocket from 'ws';
import { startServer, clientOptions, PROTOCOLS, uniqueChannel, collectUntil, eventually, closeAll, KEY, CHAT_KEY } from './server.mjs';

let server;
let keyRest; // signs TokenRequests, as an app backend would
const clients = [];
before(async () => {
  server = await startServer();
  keyRest = new Ably.Rest(clientOptions(server));
});
after(async () => {
  await closeAll(clients);
  await server?.stop();
});

function realtime(opts) {
  const c = new Ably.Realtime(opts);
  clients.push(c);
  return c;
}

/** Client options using token auth only (no key). */
function tokenOptions(extra) {
  const { key, ...opts } = clientOptions(server, extra);
  return opts;
}

async function postTokenRequest(tokenRequest) {
  const res = await fetch(`${server.url}/keys/${tokenRequest.keyName}/requestToken`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(tokenRequest),
  });
  return { status: res.status, body: await res.json() };
}

for (const { name, binary } of PROTOCOLS) {
  describe(`token auth over ${name}`, () => {
    it('authCallback returning a TokenRequest works for realtime and REST', async () => {
      let calls = 0;
      const authCallback = (tokenParams, callback) => {
        calls += 1;
        keyRest.auth.createTokenRequest({ clientId: 'dave', capability: { 'tok:*': ['publish', 'subscribe', 'history'] } })
          .then((tr) => callback(null, tr), (err) => callback(err, null));
      };
      const rt = realtime(tokenOptions({ binary, authCallback }));
      await rt.connection.once('connected');
      assert.equal(rt.auth.clientId, 'dave');
      const channelName = `tok:${uniqueChannel()}`;
      const ch = rt.channels.get(channelName);
      const { finished } = collectUntil(ch, 'done');
      await ch.attach();
      await ch.publish('done', 'x');
      const [m] = await finished;
      assert.equal(m.clientId, 'dave');

      const rest = new Ably.Rest(tokenOptions({ binary, authCallback }));
      await rest.channels.get(channelName).publish('viaRest', 'y');
      const page = await rest.channels.get(channelName).history();
      assert.deepEqual(page.items.map((i) => [i.name, i.clientId]), [['viaRest', 'dave'], ['done', 'dave']]);
      await assert.rejects(rest.channels.get('elsewhere').publish('n', 'd'), { code: 40160 });
      await assert.rejects(rt.channels.get('elsewhere').attach(), { code: 40160 });
      assert.ok(calls >= 2);
    });

    it('authUrl serving a TokenRequest works for realtime', async () => {
      const seen = [];
      const authServer = http.createServer(async (req, res) => {
        const url = new URL(req.url, 'http://x');
        seen.push(url.searchParams.get('clientId'));
        const tr = await keyRest.auth.createTokenRequest({ clientId: url.searchParams.get('clientId') });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(tr));
      });
      await new Promise((r) => authServer.listen(0, '127.0.0.1', r));
      try {
        const authUrl = `http://127.0.0.1:${authServer.address().port}/auth`;
        const rt = realtime(tokenOptions({ binary, authUrl, clientId: 'carol' }));
        await rt.connection.once('connected');
        assert.deepEqual(seen, ['carol']);
        const ch = rt.channels.get(uniqueChannel('authurl'));
        await ch.presence.enter('on');
        const members = await ch.presence.get();
        assert.deepEqual(members.map((m) => m.clientId), ['carol']);
        rt.close();
      } finally {
        authServer.close();
      }
    });
  });
}

describe('requestToken checks', () => {
  it('rejects a stale timestamp (40104), a replayed nonce (40105) and a TTL over 24 h (40003)', async () => {
    const stale = await keyRest.auth.createTokenRequest({ timestamp: Date.now() - 5 * 60_000 });
    const r1 = await postTokenRequest(stale);
    assert.deepEqual([r1.status, r1.body.error.code], [401, 40104]);

    const fresh = await keyRest.auth.createTokenRequest({});
    const ok = await postTokenRequest(fresh);
    assert.equal(ok.status, 200);
    assert.deepEqual(Object.keys(ok.body).sort(), ['capability', 'expires', 'issued', 'keyName', 'token']);
    assert.equal(ok.body.expires - ok.body.issued, 3_600_000);
    assert.equal(ok.body.capability, '{"*":["*"]}');
    const replay = await postTokenRequest(fresh);
    assert.deepEqual([replay.status, replay.body.error.code], [401, 40105]);

    const long = await keyRest.auth.createTokenRequest({ ttl: 25 * 3600_000 });
    const r3 = await postTokenRequest(long);
    assert.deepEqual([r3.status, r3.body.error.code], [400, 40003]);

    const forged = { ...(await keyRest.auth.createTokenRequest({})), mac: 'AAAA' };
    const r4 = await postTokenRequest(forged);
    assert.deepEqual([r4.status, r4.body.error.code], [401, 40101]);
  });

  it('issues tokens for unsigned requests only with Basic auth of the same key', async () => {
    const post = (headers) => fetch(`${server.url}/keys/testapp.full/requestToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ keyName: 'testapp.full', clientId: 'ivy', ttl: 60_000 }),
    });
    const ok = await post({ authorization: `Basic ${Buffer.from(KEY).toString('base64')}` });
    assert.equal(ok.status, 200);
    const details = await ok.json();
    assert.deepEqual([details.keyName, details.clientId, details.expires - details.issued], ['testapp.full', 'ivy', 60_000]);
    const anon = await post({});
    assert.deepEqual([anon.status, (await anon.json()).error.code], [401, 40101]);
    const other = await post({ authorization: `Basic ${Buffer.from(CHAT_KEY).toString('base64')}` });
    assert.deepEqual([other.status, (await other.json()).error.code], [401, 40101]);
  });

  it('narrows a token capability to the key', async () => {
    const chatRest = new Ably.Rest(clientOptions(server, { key: CHAT_KEY }));
    const tr = await chatRest.auth.createTokenRequest({ capability: { '*': ['*'] } });
    const r = await postTokenRequest(tr);
    assert.equal(r.body.capability, '{"chat:*":["presence","subscribe"]}');
  });

  it('answers an expired Bearer token with 40142', async () => {
    const details = await keyRest.auth.requestToken({ ttl: 1000 });
    await new Promise((r) => setTimeout(r, 1200));
    const res = await fetch(`${server.url}/channels/x/messages`, {
      headers: { authorization: `Bearer ${Buffer.from(details.token).toString('base64')}` },
    });
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.code, 40142);
  });
});

describe('token capabilities and expiry at connect', () => {
  it('requires the presence capability to enter', async () => {
    const authCallback = (tokenParams, callback) => {
      keyRest.auth.createTokenRequest({ clientId: 'sub', capability: { 'ro:*': ['subscribe'] } })
        .then((tr) => callback(null, tr), (e) => callback(e, null));
    };
    const rt = realtime(tokenOptions({ authCallback }));
    const ch = rt.channels.get(`ro:${uniqueChannel()}`);
    await ch.attach();
    assert.deepEqual([...ch.modes].sort(), ['presence_subscribe', 'subscribe']);
    await assert.rejects(ch.presence.enter('x'), { code: 40160 });
    await assert.rejects(ch.publish('x', 'y'), { code: 40160 });
  });

  it('answers an expired token at connect with ERROR 40142 (unknown: 40143), and the SDK renews it', async () => {
    const expired = await keyRest.auth.requestToken({ ttl: 1 });
    await new Promise((r) => setTimeout(r, 20));
    const firstFrame = async (token) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/?format=json&access_token=${encodeURIComponent(token)}`);
      const [data] = await once(ws, 'message');
      await once(ws, 'close');
      return JSON.parse(data.toString());
    };
    const e1 = await firstFrame(expired.token);
    assert.deepEqual([e1.action, e1.error.code, e1.error.statusCode], [9, 40142, 401]);
    const e2 = await firstFrame('no-such-token');
    assert.deepEqual([e2.action, e2.error.code, e2.error.statusCode], [9, 40143, 401]);

    const handed = [];
    const authCallback = (tokenParams, callback) => {
      if (handed.length === 0) {
        handed.push('expired');
        callback(null, expired);
      } else {
        handed.push('fresh');
        keyRest.auth.createTokenRequest({}).then((tr) => callback(null, tr), (e) => callback(e, null));
      }
    };
    const rt = realtime(tokenOptions({ authCallback }));
    await rt.connection.once('connected');
    assert.deepEqual(handed, ['expired', 'fresh']);
  });
});

describe('token renewal on a live connection', () => {
  it('asks the client to re-authenticate half-way through a short token and keeps the connection', async () => {
    let calls = 0;
    const authCallback = (tokenParams, callback) => {
      calls += 1;
      keyRest.auth.createTokenRequest({ ttl: 3000 }).then((tr) => callback(null, tr), (e) => callback(e, null));
    };
    const rt = realtime(tokenOptions({ authCallback }));
    await rt.connection.once('connected');
    const id = rt.connection.id;
    await rt.connection.once('update');
    assert.equal(calls, 2);
    assert.equal(rt.connection.id, id);
    assert.equal(rt.connection.state, 'connected');
  });

  it('disconnects with 40142 when renewal comes too late, and the client renews and resumes the same connection', async () => {
    let calls = 0;
    const authCallback = (tokenParams, callback) => {
      calls += 1;
      // The renewal the server asks for arrives after the 1.5 s token expired.
      const delay = calls === 2 ? 2000 : 0;
      setTimeout(() => {
        keyRest.auth.createTokenRequest({ ttl: calls === 1 ? 1500 : 60_000 }).then((tr) => callback(null, tr), (e) => callback(e, null));
      }, delay);
    };
    const rt = realtime(tokenOptions({ authCallback }));
    await rt.connection.once('connected');
    const id = rt.connection.id;
    const change = await rt.connection.once('disconnected');
    assert.equal(change.reason.code, 40142);
    await rt.connection.once('connected');
    assert.equal(rt.connection.id, id, 'resumed, not a new connection');
    // The late token still arrives; the SDK sends it on the resumed connection.
    await rt.connection.once('update');
    assert.equal(calls, 3);
    assert.equal(rt.connection.id, id);
  });
});
