// Test fixture: runs the real ably-server binary as a child process on a free
// port (--port 0), parses its ready line, and kills it when the test is done.
// Also holds the client options that point the ably SDK at it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';

const here = path.dirname(fileURLToPath(import.meta.url));

export const KEY = 'testapp.full:fullsecret';
export const CHAT_KEY = 'testapp.chat:chatsecret';
export const CHAT_CAPABILITY = { 'chat:*': ['subscribe', 'presence'] };

function binaryPath() {
  if (process.env.ABLY_SERVER_BIN) return process.env.ABLY_SERVER_BIN;
  const candidates = [];
  if (process.env.CARGO_TARGET_DIR) candidates.push(path.join(process.env.CARGO_TARGET_DIR, 'debug', 'ably-server'));
  candidates.push(path.resolve(here, '../../../target/debug/ably-server'));
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error(`ably-server binary not found (tried ${candidates.join(', ')}); build it with cargo build -p ably-server or set ABLY_SERVER_BIN`);
  }
  return found;
}

/** Starts the server; resolves to { port, url, pid, stats(), stop(), log() }.
 *  Debug endpoints are on unless `debugEndpoints: false`. */
export async function startServer(extraArgs = [], { debugEndpoints = true } = {}) {
  const args = [
    '--port', '0', '--key', KEY, '--key', `${CHAT_KEY}=${JSON.stringify(CHAT_CAPABILITY)}`, '--log', 'ably_server=debug',
    ...(debugEndpoints ? ['--debug-endpoints'] : []), ...extraArgs,
  ];
  const child = spawn(binaryPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  let stdout = '';
  const ready = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/^ably-server listening on (http:\/\/127\.0\.0\.1:(\d+))\n/);
      if (m) resolve({ url: m[1], port: Number(m[2]) });
    });
    child.once('exit', (code) => reject(new Error(`ably-server exited (${code}) before ready:\n${stderr}`)));
    setTimeout(() => reject(new Error(`ably-server not ready in 10 s:\n${stderr}`)), 10_000).unref();
  });
  const { url, port } = await ready;
  return {
    url,
    port,
    pid: child.pid,
    log: () => stderr,
    async stats() {
      const res = await fetch(`${url}/_debug/stats`);
      return res.json();
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** Client options for the ably SDK against the local server (§A1 / §B16). */
export function clientOptions(server, { binary = true, ...extra } = {}) {
  return {
    key: KEY,
    endpoint: '127.0.0.1',
    port: server.port,
    tls: false,
    useBinaryProtocol: binary,
    fallbackHosts: [],
    logLevel: 0,
    ...extra,
  };
}

export const PROTOCOLS = [
  { name: 'msgpack', binary: true },
  { name: 'json', binary: false },
];

/** Resolves with the first value `poll()` returns that is truthy. */
export async function eventually(poll, { timeout = 5000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await poll();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what} not met in time`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Resolves like `promise`, or rejects after `ms` saying what did not happen. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Collects messages delivered to `channel` until one named `until` arrives. */
export function collectUntil(channel, until) {
  const got = [];
  let done;
  const finished = new Promise((r) => { done = r; });
  channel.subscribe((m) => {
    got.push(m);
    if (m.name === until) done(got);
  });
  return { got, finished };
}

let counter = 0;
export function uniqueChannel(prefix = 'test') {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now()}-${counter}`;
}

/** Closes realtime clients and waits until each is closed (or failed), so no
 *  SDK timer outlives the test file. */
export async function closeAll(clients) {
  await Promise.all(clients.map(async (c) => {
    if (['closed', 'failed'].includes(c.connection.state)) return;
    const done = new Promise((r) => {
      c.connection.on((change) => { if (['closed', 'failed', 'suspended'].includes(change.current)) r(); });
    });
    c.close();
    await Promise.race([done, new Promise((r) => setTimeout(r, 3000).unref())]);
  }));
}
