// Channel attach options through the real SDK: history up to the attach
// point (untilAttach), rewind by count and by duration (as a param and as the
// [?rewind=…] qualifier), params echoed in ATTACHED, requested modes enforced,
// and params this server does not support refused rather than ignored.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import { startServer, clientOptions, PROTOCOLS, uniqueChannel, eventually, closeAll } from './server.mjs';

let server;
let rest;
const clients = [];
before(async () => {
  server = await startServer();
  rest = new Ably.Rest(clientOptions(server));
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

async function publish(channel, ...names) {
  for (const n of names) await rest.channels.get(channel).publish(n, n);
}

/** Subscribes (attaching the channel); resolves to the names received, live. */
async function names(channel) {
  const got = [];
  const change = await channel.subscribe((m) => got.push(m.name));
  return { got, change };
}

for (const { name: protocol, binary } of PROTOCOLS) {
  describe(`attach options over ${protocol}`, () => {
    it('history({ untilAttach: true }) stops at the attach point (ably-js sends from_serial)', async () => {
      const name = uniqueChannel('until');
      await publish(name, 'b1', 'b2');
      const rt = realtime(clientOptions(server, { binary }));
      const ch = rt.channels.get(name);
      const { got } = await names(ch);
      await publish(name, 'a1');
      await eventually(() => got.length === 1);
      const page = await ch.history({ untilAttach: true });
      assert.deepEqual(page.items.map((m) => m.name), ['b2', 'b1']);
      const all = await ch.history();
      assert.deepEqual(all.items.map((m) => m.name), ['a1', 'b2', 'b1']);
    });

    it("rewind: '1' delivers the last message first, with HAS_BACKLOG and the param echoed", async () => {
      const name = uniqueChannel('rewind1');
      await publish(name, 'm1', 'm2', 'm3');
      const rt = realtime(clientOptions(server, { binary }));
      const ch = rt.channels.get(name, { params: { rewind: '1' } });
      const { got, change } = await names(ch);
      assert.equal(change.hasBacklog, true);
      assert.deepEqual(ch.params, { rewind: '1' });
      await publish(name, 'live');
      await eventually(() => got.at(-1) === 'live');
      assert.deepEqual(got, ['m3', 'live']);
    });
  });
}

describe('rewind', () => {
  it("rewind: '10s' delivers the messages of the last 10 s; '2s' only the most recent ones", async () => {
    const name = uniqueChannel('rewind-time');
    await publish(name, 'old');
    const olderThanTwoSeconds = Date.now() + 2100;
    await eventually(() => Date.now() >= olderThanTwoSeconds, { timeout: 5000 });
    await publish(name, 'new1', 'new2');
    const wide = realtime(clientOptions(server)).channels.get(name, { params: { rewind: '10s' } });
    const narrow = realtime(clientOptions(server)).channels.get(name, { params: { rewind: '2s' } });
    const w = await names(wide);
    const n = await names(narrow);
    assert.deepEqual(wide.params, { rewind: '10s' });
    await publish(name, 'live');
    await eventually(() => w.got.at(-1) === 'live' && n.got.at(-1) === 'live');
    assert.deepEqual(w.got, ['old', 'new1', 'new2', 'live']);
    assert.deepEqual(n.got, ['new1', 'new2', 'live']);
  });

  it('the [?rewind=2] qualifier rewinds two messages and the qualified channel keeps receiving', async () => {
    const name = uniqueChannel('qualifier');
    await publish(name, 'q1', 'q2', 'q3');
    const rt = realtime(clientOptions(server));
    const ch = rt.channels.get(`[?rewind=2]${name}`);
    const { got, change } = await names(ch);
    assert.equal(change.hasBacklog, true);
    assert.deepEqual(ch.params, { rewind: '2' });
    await publish(name, 'live');
    await eventually(() => got.at(-1) === 'live');
    assert.deepEqual(got, ['q2', 'q3', 'live']);
    // Publishing through the qualified name reaches the channel itself.
    const plain = [];
    await rt.channels.get(name).subscribe((m) => plain.push(m.name));
    await ch.publish('via-qualified', 'x');
    await eventually(() => plain.includes('via-qualified'));
  });
});

describe('channel params and modes', () => {
  it('enforces the requested modes: no presence enter (40165) or publish without their modes', async () => {
    const rt = realtime(clientOptions(server, { clientId: 'moe' }));
    const flagged = rt.channels.get(uniqueChannel('modes'), { modes: ['subscribe'] });
    await flagged.attach();
    assert.deepEqual(flagged.modes, ['subscribe']);
    await assert.rejects(flagged.presence.enter('x'), { code: 40165 });
    await assert.rejects(flagged.publish('x', 'y'), { code: 40165 });

    // params.modes wins over the mode flags, and is echoed.
    const viaParams = rt.channels.get(uniqueChannel('modes'), { params: { modes: 'presence,subscribe' }, modes: ['publish'] });
    await viaParams.attach();
    assert.deepEqual([...viaParams.modes].sort(), ['presence', 'subscribe']);
    assert.deepEqual(viaParams.params, { modes: 'presence,subscribe' });
    await viaParams.presence.enter('here');
    await assert.rejects(viaParams.publish('x', 'y'), { code: 40165 });
  });

  it('refuses params it does not support (delta) with an Ably error instead of ignoring them', async () => {
    const rt = realtime(clientOptions(server));
    const ch = rt.channels.get(uniqueChannel('delta'), { params: { delta: 'vcdiff' } });
    await assert.rejects(ch.attach(), { code: 40002 });
    assert.equal(ch.state, 'failed');
    assert.equal(rt.connection.state, 'connected');
    const bad = rt.channels.get(uniqueChannel('bad-rewind'), { params: { rewind: 'yesterday' } });
    await assert.rejects(bad.attach(), { code: 40003 });
  });
});
