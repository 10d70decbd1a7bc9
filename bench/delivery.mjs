// Delivery rate: how fast the worker empties a backlog, and how fast the
// local server accepts the same requests from a plain HTTP client, so the
// worker's rate can be read as a fraction of what the sink can take.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import pg from 'pg';
import { BENCH, TEST_KEY, now, sleep } from './harness.mjs';

export const DEFAULT_SETTINGS = { batchSize: 500, maxInFlight: 8 };

/**
 * For every channel count, builds a backlog of `backlog` queued messages
 * with delivery paused, resumes delivery and times the drain, once per
 * worker setting in `grids[channels]` (the first being the default).
 */
export async function backlogDrains(h, { backlog, grids, log }) {
  const channelCounts = Object.keys(grids).map(Number);
  h.psqlFile(join(BENCH, 'sql', 'delivery.sql'));
  const insert = readFileSync(join(BENCH, 'sql', 'backlog.sql'), 'utf8');
  const runs = [];
  for (const channels of channelCounts) {
    for (const settings of grids[channels]) {
      await h.workerSettings(settings);
      await h.pauseDelivery();
      await h.query('TRUNCATE backlog');
      // A connection of its own, as a batch job would have.
      const loader = new pg.Client({ connectionString: h.stack.cluster.url });
      await loader.connect();
      const t = now();
      await loader.query(insert, [backlog, channels]);
      const buildSeconds = (now() - t) / 1000;
      await loader.end();
      await h.query('CHECKPOINT');
      const before = { server: await h.serverStats(), status: await h.status() };

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
      await h.waitQueueEmpty();
      const emptySeconds = (now() - t0) / 1000;
      const after = { server: await h.serverStats(), status: await h.status() };
      const requests = Number(after.status.requests) - Number(before.status.requests);
      const run = {
        channels,
        batchSize: settings.batchSize,
        maxInFlight: settings.maxInFlight,
        backlog,
        buildSeconds,
        firstAckSeconds: samples.find((x) => x.stored > 0)?.t ?? null,
        ackedSeconds,
        emptySeconds,
        rate: backlog / ackedSeconds,
        sustainedRate: sustained(samples, backlog),
        requests,
        messagesPerRequest: backlog / requests,
        serverPublishes: after.server.restPublishes - before.server.restPublishes,
      };
      runs.push(run);
      log(`delivery: ${channels} channels, batch_size ${settings.batchSize}, max_in_flight ${settings.maxInFlight}: `
        + `${run.sustainedRate.toFixed(0)} msg/s sustained, ${run.rate.toFixed(0)} msg/s overall (backlog built in ${buildSeconds.toFixed(1)} s)`);
    }
  }
  await h.workerSettings({});
  const summary = channelCounts.map((channels) => {
    const mine = runs.filter((r) => r.channels === channels);
    const def = mine.find((r) => r.batchSize === DEFAULT_SETTINGS.batchSize && r.maxInFlight === DEFAULT_SETTINGS.maxInFlight);
    const best = mine.reduce((a, b) => (b.sustainedRate > a.sustainedRate ? b : a));
    return { channels, default: def, best };
  });
  return { backlog, grids, runs, summary };
}

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
 * The requests the worker makes for a backlog spread over `channels`
 * channels (queue ids round-robin over channels), derived from src/worker.rs:
 * a round reads batch_size × max_in_flight × 2 rows, forms at most one batch
 * per channel, cut at batch_size messages or ably.max_message_size bytes
 * (name + data, as Ably counts them), spreads the batches over max_in_flight
 * buckets and packs each bucket into batch publishes of at most 100 channels.
 */
export function workerShape(channels, { batchSize, maxInFlight }, messageSize, maxMessageSize = 65536) {
  const rowsPerRound = batchSize * maxInFlight * 2;
  const batches = Math.min(channels, rowsPerRound);
  const perChannel = Math.max(1, Math.min(batchSize, Math.floor(maxMessageSize / messageSize), Math.floor(rowsPerRound / channels)));
  const buckets = Math.min(maxInFlight, batches);
  const channelsPerRequest = Math.min(100, Math.ceil(batches / buckets));
  return { channels, channelsPerRequest, messagesPerChannel: perChannel, concurrency: maxInFlight };
}

/**
 * A plain HTTP load client: `concurrency` keep-alive connections posting
 * requests of the given shape for `seconds`; returns the messages per second
 * the server acknowledged. Every message has a unique id, as the worker's do,
 * so the server stores each one (no idempotent short cut).
 */
export async function sinkCapacity(h, shape, { seconds, concurrency, data }) {
  const { channels, channelsPerRequest: k, messagesPerChannel: m } = shape;
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
  return { ...shape, concurrency, seconds: elapsed, requests, failures, failureStatus, messagesPerRequest: k * m, rate: acked / elapsed };
}

/** A message's data as the worker sends it for a backlog row, and its
 * name (together they are the message's size as Ably counts it). */
export const SAMPLE_NAME = 'backlog.insert';
export async function sampleData(h) {
  const row = await h.one(`SELECT json_build_object('event', 'insert', 'schema', 'public', 'table', 'backlog',
      'new', row_to_json(b), 'old', NULL)::text AS data
    FROM (SELECT 1::bigint AS id, 1 AS room_id, 'user1' AS author,
                 'a chat message of a typical length, backlog row 1' AS body,
                 now() AS created_at, NULL::timestamptz AS edited_at) b`);
  return row.data;
}
