// A 5 s token renewed through authCallback during 30 s of continuous traffic
// in both directions. The server asks for renewal before expiry (AUTH); every
// third renewal is answered too late on purpose, so the token expires, the
// server disconnects with 40142 and the client renews and resumes. Either
// way no message is lost or doubled, and the connection keeps its id.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ably from 'ably';
import { startServer, clientOptions, uniqueChannel, eventually, closeAll } from './server.mjs';

const SECONDS = Number(process.env.TOKEN_TEST_SECONDS ?? 30);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
const clients = [];
before(async () => { server = await startServer(); });
after(async () => {
  await closeAll(clients);
  await server?.stop();
});

describe('a 5 s token over continuous traffic', () => {
  it(`loses and doubles nothing for ${SECONDS} s, renewing in place and across expiry`, { timeout: (SECONDS + 30) * 1000 }, async () => {
    const keyRest = new Ably.Rest(clientOptions(server));
    let calls = 0;
    const authCallback = (tokenParams, callback) => {
      calls += 1;
      const late = calls > 1 && calls % 3 === 0;
      setTimeout(() => {
        keyRest.auth.createTokenRequest({ ttl: 5000, clientId: 'tess' }).then((tr) => callback(null, tr), (e) => callback(e, null));
      }, late ? 3500 : 0);
    };
    const { key, ...tokenOptions } = clientOptions(server, { authCallback, clientId: 'tess' });
    const tess = new Ably.Realtime(tokenOptions);
    const watcher = new Ably.Realtime(clientOptions(server));
    clients.push(tess, watcher);
    const changes = [];
    tess.connection.on((c) => {
      const event = c.previous === c.current ? 'update' : c.current;
      changes.push(`${event}${c.reason ? ` ${c.reason.code}` : ''}`);
    });

    const inbound = uniqueChannel('to-tess');
    const outbound = uniqueChannel('from-tess');
    const received = [];
    const watched = [];
    await tess.channels.get(inbound).subscribe((m) => received.push(m.name));
    await watcher.channels.get(outbound).subscribe((m) => watched.push([m.name, m.clientId]));
    const id = tess.connection.id;

    const end = Date.now() + SECONDS * 1000;
    let sent = 0;
    const restSide = (async () => {
      const ch = keyRest.channels.get(inbound);
      while (Date.now() < end) {
        await ch.publish(`r-${sent}`, 'x');
        sent += 1;
        await sleep(50);
      }
    })();
    const published = [];
    const realtimeSide = (async () => {
      const ch = tess.channels.get(outbound);
      for (let i = 0; Date.now() < end; i++) {
        published.push(ch.publish(`t-${i}`, 'y'));
        await sleep(100);
      }
    })();
    await Promise.all([restSide, realtimeSide]);
    await Promise.all(published); // every realtime publish was ACKed
    await keyRest.channels.get(inbound).publish('end', 'x');
    await tess.channels.get(outbound).publish('end', 'y');
    await eventually(() => received.at(-1) === 'end' && watched.at(-1)?.[0] === 'end', { timeout: 15_000 });

    assert.deepEqual(received, [...Array.from({ length: sent }, (_, i) => `r-${i}`), 'end']);
    assert.deepEqual(
      watched,
      [...Array.from({ length: published.length }, (_, i) => [`t-${i}`, 'tess']), ['end', 'tess']],
    );
    assert.equal(tess.connection.id, id, `same connection throughout: ${changes.join(', ')}`);
    assert.ok(changes.includes('update'), `renewed in place at least once: ${changes.join(', ')}`);
    assert.ok(changes.includes('disconnected 40142'), `expired and resumed at least once: ${changes.join(', ')}`);
  });
});
