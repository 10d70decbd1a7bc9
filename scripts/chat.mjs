// Runs the editable chat demo (examples/chat) on the local stack.
//
//   node scripts/chat.mjs demo   start everything, print the URL, Ctrl-C stops
//   node scripts/chat.mjs test   start everything on free ports, run the
//                                browser tests, stop everything
//
// Embedded defaults: a private PostgreSQL cluster with ably_pg and the local
// Ably-compatible server. With ABLY_API_KEY set, the cluster publishes to
// real Ably instead (and browsers use Ably's default endpoint); with
// DATABASE_URL also set, an existing PostgreSQL is used — it must already
// preload ably_pg and have ably.api_key set (see the README).
//
// The demo listens on HOST (default 127.0.0.1) and PORT (default 3000; when
// 3000 is taken and PORT is not set, a free port). HOST=0.0.0.0 serves other
// machines too: the local Ably server then also listens on all interfaces and
// browsers reach it at the host they loaded the page from.

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join, dirname, delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AblyServer, Cluster, freePort, waitFor, PG_BIN } from './stack.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CHAT = join(ROOT, 'examples', 'chat');
const mode = process.argv[2] ?? 'demo';
if (!['demo', 'test'].includes(mode)) {
  console.error('usage: node scripts/chat.mjs demo|test');
  process.exit(2);
}

const stopping = [];
async function stopAll() {
  for (const stop of stopping.reverse()) await stop().catch(() => {});
}

/** Whether something may listen on host:port right now. */
function canListen(host, port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** A free port on `host` (any interface for a wildcard host). */
function freePortOn(host) {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const isLoopback = (host) => host === 'localhost' || host === '::1' || /^127\./.test(host);
const isWildcard = (host) => host === '0.0.0.0' || host === '::';

/** Where the demo listens: HOST/PORT when given; port 3000, or a free one when it is taken. */
async function chooseListen() {
  const host = process.env.HOST || '127.0.0.1';
  if (process.env.PORT) {
    const port = Number(process.env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT=${process.env.PORT} is not a port number`);
    if (port !== 0 && !(await canListen(host, port))) {
      throw new Error(`${host}:${port} is already in use (or not an address of this machine). Unset PORT to let the demo pick a free port, or choose another.`);
    }
    return { host, port: port || (await freePortOn(host)), moved: false };
  }
  if (await canListen(host, 3000)) return { host, port: 3000, moved: false };
  return { host, port: await freePortOn(host), moved: true };
}

/** The addresses a person can open, for a host the server listens on. */
function urlsFor(host, port) {
  if (!isWildcard(host)) return [`http://${host.includes(':') ? `[${host}]` : host}:${port}`];
  const urls = [`http://127.0.0.1:${port}`];
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.family !== 'IPv4') continue;
      urls.push(`http://${a.address}:${port}`);
    }
  }
  return urls;
}

/** `psql` when it is on PATH, else the private installation's. */
function psqlCommand() {
  const onPath = (process.env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, 'psql')));
  return onPath ? 'psql' : join(PG_BIN, 'psql');
}

const shellQuote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

async function main() {
  const listen = mode === 'demo' ? await chooseListen() : { host: '127.0.0.1', port: await freePort(), moved: false };
  const realKey = process.env.ABLY_API_KEY;
  let databaseUrl = process.env.DATABASE_URL;
  const temporary = !databaseUrl;
  const remoteBrowsers = !isLoopback(listen.host);
  let ably;
  if (!realKey) {
    ably = await new AblyServer({ args: remoteBrowsers ? ['--host', '0.0.0.0'] : [] }).start();
    stopping.push(() => ably.stop());
  }
  if (!databaseUrl) {
    const cluster = await new Cluster({ ablyPort: ably?.port, key: realKey ?? undefined }).start();
    stopping.push(() => cluster.stop());
    databaseUrl = cluster.url;
  }
  const psql = (args) => execFileSync(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', databaseUrl, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  psql(['-f', join(CHAT, 'schema.sql')]);
  if (mode === 'demo') {
    // A first message, so a new visitor sees what the room is about.
    psql(['-c', `INSERT INTO chat.messages (room_id, author, body)
      SELECT 'general', 'ably_pg', 'Welcome! Every message here is a row in chat.messages, and ably_pg publishes each change to Ably from inside PostgreSQL. Open this room in a second window, or change this message from psql, and watch both update.'
      WHERE NOT EXISTS (SELECT 1 FROM chat.messages WHERE room_id = 'general')`]);
  }

  const { host, port } = listen;
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: host,
    NITRO_HOST: host,
    NITRO_PORT: String(port),
    // Shown in "How it works" as the database a visitor can try psql on.
    ...(temporary || mode === 'test' ? { NUXT_PUBLIC_PSQL_URL: databaseUrl } : {}),
    ...(ably
      ? { NUXT_PUBLIC_ABLY_ENDPOINT: remoteBrowsers ? 'same-host' : '127.0.0.1', NUXT_PUBLIC_ABLY_PORT: String(ably.port), NUXT_PUBLIC_ABLY_TLS: 'false' }
      : {}),
  };
  const server = spawn(process.execPath, [join(CHAT, '.output', 'server', 'index.mjs')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  const serverExit = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
  stopping.push(async () => {
    if (server.exitCode !== null || server.signalCode !== null) return;
    server.kill('SIGTERM');
    await serverExit;
  });
  const urls = urlsFor(host, port);
  const localUrl = isWildcard(host) ? `http://127.0.0.1:${port}` : urls[0];
  await Promise.race([
    waitFor(async () => (await fetch(localUrl)).status < 500, { timeout: 60000, what: 'the chat server' }),
    serverExit.then(({ code }) => {
      throw new Error(`the chat server exited (code ${code}) before it was ready`);
    }),
  ]);

  if (mode === 'demo') {
    const oneLiner = `${psqlCommand()} ${shellQuote(databaseUrl)} -c "UPDATE chat.messages SET body = 'Hello from psql' WHERE id = (SELECT max(id) FROM chat.messages)"`;
    console.log([
      '',
      `  ably_pg chat demo: ${urls[0]}`,
      ...urls.slice(1).map((u) => `                     ${u}`),
      ...(listen.moved ? ['  (port 3000 was taken, so the demo picked this free port; set PORT to choose one)'] : []),
      '',
      '  Try this:',
      '    1. Open the address in two windows (one private, so you are two people) and chat.',
      '    2. Change the newest message straight in the database; both windows update:',
      `       ${oneLiner}`,
      '    3. In a room, click "How it works" to see each Ably message ably_pg publishes.',
      '',
      `  database: ${databaseUrl}`,
      `  ably:     ${ably ? `${ably.url} (local Ably-compatible server)` : 'real Ably'}`,
      temporary
        ? '  The database is temporary: everything is deleted when you press Ctrl-C.'
        : '  Using your DATABASE_URL: the chat data stays there.',
      '  Ctrl-C stops everything.',
      '',
    ].join('\n'));
    const outcome = await Promise.race([
      new Promise((resolve) => {
        process.once('SIGINT', () => resolve('stop'));
        process.once('SIGTERM', () => resolve('stop'));
      }),
      serverExit,
    ]);
    if (outcome === 'stop') return 0;
    console.error(`chat server exited unexpectedly (code ${outcome.code}, signal ${outcome.signal}); stopping everything`);
    return 1;
  }
  const tests = spawn(process.execPath, ['--test', '--test-concurrency=1', join(CHAT, 'tests')], {
    env: {
      ...process.env,
      CHAT_URL: localUrl,
      DATABASE_URL: databaseUrl,
      PATH: `${PG_BIN}${delimiter}${process.env.PATH ?? ''}`,
      ARTIFACTS_DIR: process.env.ARTIFACTS_DIR ?? join(ROOT, 'test-artifacts', 'chat'),
    },
    stdio: 'inherit',
  });
  return await new Promise((resolve) => tests.on('exit', (code) => resolve(code ?? 1)));
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(e instanceof Error && !process.env.STACK_VERBOSE ? `error: ${e.message}` : e);
} finally {
  await stopAll();
}
process.exit(code);
