// Connection continuity (§B14): resume after a lost transport, recover from
// a second client instance, what happens after the connection-state window,
// and presence of a dropped member. A TCP proxy (proxy.mjs) cuts the
// subscriber's network; publishers talk to the server directly.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import { startServer, clientOptions, uniqueChannel, eventually, closeAll } from './server.mjs';
import { startProxy } from './proxy.mjs';

const clients = [];
const proxies = [];
function realtime(opts) {
  const c = new Ably.Realtime(opts);
  clients.push(c);
  return c;
}
async function proxyTo(server) {
  const p = await startProxy(server.port);
  proxies.push(p);
  return p;
}
after(async () => {
  await closeAll(clients);
  await Promise.all(proxies.map((p) => p.close()));
});

/** Options of a client whose network goes through `proxy`; it retries quickly. */
const behind = (server, proxy, extra = {}) =>
  clientOptions(server, { port: proxy.port, disconnectedRetryTimeout: 250, suspendedRetryTimeout: 250, ...extra });

/** Subscribes to each channel, collecting message names per channel. */
async function collect(client, names) {
  const got = Object.fromEntries(names.map((n) => [n, []]));
  for (const n of names) await client.channels.get(n).subscribe((m) => got[n].push(m.name));
  return got;
}

async function publishAll(rest, names, prefix, count) {
  await Promise.all(names.map(async (n) => {
    for (let i = 0; i < count; i++) await rest.channels.get(n).publish(`${prefix}-${i}`, String(i));
  }));
}

const range = (prefix, count) => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

describe('within the connection-state window', () => {
  let server;
  let rest;
  before(async () => {
    server = await startServer(['--presence-leave-delay', '3000']);
    rest = new Ably.Rest(clientOptions(server));
  });
  after(async () => {
    await closeAll(clients);
    await server?.stop();
  });

  it('resumes: the 300 messages published on 3 channels during the gap arrive once each, in order, on the same connection', async () => {
    const proxy = await proxyTo(server);
    const sub = realtime(behind(server, proxy));
    const names = [1, 2, 3].map(() => uniqueChannel('resume'));
    const got = await collect(sub, names);
    await publishAll(rest, names, 'before', 1);
    await eventually(() => names.every((n) => got[n].length === 1));
    const id = sub.connection.id;
    const reattached = names.map((n) => sub.channels.get(n).once('attached'));

    proxy.cut();
    await eventually(() => sub.connection.state !== 'connected');
    await publishAll(rest, names, 'gap', 100);
    proxy.restore();

    const changes = await Promise.all(reattached);
    assert.deepEqual(changes.map((c) => c.resumed), [true, true, true]);
    // Replayed messages come before live ones, so once 'after' is in, any duplicate would be too.
    await publishAll(rest, names, 'after', 1);
    await eventually(() => names.every((n) => got[n].at(-1) === 'after-0'), { timeout: 10_000 });
    for (const n of names) assert.deepEqual(got[n], ['before-0', ...range('gap', 100), 'after-0']);
    assert.equal(sub.connection.id, id);
  });

  it('recovers the connection from a second client instance, with the messages the first one missed', async () => {
    const proxy = await proxyTo(server);
    const first = realtime(behind(server, proxy));
    const names = [1, 2].map(() => uniqueChannel('recover'));
    const firstGot = await collect(first, names);
    await publishAll(rest, names, 'before', 1);
    await eventually(() => names.every((n) => firstGot[n].length === 1));
    const id = first.connection.id;
    const key = first.connection.key;
    const recoveryKey = first.connection.createRecoveryKey();

    proxy.cut(); // the first instance is gone for good, like a closed page
    await eventually(() => first.connection.state !== 'connected');
    await publishAll(rest, names, 'gap', 20);

    const second = realtime(clientOptions(server, { recover: recoveryKey }));
    const got = await collect(second, names);
    assert.equal(second.connection.id, id);
    assert.notEqual(second.connection.key, key);
    await publishAll(rest, names, 'after', 1);
    await eventually(() => names.every((n) => got[n].at(-1) === 'after-0'));
    for (const n of names) assert.deepEqual(got[n], [...range('gap', 20), 'after-0']);
  });

  it('keeps a dropped member present for the leave delay, then synthesises its LEAVE', async () => {
    const proxy = await proxyTo(server);
    const name = uniqueChannel('leave-delay');
    const member = realtime(behind(server, proxy, { clientId: 'dora' }));
    const watcher = realtime(clientOptions(server));
    const events = [];
    await watcher.channels.get(name).presence.subscribe((m) => events.push(`${m.action} ${m.clientId}`));
    await member.channels.get(name).presence.enter('hi');
    await eventually(() => events.length === 1);

    const open = (await server.stats()).connectionsOpen;
    proxy.cut();
    const cutAt = Date.now();
    await eventually(async () => (await server.stats()).connectionsOpen === open - 1);
    const present = await rest.channels.get(name).presence.get();
    assert.deepEqual(present.items.map((m) => m.clientId), ['dora'], 'still present once the server saw the drop');
    await eventually(() => events.length === 2, { timeout: 10_000 });
    assert.deepEqual(events, ['enter dora', 'leave dora']);
    assert.ok(Date.now() - cutAt >= 2900, `left after ${Date.now() - cutAt} ms`);
    assert.deepEqual((await rest.channels.get(name).presence.get()).items, []);
  });

  it('a member whose connection resumes within the leave delay never leaves', async () => {
    const proxy = await proxyTo(server);
    const name = uniqueChannel('no-leave');
    const resumer = realtime(clientOptions(server, { clientId: 'rita' }));
    const control = realtime(behind(server, proxy, { clientId: 'carl' }));
    const watcher = realtime(clientOptions(server));
    const events = [];
    await watcher.channels.get(name).presence.subscribe((m) => events.push(`${m.action} ${m.clientId}`));
    await resumer.channels.get(name).presence.enter();
    await control.channels.get(name).presence.enter();
    await eventually(() => events.length === 2);

    const id = resumer.connection.id;
    const reattached = resumer.channels.get(name).once('attached');
    await fetch(`${server.url}/_debug/connections/${id}/drop`, { method: 'POST' });
    assert.equal((await reattached).resumed, true);
    assert.equal(resumer.connection.id, id);
    // The control member is dropped later and never comes back: when its
    // LEAVE arrives, a LEAVE for the resumed member would already have.
    proxy.cut();
    await eventually(() => events.length === 3, { timeout: 10_000 });
    assert.deepEqual(events.slice(2), ['leave carl']);
    const members = await watcher.channels.get(name).presence.get();
    assert.deepEqual(members.map((m) => [m.clientId, m.connectionId]), [['rita', id]]);
  });
});

describe('beyond the connection-state window', () => {
  let server;
  let rest;
  before(async () => {
    server = await startServer(['--connection-state-ttl', '2000', '--presence-leave-delay', '300']);
    rest = new Ably.Rest(clientOptions(server));
  });
  after(async () => {
    await closeAll(clients);
    await server?.stop();
  });

  it('a blip inside the 2 s window resumes; a gap beyond it gives a new connection with 80008 and loses the gap (documented)', async () => {
    const proxy = await proxyTo(server);
    const sub = realtime(behind(server, proxy));
    const names = [1, 2, 3].map(() => uniqueChannel('expired'));
    const got = await collect(sub, names);
    await publishAll(rest, names, 'before', 1);
    await eventually(() => names.every((n) => got[n].length === 1));
    const id = sub.connection.id;

    const resumed = names.map((n) => sub.channels.get(n).once('attached'));
    await fetch(`${server.url}/_debug/connections/${id}/drop`, { method: 'POST' });
    assert.deepEqual((await Promise.all(resumed)).map((c) => c.resumed), [true, true, true]);
    assert.equal(sub.connection.id, id);

    const reattached = names.map((n) => sub.channels.get(n).once('attached'));
    const reconnected = sub.connection.once('connected');

    proxy.cut();
    // Wait until the server has noticed the drop and then discarded the state.
    await eventually(async () => {
      const s = await server.stats();
      return s.connectionsOpen === 0 && s.connectionsSuspended === 0;
    });
    await publishAll(rest, names, 'gap', 100);
    proxy.restore();

    const change = await reconnected;
    assert.equal(change.reason?.code, 80008);
    assert.notEqual(sub.connection.id, id);
    const changes = await Promise.all(reattached);
    assert.deepEqual(changes.map((c) => c.resumed), [false, false, false]);
    await publishAll(rest, names, 'after', 1);
    await eventually(() => names.every((n) => got[n].at(-1) === 'after-0'), { timeout: 10_000 });
    for (const n of names) assert.deepEqual(got[n], ['before-0', 'after-0']);
  });
});
