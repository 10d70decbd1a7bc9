// REST API through the real ably SDK (msgpack and JSON), plus raw HTTP checks
// of the exact wire shapes the SDK depends on (error body + headers, Link).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import {
  startServer, clientOptions, PROTOCOLS, uniqueChannel, eventually, closeAll, KEY, CHAT_KEY,
} from './server.mjs';

const basic = (key) => `Basic ${Buffer.from(key).toString('base64')}`;

let server;
before(async () => { server = await startServer(); });
after(async () => { await server?.stop(); });

for (const { name, binary } of PROTOCOLS) {
  describe(`REST over ${name}`, () => {
    it('publishes and pages through history in both directions', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const channel = rest.channels.get(uniqueChannel('hist'));
      for (let i = 0; i < 25; i++) {
        const result = await channel.publish(`m${i}`, { i });
        assert.equal(result.serials.length, 1);
      }
      const collect = async (params) => {
        const pages = [];
        let page = await channel.history(params);
        for (;;) {
          pages.push(page.items.map((m) => m.name));
          if (!page.hasNext()) break;
          page = await page.next();
        }
        return pages;
      };
      const names = (from, to, step) => {
        const out = [];
        for (let i = from; step > 0 ? i < to : i > to; i += step) out.push(`m${i}`);
        return out;
      };
      assert.deepEqual(await collect({ limit: 10 }), [names(24, 14, -1), names(14, 4, -1), names(4, -1, -1)]);
      assert.deepEqual(await collect({ limit: 10, direction: 'forwards' }), [names(0, 10, 1), names(10, 20, 1), names(20, 25, 1)]);
      const [first] = (await channel.history({ limit: 1 })).items;
      assert.deepEqual(first.data, { i: 24 });
      assert.match(first.id, /^[A-Za-z0-9+/]{12}:0$/); // ably-js idempotent id
      assert.equal(typeof first.timestamp, 'number');
    });

    it('stores a duplicate publish (same ids) only once', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const channel = rest.channels.get(uniqueChannel('dup'));
      const batch = [{ id: 'row42:0', name: 'a', data: 'x' }, { id: 'row42:1', name: 'b', data: 'y' }];
      const r1 = await channel.publish(batch);
      const r2 = await channel.publish(batch);
      assert.deepEqual(r2.serials, r1.serials);
      const page = await channel.history();
      assert.deepEqual(page.items.map((m) => [m.id, m.name]), [['row42:1', 'b'], ['row42:0', 'a']]);
    });

    it('rejects mismatched ids in one publish with 40031', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const channel = rest.channels.get(uniqueChannel('ids'));
      await assert.rejects(channel.publish([{ id: 'a:0', data: '1' }, { id: 'b:1', data: '2' }]), { code: 40031, statusCode: 400 });
    });

    it('rejects an oversized message with 40009 / 413 from the server', async () => {
      // maxMessageSize lifts ably-js's own pre-flight check, so the server decides.
      const rest = new Ably.Rest(clientOptions(server, { binary, maxMessageSize: 10_000_000 }));
      const channel = rest.channels.get(uniqueChannel('big'));
      await assert.rejects(channel.publish('big', 'x'.repeat(65_537)), { code: 40009, statusCode: 413 });
      // Exactly at the limit (name counts too) is accepted.
      await channel.publish('n', 'x'.repeat(65_535));
      // The limit applies to the sum over one publish.
      await assert.rejects(
        channel.publish([{ data: 'x'.repeat(40_000) }, { data: 'x'.repeat(40_000) }]),
        { code: 40009, statusCode: 413 },
      );
    });

    it('rejects a bad key with 40101', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary, key: 'testapp.full:wrongsecret' }));
      await assert.rejects(rest.channels.get('x').publish('a', 'b'), { code: 40101, statusCode: 401 });
    });

    it('enforces capabilities with 40160', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary, key: CHAT_KEY }));
      await assert.rejects(rest.channels.get('chat:room').publish('a', 'b'), { code: 40160, statusCode: 401 });
      await assert.rejects(rest.channels.get('chat:room').history(), { code: 40160, statusCode: 401 });
      await assert.rejects(rest.channels.get('other').publish('a', 'b'), { code: 40160, statusCode: 401 });
    });

    it('batch-publishes to two channels, reporting per-channel failures inside results', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const [c1, c2] = [uniqueChannel('batch'), uniqueChannel('batch')];
      const [ok, partial] = await rest.batchPublish([
        { channels: [c1, c2], messages: [{ id: 'bp:0', name: 'one', data: { n: 1 } }, { id: 'bp:1', name: 'two', data: { n: 2 } }] },
        { channels: [c1, ':bad'], messages: { name: 'three', data: 'three' } },
      ]);
      assert.equal(ok.successCount, 2);
      assert.equal(ok.failureCount, 0);
      assert.deepEqual(ok.results.map((r) => [r.channel, r.messageId, r.serials.length]), [[c1, 'bp', 2], [c2, 'bp', 2]]);
      assert.equal(partial.successCount, 1);
      assert.equal(partial.failureCount, 1);
      assert.equal(partial.results[1].channel, ':bad');
      assert.equal(partial.results[1].error.code, 40010);
      const h1 = await rest.channels.get(c1).history({ direction: 'forwards' });
      assert.deepEqual(h1.items.map((m) => m.name), ['one', 'two', 'three']);
      const h2 = await rest.channels.get(c2).history({ direction: 'forwards' });
      assert.deepEqual(h2.items.map((m) => [m.id, m.data]), [['bp:0', { n: 1 }], ['bp:1', { n: 2 }]]);
    });

    it('round-trips binary data', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const channel = rest.channels.get(uniqueChannel('bin'));
      await channel.publish('bin', Buffer.from([0, 1, 2, 255]));
      const [m] = (await channel.history()).items;
      assert.deepEqual(Buffer.from(m.data), Buffer.from([0, 1, 2, 255]));
    });

    it('answers time()', async () => {
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const t = await rest.time();
      assert.ok(Math.abs(t - Date.now()) < 5000);
    });
  });
}

describe('REST wire details', () => {
  it('returns errors in Ably shape with exact content type and X-Ably headers', async () => {
    const res = await fetch(`${server.url}/channels/x/messages`, {
      method: 'POST',
      headers: { authorization: basic('testapp.full:nope'), 'content-type': 'application/json' },
      body: '[{"data":"a"}]',
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.equal(res.headers.get('x-ably-errorcode'), '40101');
    assert.ok(res.headers.get('x-ably-errormessage'));
    const body = await res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'href', 'message', 'statusCode']);
    assert.equal(body.error.code, 40101);
    assert.equal(body.error.statusCode, 401);
    assert.equal(body.error.href, 'https://help.ably.io/error/40101');
  });

  it('rejects invalid channel names with 40010', async () => {
    for (const name of [':x', '[meta]x', 'a\nb']) {
      const res = await fetch(`${server.url}/channels/${encodeURIComponent(name)}/messages`, {
        method: 'POST',
        headers: { authorization: basic(KEY), 'content-type': 'application/json' },
        body: '{"data":"a"}',
      });
      assert.equal(res.status, 400, name);
      assert.equal((await res.json()).error.code, 40010, name);
    }
  });

  it('answers a single-message publish with 201 {channel, messageId, serials}', async () => {
    const res = await fetch(`${server.url}/channels/${encodeURIComponent('a/b c')}/messages`, {
      method: 'POST',
      headers: { authorization: basic(KEY), 'content-type': 'application/json' },
      body: '{"id":"single-1","name":"n","data":"d"}',
    });
    assert.equal(res.status, 201);
    const body = await res.json();
    assert.equal(body.channel, 'a/b c');
    assert.equal(body.messageId, 'single-1');
    assert.equal(body.serials.length, 1);
  });

  it('builds relative Link headers without raw commas, and envelopes for browsers', async () => {
    const channel = uniqueChannel('link');
    for (let i = 0; i < 3; i++) {
      await fetch(`${server.url}/channels/${channel}/messages`, {
        method: 'POST',
        headers: { authorization: basic(KEY), 'content-type': 'application/json' },
        body: JSON.stringify({ name: `m${i}` }),
      });
    }
    const res = await fetch(`${server.url}/channels/${channel}/messages?limit=2`, { headers: { authorization: basic(KEY) } });
    const link = res.headers.get('link');
    const parts = link.split(',').map((p) => p.trim());
    assert.equal(parts.length, 3);
    for (const part of parts) assert.match(part, /^<\.\/messages\?[^<>,]+>; rel="(first|current|next)"$/);
    const next = parts.find((p) => p.endsWith('rel="next"')).match(/^<\.\/messages\?(.*)>/)[1];
    const res2 = await fetch(`${server.url}/channels/${channel}/messages?${next}`, { headers: { authorization: basic(KEY) } });
    assert.deepEqual((await res2.json()).map((m) => m.name), ['m0']);
    assert.ok(!res2.headers.get('link').includes('rel="next"'));

    const env = await fetch(`${server.url}/channels/${channel}/messages?limit=2&envelope=json`, { headers: { authorization: basic(KEY) } });
    assert.equal(env.status, 200);
    const body = await env.json();
    assert.equal(body.statusCode, 200);
    assert.deepEqual(body.response.map((m) => m.name), ['m2', 'm1']);
    assert.match(body.headers.link, /rel="next"/);
  });

  it('answers CORS preflights echoing the origin with credentials', async () => {
    const res = await fetch(`${server.url}/channels/x/messages`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.test:3000', 'access-control-request-headers': 'authorization,x-ably-version,ably-agent' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), 'http://app.test:3000');
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    assert.equal(res.headers.get('access-control-allow-headers'), 'authorization,x-ably-version,ably-agent');
    const err = await fetch(`${server.url}/channels/x/messages`, { headers: { origin: 'http://app.test:3000' } });
    assert.match(err.headers.get('access-control-expose-headers'), /X-Ably-ErrorCode/);
  });
});

describe('per-channel rate limit', () => {
  let limited;
  before(async () => { limited = await startServer(['--channel-rate-limit', '3']); });
  after(async () => { await limited?.stop(); });

  it('answers 429 / 42913 above the limit', async () => {
    const rest = new Ably.Rest(clientOptions(limited));
    const channel = rest.channels.get(uniqueChannel('rate'));
    await channel.publish([{ data: '1' }, { data: '2' }, { data: '3' }]);
    await assert.rejects(channel.publish('x', '4'), { code: 42913, statusCode: 429 });
    // Other channels have their own budget.
    await rest.channels.get(uniqueChannel('rate')).publish('x', '1');
  });
});

describe('--require-tls-for-basic', () => {
  let strict;
  before(async () => { strict = await startServer(['--require-tls-for-basic']); });
  after(async () => { await strict?.stop(); });

  it('refuses Basic auth with 40103 but accepts signed token requests and tokens', async () => {
    const basicRest = new Ably.Rest(clientOptions(strict));
    await assert.rejects(basicRest.channels.get('x').publish('a', 'b'), { code: 40103, statusCode: 401 });
    // The key still signs TokenRequests locally; the server needs no Basic auth for them.
    const tokenRest = new Ably.Rest({ ...clientOptions(strict), useTokenAuth: true });
    await tokenRest.channels.get('x').publish('a', 'b');
  });
});

describe('more of Ably\'s REST behaviour', () => {
  const clients = [];
  after(async () => { await closeAll(clients); });
  const realtime = (opts) => {
    const c = new Ably.Realtime(opts);
    clients.push(c);
    return c;
  };

  it('refuses invalid capabilities in requestToken with 400', async () => {
    const rest = new Ably.Rest(clientOptions(server));
    for (const capability of [{ channel0: ['publish_'] }, { channel0: ['*', 'publish'] }, { channel0: [] }]) {
      await assert.rejects(rest.auth.requestToken({ capability }), { statusCode: 400 }, JSON.stringify(capability));
    }
    const ok = await rest.auth.requestToken({ capability: { channel0: ['publish', 'channel-metadata'] } });
    assert.equal(ok.capability, '{"channel0":["channel-metadata","publish"]}');
  });

  it('publishes on behalf of a realtime connection given its connectionKey', async () => {
    const rt = realtime(clientOptions(server, { clientId: 'rick' }));
    const name = uniqueChannel('behalf');
    const got = [];
    await rt.channels.get(name).subscribe((m) => got.push(m));
    const rest = new Ably.Rest(clientOptions(server));
    await rest.channels.get(name).publish({ name: 'foo', data: 'bar', connectionKey: rt.connection.key });
    await eventually(() => got.length === 1);
    assert.equal(got[0].connectionId, rt.connection.id);
    assert.equal(got[0].clientId, 'rick');
    const [stored] = (await rest.channels.get(name).history()).items;
    assert.deepEqual([stored.connectionId, stored.clientId, stored.connectionKey], [rt.connection.id, 'rick', undefined]);
    await assert.rejects(
      rest.channels.get(name).publish({ name: 'x', connectionKey: 'abc!unknown' }),
      { code: 40006, statusCode: 400 },
    );
  });

  it('answers POST /messages in the shape of the requested X-Ably-Version', async () => {
    const rest = new Ably.Rest(clientOptions(server));
    const [a, b] = [uniqueChannel('v2'), uniqueChannel('v2')];
    const v2 = await rest.request('POST', '/messages', 2, {}, { channels: [a, b], messages: { data: 'foo' } }, {});
    assert.equal(v2.statusCode, 201);
    assert.deepEqual(v2.items.map((r) => [r.channel, typeof r.messageId, r.error]), [[a, 'string', undefined], [b, 'string', undefined]]);

    const partial = await rest.request('POST', '/messages', 2, {}, { channels: [a, '[invalid', ''], messages: { data: 'foo' } }, {});
    assert.deepEqual([partial.success, partial.statusCode, partial.errorCode], [false, 400, 40020]);
    const [response] = partial.items;
    assert.equal(response.error.code, 40020);
    assert.deepEqual(response.batchResponse.map((r) => r.error?.code ?? null), [null, 40010, 40010]);

    const v6 = await rest.request('POST', '/messages', 6, {}, [{ channels: [a], messages: { data: 'foo' } }], {});
    assert.equal(v6.statusCode, 201);
    assert.deepEqual(v6.items.map((r) => [r.successCount, r.failureCount, r.results[0].channel]), [[1, 0, a]]);
  });

  it('answers a known route with the wrong method with 404 and an Ably error', async () => {
    const rest = new Ably.Rest(clientOptions(server));
    const res = await rest.request('get', '/keys/testapp.full/requestToken', 3, null, null, null);
    assert.deepEqual([res.success, res.statusCode, res.errorCode], [false, 404, 40400]);
    assert.ok(res.errorMessage);
    const raw = await fetch(`${server.url}/time`, { method: 'DELETE' });
    assert.equal(raw.status, 404);
    assert.equal((await raw.json()).error.code, 40400);
  });

  it('refuses what it does not implement instead of ignoring it: _forceNack (40099), message updates (40000)', async () => {
    const rest = new Ably.Rest(clientOptions(server));
    const channel = rest.channels.get(uniqueChannel('refuse'));
    await assert.rejects(channel.publish({ name: 'e', data: 'd' }, { _forceNack: 'true' }), { code: 40099 });
    await assert.rejects(channel.publish({ name: 'e', data: 'd', action: 'message.update' }), { code: 40000 });
    const rt = realtime(clientOptions(server));
    await assert.rejects(rt.channels.get(uniqueChannel('refuse')).publish({ name: 'e' }, { _forceNack: 'true' }), { code: 40099 });
    assert.deepEqual((await channel.history()).items, []);
  });

  it('answers batch presence (GET /presence?channels=…) with a result per channel', async () => {
    const member = realtime(clientOptions(server, { clientId: 'bea' }));
    const [allowed, denied] = [`chat:${uniqueChannel('bp')}`, uniqueChannel('bp')];
    await member.channels.get(allowed).presence.enter('in');
    await member.channels.get(denied).presence.enter('in');
    const chatRest = new Ably.Rest(clientOptions(server, { key: CHAT_KEY }));
    const result = await chatRest.batchPresence([allowed, denied]);
    assert.deepEqual([result.successCount, result.failureCount], [1, 1]);
    assert.equal(result.results[0].channel, allowed);
    assert.deepEqual(result.results[0].presence.map((m) => [m.clientId, m.data]), [['bea', 'in']]);
    assert.equal('error' in result.results[0], false);
    assert.equal(result.results[1].channel, denied);
    assert.equal(result.results[1].error.statusCode, 401);
    assert.equal('presence' in result.results[1], false);
  });
});
