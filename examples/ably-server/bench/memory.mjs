// Resident memory of the local server while 100,000 distinct channels are
// each used once (a 1 KiB REST publish, a history read of another channel,
// an attach and detach of a third), then while 20,000 short tokens are
// issued and expire. A program that prints figures; it never fails on them.
// Published messages stay in history for --history-ttl (Ably's 2 minutes by
// default), so with publishing the channels are freed only after that.
//
//   node bench/memory.mjs [--bin path] [--channels 100000] [--tokens 20000]
//                         [--history-ttl ms] [--no-publish] [--waves 1] [--legacy]
//
// --no-publish leaves out the publish (nothing to keep in history);
// --waves N repeats the channel phase with new names, after each wave's
// messages expired, to show memory is reused rather than grown.
// --legacy runs a binary from before --debug-endpoints/--history-ttl existed
// (no gauges; RSS only). Linux only (reads /proc/<pid>/status).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../test/package.json'));
const WebSocket = require('ws');

const KEY = 'bench.key:benchsecret';
const AUTH = { authorization: `Basic ${Buffer.from(KEY).toString('base64')}`, 'content-type': 'application/json' };

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const legacy = process.argv.includes('--legacy');
const bin = arg('bin', process.env.ABLY_SERVER_BIN ?? path.resolve(here, '../../../target/release/ably-server'));
const channels = Number(arg('channels', '100000'));
const tokens = Number(arg('tokens', '20000'));
const historyTtl = arg('history-ttl', null);
const publish = !process.argv.includes('--no-publish');
const waves = Number(arg('waves', '1'));

const args = ['--port', '0', '--key', KEY, '--log', 'warn'];
if (!legacy) args.push('--debug-endpoints');
if (historyTtl && !legacy) args.push('--history-ttl', historyTtl);
const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
const port = await new Promise((resolve, reject) => {
  child.stdout.on('data', (d) => {
    out += d;
    const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) resolve(Number(m[1]));
  });
  child.once('exit', (code) => reject(new Error(`ably-server exited (${code})`)));
});
const url = `http://127.0.0.1:${port}`;

const rssMiB = () => Number(readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)[1]) / 1024;
const stats = async () => (legacy ? {} : (await fetch(`${url}/_debug/stats`)).json());
const started = Date.now();
async function report(label) {
  const s = await stats();
  const held = legacy ? '' : `  channels=${s.channels} tokens=${s.tokens} nonces=${s.nonces}`;
  console.log(`${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${label.padEnd(34)} RSS ${rssMiB().toFixed(1).padStart(6)} MiB${held}`);
}

async function inParallel(count, width, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await fn(next++);
  }));
}

async function waitFor(what, poll, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await poll()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`  (${what}: not within ${timeoutMs / 1000} s)`);
  return false;
}

console.log(`binary: ${bin}${legacy ? ' (legacy)' : ''}; history-ttl: ${historyTtl ?? 'default'}`);
await report('start');
const ws = new WebSocket(`ws://127.0.0.1:${port}/?format=json&v=6&key=${encodeURIComponent(KEY)}`);
await once(ws, 'open');
const payload = JSON.stringify({ name: 'once', data: 'x'.repeat(1024) });
const step = channels / 4;
for (let wave = 1; wave <= waves; wave++) {
  for (let quarter = 1; quarter <= 4; quarter++) {
    await inParallel(step, 32, async (j) => {
      const n = `mem-${wave}-${(quarter - 1) * step + j}`;
      if (publish) await fetch(`${url}/channels/${n}/messages`, { method: 'POST', headers: AUTH, body: payload });
      await fetch(`${url}/channels/${n}-read/messages`, { headers: AUTH });
      ws.send(JSON.stringify({ action: 10, channel: `${n}-rt` }));
      ws.send(JSON.stringify({ action: 12, channel: `${n}-rt` }));
    });
    await report(`${waves > 1 ? `wave ${wave}: ` : ''}${quarter * step} channels used once`);
  }
  if (!legacy) {
    const ttl = publish ? Number(historyTtl ?? 120_000) : 0;
    await waitFor('channels freed', async () => (await stats()).channels === 0, ttl + 30_000);
    await report('after their messages expired');
  }
}
ws.close();

await inParallel(tokens, 32, async () => {
  await fetch(`${url}/keys/bench.key/requestToken`, { method: 'POST', headers: AUTH, body: JSON.stringify({ ttl: 2000 }) });
});
await report(`${tokens} tokens issued (ttl 2 s)`);
if (!legacy) {
  await waitFor('tokens freed', async () => (await stats()).tokens === 0, 30_000);
  await report('after they expired');
}
child.kill('SIGTERM');
await once(child, 'exit');
process.exit(0);
