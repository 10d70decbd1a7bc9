// Delivery rate: how fast the worker empties a backlog, what that costs it
// (CPU and WAL per message), and how fast the local server accepts requests
// of the same shape from a plain HTTP client, so the worker's rate can be
// read as a fraction of what the sink can take.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import pg from 'pg';
import { BENCH, TEST_KEY, now, sleep, startMeter, stopMeter, processCpu } from './harness.mjs';
import { walBreakdown, walSummary, workerCounts } from './wal.mjs';
import { startProfile, summarize } from './profile.mjs';

export const DEFAULT_SETTINGS = { batchSize: 500, maxInFlight: 8 };
const isDefault = (s) => s.batchSize === DEFAULT_SETTINGS.batchSize && s.maxInFlight === DEFAULT_SETTINGS.maxInFlight;

/**
 * For every channel count, builds a backlog of `backlog` queued messages
 * with delivery paused, resumes delivery and times the drain, once per
 * worker setting in `grids[channels]` (the first being the default).
 *
 * WAL: the backlog is inserted (one transaction) right after a CHECKPOINT;
 * the loader reads pg_current_wal_insert_lsn() just before its COMMIT. From
 * then on nothing writes but the worker (the bench only reads; `backlog` has
 * autovacuum off). A paused worker only takes ticks (before cac718c it also
 * cut up to its cut-ahead limit of the backlog into batches; preCutMessages
 * shows how many), so two figures are kept:
 * - drainWalBytesPerMessage: pg_current_wal_lsn() difference from the
 *   resume to queue_depth = 0, ÷ backlog (what the brief asks; it misses the
 *   batches recorded while paused: preCutMessages of them);
 * - with `walDump`: pg_waldump from the loader's COMMIT to 1 s after the
 *   drain (the truncation of the drained part included), records attributed
 *   as in wal.mjs; workerWalBytesPerMessage = the worker's records ÷ backlog.
 */
export async function backlogDrains(h, { backlog, grids, log, profile = false, walDump = true }) {
  const channelCounts = Object.keys(grids).map(Number);
  h.psqlFile(join(BENCH, 'sql', 'delivery.sql'));
  const insert = readFileSync(join(BENCH, 'sql', 'backlog.sql'), 'utf8');
  const runs = [];
  const profiles = [];
  for (const channels of channelCounts) {
    for (const settings of grids[channels]) {
      await h.workerSettings(settings);
      await h.pauseDelivery();
      await h.query('TRUNCATE backlog');
      await h.query('CHECKPOINT');
      // CPU (and the profile) from before the load: the paused worker cuts
      // the backlog into batches as soon as the loader commits.
      const meter = await startMeter(h);
      const isProfiled = profile && isDefault(settings);
      const prof = isProfiled ? startProfile(meter.pids.worker, `drain ${channels} channels (cut while paused, then sent)`) : null;
      // A connection of its own, as a batch job would have.
      const loader = new pg.Client({ connectionString: h.stack.cluster.url });
      await loader.connect();
      const t = now();
      await loader.query('BEGIN');
      await loader.query(insert, [backlog, channels]);
      const loadEndLsn = (await loader.query('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn;
      await loader.query('COMMIT');
      const buildSeconds = (now() - t) / 1000;
      await loader.end();
      // Let the paused worker cut what it cuts ahead, so the drain starts
      // from a settled state.
      let preCut = -1;
      for (let i = 0; i < 100; i++) {
        await sleep(200);
        const n = Number((await h.one('SELECT coalesce(sum(count), 0)::bigint AS n FROM ably.batches')).n);
        if (n === preCut) break;
        preCut = n;
      }
      const cutCpuMs = processCpu(meter.pids.worker).cpuMs - meter.cpu.worker;
      const before = { server: await h.serverStats() };
      const resumeLsn = await h.walLsn();

      const t0 = now();
      await h.resumeDelivery();
      // The server's counter of stored messages is the acknowledged count;
      // polling it costs the database nothing.
      const samples = [];
      for (;;) {
        const stored = (await h.serverStats()).messagesStored - before.server.messagesStored;
        samples.push({ t: (now() - t0) / 1000, stored });
        if (stored >= backlog) break;
        if (now() - t0 > 600000) throw new Error(`backlog of ${channels} channels not delivered after 10 minutes (${stored}/${backlog})`);
        await sleep(50);
      }
      const ackedSeconds = samples[samples.length - 1].t;
      await h.waitDelivered();
      const emptySeconds = (now() - t0) / 1000;
      const drainWalBytes = await h.walBytesSince(resumeLsn);
      const m = await stopMeter(h, meter);
      const recording = prof ? await prof.stop() : null;
      // The drained part is truncated by the worker's maintenance (every 250 ms).
      await sleep(1000);
      const settledLsn = await h.walLsn();
      const wal = walDump && isDefault(settings) ? await walBreakdown(h, loadEndLsn, settledLsn) : null;
      if (recording) profiles.push(await summarize(recording));
      const run = {
        channels,
        batchSize: settings.batchSize,
        maxInFlight: settings.maxInFlight,
        backlog,
        buildSeconds,
        preCutMessages: preCut,
        firstAckSeconds: samples.find((x) => x.stored > 0)?.t ?? null,
        ackedSeconds,
        emptySeconds,
        rate: backlog / ackedSeconds,
        sustainedRate: sustained(samples, backlog),
        requests: m.requests,
        messagesPerRequest: m.messagesPerRequest,
        channelsPerRequest: m.channelsPerRequest,
        messagesPerChannelPublish: m.messagesPerChannelPublish,
        serverPublishes: m.channelPublishes,
        // m.walBytes includes the loader's WAL: not reported.
        meter: m,
        cutWhilePausedCpuMs: cutCpuMs,
        workerCpuUsPerMessage: m.workerCpuUsPerMessage,
        serverCpuUsPerMessage: m.serverCpuUsPerMessage,
        resumeLsn,
        drainWalBytes,
        drainWalBytesPerMessage: drainWalBytes / backlog,
        wal,
        workerWalBytesPerMessage: wal && !wal.error ? wal.classes.worker.bytes / backlog : null,
        workerCounts: wal && !wal.error ? workerCounts(wal, backlog) : null,
      };
      runs.push(run);
      log(`delivery: ${channels} channels, batch_size ${settings.batchSize}, max_in_flight ${settings.maxInFlight}: `
        + `${run.sustainedRate.toFixed(0)} msg/s sustained, ${run.rate.toFixed(0)} msg/s overall (backlog built in ${buildSeconds.toFixed(1)} s); `
        + `worker ${fmt(run.workerCpuUsPerMessage)} µs/msg (${fmt(cutCpuMs)} ms of it cutting while paused), server ${fmt(run.serverCpuUsPerMessage)} µs/msg, `
        + `WAL over the drain ${fmt(run.drainWalBytesPerMessage)} B/msg (${preCut} cut while paused)`
        + (wal ? `; pg_waldump: ${walSummary(wal, backlog)}` : ''));
    }
  }
  await h.workerSettings({});
  const summary = channelCounts.map((channels) => {
    const mine = runs.filter((r) => r.channels === channels);
    const def = mine.find(isDefault);
    const best = mine.reduce((a, b) => (b.sustainedRate > a.sustainedRate ? b : a));
    return { channels, default: def, best };
  });
  return { backlog, grids, runs, summary, profiles };
}

const fmt = (x) => (x === null || x === undefined ? '–' : x.toFixed(1));

/** Messages per second between 10 % and 90 % of the backlog acknowledged:
 * the steady rate, without the start-up and the tail. */
function sustained(samples, total) {
  const at = (fraction) => samples.find((x) => x.stored >= fraction * total);
  const a = at(0.1);
  const b = at(0.9);
  if (!a || !b || b.t <= a.t) return total / samples[samples.length - 1].t;
  return (b.stored - a.stored) / (b.t - a.t);
}

/**
 * The request shape the worker actually used in a drain, from its counters:
 * ably.status.requests (HTTP requests), the server's REST publishes (one per
 * channel of a request) and the messages delivered. Averages: the sink
 * repeats the mean request.
 */
export function measuredShape(run) {
  const k = Math.max(1, Math.round(run.channelsPerRequest ?? 1));
  const m = Math.max(1, Math.round(run.messagesPerChannelPublish ?? 1));
  return { channels: run.channels, channelsPerRequest: Math.min(k, run.channels), messagesPerChannel: m };
}

/**
 * A plain HTTP load client: `concurrency` keep-alive connections posting
 * requests of the given shape for `seconds`; returns the messages per second
 * the server acknowledged. Every message has a unique id, as the worker's do,
 * so the server stores each one (no idempotent short cut).
 */
export async function sinkCapacity(h, shape, { seconds, concurrency, data }) {
  const { channels, channelsPerRequest: k } = shape;
  // Rows of one backlog differ by a few bytes: never more per channel than
  // fit under Ably's 64 KiB limit with this sample.
  const m = Math.min(shape.messagesPerChannel, Math.floor(65536 / (Buffer.byteLength(SAMPLE_NAME) + Buffer.byteLength(data))));
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const auth = `Basic ${Buffer.from(TEST_KEY).toString('base64')}`;
  const url = new URL(h.stack.ably.url);
  // Bodies are templates with the id base left open; a request fills it in.
  const HOLE = '@BASE@';
  const messages = Array.from({ length: m }, (_, i) =>
    JSON.stringify({ id: `${HOLE}:${i}`, name: SAMPLE_NAME, data, encoding: 'json' })).join(',');
  const parts = k === 1 ? `[${messages}]`.split(HOLE) : null;
  let next = 0;
  let acked = 0;
  let requests = 0;
  let failures = 0;
  let failureStatus = null;
  const post = (path, body) => new Promise((resolve) => {
    const req = http.request({
      host: url.hostname, port: url.port, method: 'POST', path, agent,
      headers: { Authorization: auth, 'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
  const deadline = now() + seconds * 1000;
  const started = now();
  const loop = async (lane) => {
    while (now() < deadline) {
      const n = next++;
      const base = `sink${lane}x${n}`;
      let status;
      if (k === 1) {
        status = await post(`/channels/bench%3A${n % channels}/messages`, parts.join(base));
      } else {
        const specs = [];
        for (let j = 0; j < k; j++) {
          const ch = (n * k + j) % channels;
          specs.push(`{"channels":"bench:${ch}","messages":[${messages.replaceAll(HOLE, `${base}-${j}`)}]}`);
        }
        status = await post('/messages', `[${specs.join(',')}]`);
      }
      requests += 1;
      if (status === 201) acked += k * m;
      else {
        failures += 1;
        failureStatus ??= status;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
  const elapsed = (now() - started) / 1000;
  agent.destroy();
  return { ...shape, messagesPerChannel: m, concurrency, seconds: elapsed, requests, failures, failureStatus, messagesPerRequest: k * m, rate: acked / elapsed };
}

/** A message's data as the worker sends it for a backlog row, and its
 * name (together they are the message's size as Ably counts it). */
export const SAMPLE_NAME = 'backlog.insert';
export async function sampleData(h) {
  // The last row of the last backlog (the longest ids and bodies), in the
  // envelope the trigger builds.
  const row = await h.one(`SELECT json_build_object('event', 'insert', 'schema', 'public', 'table', 'backlog',
      'new', row_to_json(b), 'old', NULL)::text AS data
    FROM (SELECT * FROM backlog ORDER BY id DESC LIMIT 1) b`);
  if (row) return row.data;
  const fallback = await h.one(`SELECT json_build_object('event', 'insert', 'schema', 'public', 'table', 'backlog',
      'new', row_to_json(b), 'old', NULL)::text AS data
    FROM (SELECT 200000::bigint AS id, 1 AS room_id, 'user1' AS author,
                 'a chat message of a typical length, backlog row 200000' AS body,
                 now() AS created_at, NULL::timestamptz AS edited_at) b`);
  return fallback.data;
}
