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

import { spawn, execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
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

async function main() {
  const realKey = process.env.ABLY_API_KEY;
  let databaseUrl = process.env.DATABASE_URL;
  let ably;
  if (!realKey) {
    ably = await new AblyServer().start();
    stopping.push(() => ably.stop());
  }
  if (!databaseUrl) {
    const cluster = await new Cluster({ ablyPort: ably?.port, key: realKey ?? undefined }).start();
    stopping.push(() => cluster.stop());
    databaseUrl = cluster.url;
  }
  execFileSync(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', databaseUrl, '-f', join(CHAT, 'schema.sql')], { stdio: ['ignore', 'ignore', 'inherit'] });

  const port = mode === 'test' ? await freePort() : Number(process.env.PORT ?? 3000);
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    NITRO_HOST: '127.0.0.1',
    NITRO_PORT: String(port),
    ...(ably ? { NUXT_PUBLIC_ABLY_ENDPOINT: '127.0.0.1', NUXT_PUBLIC_ABLY_PORT: String(ably.port), NUXT_PUBLIC_ABLY_TLS: 'false' } : {}),
  };
  const server = spawn(process.execPath, [join(CHAT, '.output', 'server', 'index.mjs')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  stopping.push(async () => {
    if (server.exitCode !== null) return;
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(url)).status < 500, { timeout: 60000, what: 'the chat server' });

  if (mode === 'demo') {
    console.log(`\nchat demo running at ${url}\n  database: ${databaseUrl}\n  ably:     ${ably ? ably.url + ' (local Ably-compatible server)' : 'real Ably'}\nCtrl-C stops everything.`);
    await new Promise((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    return 0;
  }
  const tests = spawn(process.execPath, ['--test', '--test-concurrency=1', join(CHAT, 'tests')], {
    env: { ...process.env, CHAT_URL: url, DATABASE_URL: databaseUrl, ARTIFACTS_DIR: process.env.ARTIFACTS_DIR ?? join(ROOT, 'test-artifacts', 'chat') },
    stdio: 'inherit',
  });
  return await new Promise((resolve) => tests.on('exit', (code) => resolve(code ?? 1)));
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.error(e);
} finally {
  await stopAll();
}
process.exit(code);
