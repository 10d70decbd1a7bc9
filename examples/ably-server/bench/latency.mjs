// Publish → subscriber latency of the local server on loopback: a REST publish
// (ably SDK, msgpack) is timed from just before the call until each realtime
// subscriber's callback runs. Run with 1 subscriber and with many, to see what
// fan-out adds. All subscribers share this one Node process, so with many SDK
// clients the later deliveries also wait for Node to decode the earlier ones;
// the `raw` runs use bare WebSocket subscribers (no SDK) to show the spread
// the server itself adds. A program that prints figures; it never fails.
//
//   node bench/latency.mjs [--bin path] [--messages 500] [--subscribers 1,50]
//
// The binary defaults to <repo>/target/release/ably-server (ABLY_SERVER_BIN wins).
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../test/package.json'));
const Ably = require('ably');

const KEY = 'bench.key:benchsecret';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

async function startServer(bin) {
  const child = spawn(bin, ['--port', '0', '--key', KEY, '--log', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const port = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`ably-server exited (${code})`)));
  });
  return { port, stop: async () => { child.kill('SIGTERM'); await once(child, 'exit'); } };
}

const options = (port, extra = {}) => ({
  key: KEY, endpoint: '127.0.0.1', port, tls: false, fallbackHosts: [], logLevel: 0, ...extra,
});

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Bare WebSocket subscribers: arrival time of each MESSAGE frame, no decoding beyond JSON. */
async function runRaw(port, subscriberCount, messages) {
  const WebSocket = require('ws');
  const channelName = `latency-raw-${subscriberCount}-${Date.now()}`;
  let pending = 0;
  let release;
  let first = null;
  let last = null;
  const firsts = [];
  const lasts = [];
  const sockets = [];
  for (let i = 0; i < subscriberCount; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/?format=json&v=6&key=${encodeURIComponent(KEY)}`);
    await new Promise((r) => ws.once('open', r));
    const attached = new Promise((r) => {
      ws.on('message', (data) => {
        const at = performance.now();
        const pm = JSON.parse(data.toString());
        if (pm.action === 11) r();
        if (pm.action !== 15) return;
        if (first === null) first = at;
        last = at;
        pending -= 1;
        if (pending === 0) release();
      });
    });
    ws.send(JSON.stringify({ action: 10, channel: channelName }));
    await attached;
    sockets.push(ws);
  }
  const channel = new Ably.Rest(options(port)).channels.get(channelName);
  for (let i = 0; i < messages + 20; i++) {
    pending = subscriberCount;
    first = null;
    const done = new Promise((r) => { release = r; });
    const t0 = performance.now();
    await channel.publish('m', 'x');
    await done;
    if (i >= 20) {
      firsts.push(first - t0);
      lasts.push(last - t0);
    }
  }
  for (const ws of sockets) ws.close();
  firsts.sort((a, b) => a - b);
  lasts.sort((a, b) => a - b);
  const f = (v) => v.toFixed(2);
  console.log(
    `raw ws subscribers=${String(subscriberCount).padStart(3)} messages=${messages}  ` +
    `first arrival ms p50=${f(percentile(firsts, 50))} p99=${f(percentile(firsts, 99))}  ` +
    `last arrival ms p50=${f(percentile(lasts, 50))} p99=${f(percentile(lasts, 99))}`,
  );
}

async function run(port, subscriberCount, messages) {
  const channelName = `latency-${subscriberCount}-${Date.now()}`;
  const subs = [];
  let pending = 0;
  let release;
  let first = null;
  const samples = [];
  const firsts = [];
  for (let i = 0; i < subscriberCount; i++) {
    const rt = new Ably.Realtime(options(port));
    const ch = rt.channels.get(channelName);
    await ch.subscribe((m) => {
      const latency = performance.now() - m.data.t0;
      samples.push(latency);
      if (first === null) first = latency;
      pending -= 1;
      if (pending === 0) release();
    });
    subs.push(rt);
  }
  const rest = new Ably.Rest(options(port));
  const channel = rest.channels.get(channelName);
  const publishTimes = [];
  // Warm up connections and code paths; not measured.
  for (let i = 0; i < 20; i++) {
    pending = subscriberCount;
    const done = new Promise((r) => { release = r; });
    await channel.publish('warm', { t0: performance.now() });
    await done;
  }
  samples.length = 0;
  firsts.length = 0;
  for (let i = 0; i < messages; i++) {
    pending = subscriberCount;
    first = null;
    const done = new Promise((r) => { release = r; });
    const t0 = performance.now();
    await channel.publish('m', { t0 });
    publishTimes.push(performance.now() - t0);
    await done;
    firsts.push(first);
  }
  for (const rt of subs) rt.close();
  samples.sort((a, b) => a - b);
  publishTimes.sort((a, b) => a - b);
  firsts.sort((a, b) => a - b);
  const f = (v) => v.toFixed(2);
  console.log(
    `subscribers=${String(subscriberCount).padStart(3)} messages=${messages}  ` +
    `delivery ms p50=${f(percentile(samples, 50))} p90=${f(percentile(samples, 90))} p99=${f(percentile(samples, 99))} max=${f(samples[samples.length - 1])}  ` +
    `first subscriber ms p50=${f(percentile(firsts, 50))} p99=${f(percentile(firsts, 99))}  ` +
    `REST publish round trip ms p50=${f(percentile(publishTimes, 50))} p99=${f(percentile(publishTimes, 99))}`,
  );
}

const bin = arg('bin', process.env.ABLY_SERVER_BIN ?? path.resolve(here, '../../../target/release/ably-server'));
const messages = Number(arg('messages', '500'));
const counts = arg('subscribers', '1,50').split(',').map(Number);
const server = await startServer(bin);
console.log(`binary: ${bin}`);
try {
  for (const n of counts) await run(server.port, n, messages);
  for (const n of counts) await runRaw(server.port, n, messages);
} finally {
  await server.stop();
}
process.exit(0);
