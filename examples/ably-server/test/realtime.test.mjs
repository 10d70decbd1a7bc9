// Realtime (WebSocket) behaviour through the real ably SDK in both framings,
// plus raw-protocol checks of frames the SDK depends on.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import WebSocket from 'ws';
import {
  startServer, clientOptions, PROTOCOLS, uniqueChannel, collectUntil, eventually, closeAll, KEY, CHAT_KEY,
} from './server.mjs';

let server;
const clients = [];
before(async () => { server = await startServer(); });
after(async () => {
  await closeAll(clients);
  await server?.stop();
});

function realtime(opts) {
  const c = new Ably.Realtime(opts);
  clients.push(c);
  return c;
}

/** A raw WebSocket client that decodes JSON frames. */
async function rawConnect(query) {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/?format=json&v=6&${query}`);
  const frames = [];
  const waiters = [];
  ws.on('message', (data) => {
    frames.push(JSON.parse(data.toString()));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise((r) => ws.on('close', r));
  await new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  return {
    ws,
    frames,
    closed,
    send: (pm) => ws.send(JSON.stringify(pm)),
    async next(pred) {
      for (;;) {
        const i = frames.findIndex(pred);
        if (i >= 0) return frames.splice(i, 1)[0];
        await Promise.race([new Promise((r) => waiters.push(r)), new Promise((_, rej) => setTimeout(() => rej(new Error('no matching frame')), 5000).unref())]);
      }
    },
  };
}

for (const { name, binary } of PROTOCOLS) {
  describe(`realtime over ${name}`, () => {
    it('receives REST-published messages in publish order, keeping REST ids', async () => {
      const rt = realtime(clientOptions(server, { binary }));
      const rest = new Ably.Rest(clientOptions(server, { binary: !binary }));
      const name = uniqueChannel('order');
      const { finished } = collectUntil(rt.channels.get(name), 'end');
      await rt.channels.get(name).attach();
      const ch = rest.channels.get(name);
      for (let i = 0; i < 20; i++) await ch.publish(`m${i}`, `payload-${i}`);
      await ch.publish([{ id: 'keep:0', name: 'kept', data: { a: 1 } }, { id: 'keep:1', name: 'end', data: 'bye' }]);
      const got = await finished;
      assert.deepEqual(got.map((m) => m.name), [...Array.from({ length: 20 }, (_, i) => `m${i}`), 'kept', 'end']);
      assert.equal(got[5].data, 'payload-5');
      assert.deepEqual([got[20].id, got[20].data], ['keep:0', { a: 1 }]);
      assert.equal(got[21].id, 'keep:1');
    });

    it('delivers a realtime publish (ACKed with serials) to another client, honouring echo=false', async () => {
      const publisher = realtime(clientOptions(server, { binary, clientId: 'pub', echoMessages: false }));
      const subscriber = realtime(clientOptions(server, { binary: !binary }));
      const name = uniqueChannel('rt');
      const pubCh = publisher.channels.get(name);
      const subCh = subscriber.channels.get(name);
      const echoed = [];
      await pubCh.subscribe((m) => echoed.push(m));
      const { finished } = collectUntil(subCh, 'last');
      await subCh.attach();
      const result = await pubCh.publish('first', { hello: 'world' });
      assert.equal(result.serials.length, 1);
      assert.equal(typeof result.serials[0], 'string');
      await pubCh.publish('last', 'x');
      const got = await finished;
      assert.deepEqual(got.map((m) => [m.name, m.clientId]), [['first', 'pub'], ['last', 'pub']]);
      assert.deepEqual(got[0].data, { hello: 'world' });
      assert.equal(got[0].connectionId, publisher.connection.id);
      assert.equal(got[0].id, `${publisher.connection.id}:0:0`);
      assert.deepEqual(echoed, []);
    });

    it('delivers a duplicate REST publish (same ids) only once', async () => {
      const rt = realtime(clientOptions(server, { binary }));
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const name = uniqueChannel('dedupe');
      const { finished } = collectUntil(rt.channels.get(name), 'sentinel');
      await rt.channels.get(name).attach();
      const ch = rest.channels.get(name);
      const msgs = [{ id: 'evt7:0', name: 'a', data: '1' }, { id: 'evt7:1', name: 'b', data: '2' }];
      await ch.publish(msgs);
      await ch.publish(msgs);
      await ch.publish({ id: 'solo', name: 'c', data: '3' });
      await ch.publish({ id: 'solo', name: 'c', data: '3' });
      await ch.publish('sentinel', 'end');
      const got = await finished;
      assert.deepEqual(got.map((m) => m.id), ['evt7:0', 'evt7:1', 'solo', got[3].id]);
      const history = await ch.history({ direction: 'forwards' });
      assert.deepEqual(history.items.map((m) => m.name), ['a', 'b', 'c', 'sentinel']);
    });

    it('shows presence enter, update and leave to another client, and syncs late joiners', async () => {
      const alice = realtime(clientOptions(server, { binary, clientId: 'alice' }));
      const watcher = realtime(clientOptions(server, { binary: !binary }));
      const name = uniqueChannel('presence');
      const events = [];
      await watcher.channels.get(name).presence.subscribe((m) => events.push([m.action, m.clientId, m.data]));
      await alice.channels.get(name).presence.enter('hi');
      await alice.channels.get(name).presence.update('busy');
      await eventually(() => events.length >= 2);

      const late = realtime(clientOptions(server, { binary }));
      const members = await late.channels.get(name).presence.get();
      assert.deepEqual(members.map((m) => [m.clientId, m.data, m.connectionId]), [['alice', 'busy', alice.connection.id]]);
      const rest = new Ably.Rest(clientOptions(server, { binary }));
      const restMembers = await rest.channels.get(name).presence.get();
      assert.deepEqual(restMembers.items.map((m) => [m.clientId, m.action]), [['alice', 'present']]);

      await alice.channels.get(name).presence.leave();
      await eventually(() => events.length >= 3);
      assert.deepEqual(events, [['enter', 'alice', 'hi'], ['update', 'alice', 'busy'], ['leave', 'alice', 'busy']]);
    });

    it('synthesises a leave when a member connection closes', async () => {
      const bob = realtime(clientOptions(server, { binary, clientId: 'bob' }));
      const watcher = realtime(clientOptions(server, { binary }));
      const name = uniqueChannel('leave');
      const events = [];
      await watcher.channels.get(name).presence.subscribe((m) => events.push([m.action, m.clientId]));
      await bob.channels.get(name).presence.enter();
      await eventually(() => events.length === 1);
      bob.close();
      await eventually(() => events.length === 2);
      assert.deepEqual(events, [['enter', 'bob'], ['leave', 'bob']]);
      assert.deepEqual(await watcher.channels.get(name).presence.get(), []);
    });

    it('denies attach without capability with 40160 and keeps the connection', async () => {
      const rt = realtime(clientOptions(server, { binary, key: CHAT_KEY, clientId: 'c' }));
      const denied = rt.channels.get('news');
      await assert.rejects(denied.attach(), { code: 40160 });
      assert.equal(denied.state, 'failed');
      assert.equal(rt.connection.state, 'connected');
      const chat = rt.channels.get('chat:lobby');
      await chat.attach();
      assert.deepEqual([...chat.modes].sort(), ['presence', 'presence_subscribe', 'subscribe']);
      await chat.presence.enter('here');
      await assert.rejects(chat.publish('x', 'y'), { code: 40160 });
    });

    it('fails a bad key with 40101 and does not retry', async () => {
      const before = (await server.stats()).connectionAttempts;
      const rt = realtime(clientOptions(server, { binary, key: 'testapp.full:wrongsecret' }));
      const change = await rt.connection.once('failed');
      assert.equal(change.reason.code, 40101);
      assert.equal(change.reason.statusCode, 401);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(rt.connection.state, 'failed');
      assert.equal((await server.stats()).connectionAttempts - before, 1);
    });

    it('answers ping', async () => {
      // ably-js leaves its ping timeout timer running; keep it short.
      const rt = realtime(clientOptions(server, { binary, realtimeRequestTimeout: 2000 }));
      await rt.connection.once('connected');
      const ms = await rt.connection.ping();
      assert.equal(typeof ms, 'number');
    });
  });
}

describe('network blip', () => {
  it('resumes the same connection: channels re-attach with RESUMED, presence stays, delivery goes on', async () => {
    const alice = realtime(clientOptions(server, { clientId: 'alice' }));
    const watcher = realtime(clientOptions(server, { binary: false }));
    const name = uniqueChannel('blip');
    const aliceCh = alice.channels.get(name);
    const presenceEvents = [];
    await watcher.channels.get(name).presence.subscribe((m) => presenceEvents.push([m.action, m.clientId, m.connectionId]));
    await aliceCh.presence.enter('here');
    await eventually(() => presenceEvents.length === 1);
    const oldId = alice.connection.id;
    const oldKey = alice.connection.key;
    const attachedAgain = new Promise((r) => aliceCh.once('attached', r));

    const res = await fetch(`${server.url}/_debug/connections/${oldId}/drop`, { method: 'POST' });
    assert.equal(res.status, 200);
    await alice.connection.once('connected');
    assert.equal(alice.connection.id, oldId);
    assert.notEqual(alice.connection.key, oldKey, 'a resume hands out a fresh connection key');
    assert.equal(alice.connection.errorReason, null);
    const change = await attachedAgain;
    assert.equal(change.resumed, true);

    const { finished } = collectUntil(aliceCh, 'after-blip');
    await new Ably.Rest(clientOptions(server)).channels.get(name).publish('after-blip', 'x');
    assert.deepEqual((await finished).map((m) => m.name), ['after-blip']);
    // The member never left: no leave, and the SDK's automatic re-entry was not re-broadcast.
    assert.deepEqual(presenceEvents, [['enter', 'alice', oldId]]);
    const members = await watcher.channels.get(name).presence.get();
    assert.deepEqual(members.map((m) => [m.clientId, m.connectionId]), [['alice', oldId]]);
  });
});

describe('realtime wire details', () => {
  it('sends CONNECTED first with full connectionDetails', async () => {
    const c = await rawConnect(`key=${encodeURIComponent(KEY)}&clientId=zed`);
    const connected = await c.next(() => true);
    assert.equal(connected.action, 4);
    assert.equal(typeof connected.connectionId, 'string');
    const d = connected.connectionDetails;
    assert.equal(typeof d.connectionKey, 'string');
    assert.equal(typeof d.serverId, 'string');
    assert.deepEqual(
      { clientId: d.clientId, maxMessageSize: d.maxMessageSize, maxFrameSize: d.maxFrameSize, maxInboundRate: d.maxInboundRate, connectionStateTtl: d.connectionStateTtl, maxIdleInterval: d.maxIdleInterval },
      { clientId: 'zed', maxMessageSize: 65536, maxFrameSize: 524288, maxInboundRate: 50, connectionStateTtl: 120000, maxIdleInterval: 15000 },
    );
    c.send({ action: 0, id: 'ping-123' });
    assert.deepEqual(await c.next((f) => f.action === 0), { action: 0, id: 'ping-123' });
    c.send({ action: 7 });
    assert.deepEqual(await c.next((f) => f.action === 8), { action: 8 });
    await c.closed;
  });

  it('reports bad credentials in-protocol (ERROR 40101, then close), never as an HTTP 401', async () => {
    const c = await rawConnect('key=testapp.full%3Awrong');
    const err = await c.next(() => true);
    assert.equal(err.action, 9);
    assert.equal(err.error.code, 40101);
    assert.equal(err.error.statusCode, 401);
    assert.equal(err.channel, undefined);
    await c.closed;
  });

  it('ACKs and NACKs publishes by msgSerial', async () => {
    const c = await rawConnect(`key=${encodeURIComponent(KEY)}`);
    await c.next((f) => f.action === 4);
    const ch = uniqueChannel('ack');
    c.send({ action: 10, channel: ch });
    const attached = await c.next((f) => f.action === 11);
    assert.equal(attached.flags, 983040);
    assert.equal(typeof attached.channelSerial, 'string');
    c.send({ action: 15, channel: ch, msgSerial: 0, messages: [{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }] });
    const ack = await c.next((f) => f.action === 1);
    assert.equal(ack.msgSerial, 0);
    assert.equal(ack.count, 1);
    assert.equal(ack.res.length, 1);
    assert.equal(ack.res[0].serials.length, 2);
    const delivered = await c.next((f) => f.action === 15);
    assert.deepEqual(delivered.messages.map((m) => m.id), [`${delivered.connectionId}:0:0`, `${delivered.connectionId}:0:1`]);
    c.send({ action: 15, channel: ch, msgSerial: 1, messages: [{ data: 'x'.repeat(65537) }] });
    const nack = await c.next((f) => f.action === 2);
    assert.deepEqual([nack.msgSerial, nack.count, nack.error.code], [1, 1, 40009]);
    c.send({ action: 14, channel: ch, msgSerial: 2, presence: [{ action: 2 }] });
    const anon = await c.next((f) => f.action === 2);
    assert.deepEqual([anon.msgSerial, anon.error.code], [2, 40012]);
    c.send({ action: 12, channel: ch });
    assert.deepEqual(await c.next((f) => f.action === 13), { action: 13, channel: ch });
    c.ws.close();
  });

  it('resumes with a valid key (same id, new key); answers 80008 for an unknown key and 80018 for a malformed one', async () => {
    const first = await rawConnect(`key=${encodeURIComponent(KEY)}`);
    const c1 = await first.next((f) => f.action === 4);
    first.ws.terminate();
    const key1 = c1.connectionDetails.connectionKey;
    const second = await rawConnect(`key=${encodeURIComponent(KEY)}&resume=${encodeURIComponent(key1)}`);
    const c2 = await second.next((f) => f.action === 4);
    assert.equal(c2.connectionId, c1.connectionId);
    assert.equal(c2.error, undefined);
    assert.notEqual(c2.connectionDetails.connectionKey, key1);
    second.send({ action: 7 });
    await second.closed;

    // Closed: its key opens nothing any more, nor does a key never issued.
    for (const [key, code] of [[c2.connectionDetails.connectionKey, 80008], ['abc!def', 80008], ['_____!ablyjs_test_fake-key____', 80018]]) {
      const c = await rawConnect(`key=${encodeURIComponent(KEY)}&resume=${encodeURIComponent(key)}`);
      const connected = await c.next((f) => f.action === 4);
      assert.notEqual(connected.connectionId, c1.connectionId);
      assert.equal(connected.error.code, code, key);
      c.ws.close();
    }
  });
});
