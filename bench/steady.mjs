// Steady load: pgbench writes at a fixed rate while a realtime subscriber
// (the ably SDK) records when each message arrives. Latency is arrival time
// minus the writer's commit time (pg_xact_commit_timestamp, same machine and
// clock). The queue's size on disk is sampled meanwhile. Then, with no
// writes at all, the worker's CPU time is read from /proc.

import * as Ably from 'ably';
import { TEST_KEY, now, sleep, waitFor, percentiles, processCpu } from './harness.mjs';

/** Subscribes to steady:1..channels; records when each row of `table`
 * arrives (here and at the server), indexed by row id. */
async function subscriber(h, { channels, table, capacity }) {
  const client = new Ably.Realtime({ key: TEST_KEY, ...h.stack.ably.clientOptions() });
  const at = new Float64Array(capacity);
  const server = new Float64Array(capacity);
  let count = 0;
  const onMessage = (m) => {
    const t = now();
    const id = m.data?.new?.id;
    if (m.data?.table !== table || !(id < capacity)) return;
    at[id] = t;
    server[id] = m.timestamp;
    count += 1;
  };
  for (let i = 1; i <= channels; i++) await client.channels.get(`steady:${i}`).subscribe(onMessage);
  return { at, server, count: () => count, close: () => client.close() };
}

/**
 * One steady run at `rate` messages/s for `seconds` into `table`. Samples the
 * queue size every `sampleEvery` seconds during the run, while it drains and
 * `settleSeconds` after.
 */
export async function steadyRun(h, { table, rate, seconds, segmentSeconds = 60, channels, sampleEvery, settleSeconds, log }) {
  // The worker notices a new CREATE EXTENSION on its next poll; wait until
  // it has delivered a message, so the run measures delivery, not start-up.
  await waitFor(async () => (await h.status()).state === 'running', { what: 'the worker to run' });
  const stored = (await h.serverStats()).messagesStored;
  await h.query(`SELECT ably.publish('steady:warm-up', 'warm-up', '{}')`);
  await waitFor(async () => (await h.serverStats()).messagesStored > stored, { what: 'the warm-up message' });
  const sub = await subscriber(h, { channels, table, capacity: Math.ceil(rate * seconds * 1.5) + 10000 });
  const samples = [];
  const t0 = now();
  let sampling = true;
  const sample = async () => {
    const bytes = await h.queueBytes();
    const depth = Number((await h.one('SELECT count(*) AS n FROM ably.queue')).n);
    samples.push({ t: (now() - t0) / 1000, queueBytes: Number(bytes.queue), batchesBytes: Number(bytes.batches), depth, received: sub.count() });
  };
  const sampler = (async () => {
    while (sampling) {
      await sample();
      await sleep(sampleEvery * 1000);
    }
  })();
  try {
    // Long runs are cut into segments of fresh pgbench connections, so that
    // a problem tied to a connection's lifetime shortens one segment (and is
    // reported) instead of ending the run.
    const file = h.script('steady.pgbench', { table, channels });
    const segments = [];
    for (let left = seconds; left > 0; left -= segmentSeconds) {
      segments.push(await h.pgbench({ file, clients: 8, seconds: Math.min(segmentSeconds, left), rate }));
    }
    const writtenSeconds = (now() - t0) / 1000;
    const bench = { tps: segments.reduce((a, x) => a + x.transactions, 0) / writtenSeconds };
    const aborted = segments.filter((x) => x.aborted).map((x) => x.aborted);
    const written = Number((await h.one(`SELECT count(*) AS n FROM ${table}`)).n);
    log(`steady ${rate}/s: ${written} messages written at ${bench.tps.toFixed(0)} tps, waiting for delivery`);
    const deadline = now() + 300000;
    while (sub.count() < written && now() < deadline) await sleep(100);
    const drainedSeconds = (now() - t0) / 1000;
    await sleep(settleSeconds * 1000);
    sampling = false;
    await sampler;
    await sample();

    // Commit times, fetched in id ranges to keep memory flat.
    const { at, server } = sub;
    const toSubscriber = new Float64Array(written);
    const toServer = new Float64Array(written);
    let n = 0;
    let missing = 0;
    const maxId = Number((await h.one(`SELECT coalesce(max(id), 0) AS m FROM ${table}`)).m);
    for (let lo = 1; lo <= maxId; lo += 100000) {
      const { rows } = await h.pool.query({
        text: `SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 FROM ${table} WHERE id BETWEEN $1 AND $2`,
        values: [lo, lo + 99999],
        rowMode: 'array',
      });
      for (const [id, commit] of rows) {
        const i = Number(id);
        if (!(i < at.length) || at[i] === 0) { missing += 1; continue; }
        toSubscriber[n] = at[i] - Number(commit);
        toServer[n] = server[i] - Number(commit);
        n += 1;
      }
    }
    const queueBytes = samples.map((x) => x.queueBytes + x.batchesBytes);
    const during = samples.filter((x) => x.t <= writtenSeconds).map((x) => x.queueBytes + x.batchesBytes);
    return {
      table,
      targetRate: rate,
      seconds,
      channels,
      achievedTps: bench.tps,
      segments: segments.length,
      aborted,
      written,
      received: sub.count(),
      missing,
      drainSecondsAfterWrites: drainedSeconds - writtenSeconds,
      latencyMs: {
        // Arrival at the server: its message timestamp, whole milliseconds
        // (truncated, so up to 1 ms early).
        server: percentiles(toServer.subarray(0, n)),
        // Arrival at a realtime subscriber (the ably SDK), sub-millisecond.
        subscriber: percentiles(toSubscriber.subarray(0, n)),
      },
      queue: {
        minBytes: Math.min(...during),
        maxBytes: Math.max(...during),
        maxDepth: Math.max(...samples.filter((x) => x.t <= writtenSeconds).map((x) => x.depth)),
        finalBytes: queueBytes[queueBytes.length - 1],
        finalDepth: samples[samples.length - 1].depth,
        samples,
      },
    };
  } finally {
    sampling = false;
    await sampler.catch(() => {});
    sub.close();
  }
}

/** CPU used by the worker process over `seconds` with no writes. */
export async function idleCost(h, { seconds }) {
  await h.waitQueueEmpty();
  await sleep(2000);
  const { worker_pid: pid } = await h.status();
  const before = processCpu(pid);
  const t0 = now();
  await sleep(seconds * 1000);
  const after = processCpu(pid);
  const elapsed = (now() - t0) / 1000;
  const cpuMs = after.cpuMs - before.cpuMs;
  return {
    pid,
    seconds: elapsed,
    cpuMs,
    cpuPercent: (cpuMs / (elapsed * 1000)) * 100,
    mainThreadWakeupsPerSecond: (after.switches - before.switches) / elapsed,
  };
}
