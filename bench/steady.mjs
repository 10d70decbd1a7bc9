// Steady load: pgbench writes at a fixed rate while a realtime subscriber
// (the ably SDK) records when each message arrives. Latency is arrival time
// minus the writer's commit time (pg_xact_commit_timestamp, same machine and
// clock). Meanwhile the queue is watched: its size on disk, its depth
// (ably.status.queue_depth), the dead tuples of ably's tables, rotations and
// truncations; optionally a REPEATABLE READ transaction holds the xmin
// horizon for a while, and a window of the run is profiled and its WAL
// broken down. Then, with no writes at all, the worker's idle CPU time is
// read from /proc.

import * as Ably from 'ably';
import pg from 'pg';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_KEY, now, sleep, waitFor, percentiles, processCpu, startMeter, stopMeter } from './harness.mjs';
import { walBreakdown, walSummary, workerCounts } from './wal.mjs';
import { startProfile, summarize } from './profile.mjs';

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

/** Exact dead tuples of the queue parts and of the worker's bookkeeping
 * tables (pgstattuple scans them; it takes an ACCESS SHARE lock, so a
 * truncation of that part waits for the next maintenance round, 250 ms
 * later). */
async function exactDead(h) {
  const { rows } = await h.query(`SELECT p AS part, s.dead_tuple_count::bigint AS dead, s.tuple_count::bigint AS live, s.table_len::bigint AS bytes
                                  FROM unnest(ARRAY['ably.queue_0', 'ably.queue_1', 'ably.queue_2']) p, LATERAL pgstattuple(p) s`);
  const book = await h.query(`SELECT p AS rel, s.dead_tuple_count::bigint AS dead, s.tuple_count::bigint AS live, s.table_len::bigint AS bytes,
                                     (s.free_space)::bigint AS free
                              FROM unnest(ARRAY['ably.batches', 'ably.ticks']) p, LATERAL pgstattuple(p) s`);
  return {
    parts: Object.fromEntries(rows.map((r) => [r.part, { dead: Number(r.dead), live: Number(r.live), bytes: Number(r.bytes) }])),
    bookkeeping: Object.fromEntries(book.rows.map((r) => [r.rel, { dead: Number(r.dead), live: Number(r.live), bytes: Number(r.bytes), free: Number(r.free) }])),
  };
}

const QUEUE_PARTS = ['queue_0', 'queue_1', 'queue_2'];

/**
 * One steady run at `rate` messages/s for `seconds` into `table`.
 * - samples every `sampleEvery` s (and queue_state every second) during the
 *   run, while it drains and `settleSeconds` after;
 * - `longTx` { at, seconds }: a REPEATABLE READ transaction opened `at` s
 *   into the run, its snapshot taken by a SELECT, committed `seconds` later;
 * - `window` { at, seconds }: a part of the run measured on its own (worker
 *   CPU per message, and with `walDump` pg_waldump's breakdown of its WAL),
 *   and with `profile` perf-recorded.
 */
export async function steadyRun(h, { table, rate, seconds, segmentSeconds = 60, channels, sampleEvery, settleSeconds, longTx = null, window = null, profile = false, walDump = true, log }) {
  // The worker notices a new CREATE EXTENSION on its next poll; wait until
  // it has delivered a message, so the run measures delivery, not start-up.
  await waitFor(async () => (await h.status()).state === 'running', { what: 'the worker to run' });
  const stored = (await h.serverStats()).messagesStored;
  await h.query(`SELECT ably.publish('steady:warm-up', 'warm-up', '{}')`);
  await waitFor(async () => (await h.serverStats()).messagesStored > stored, { what: 'the warm-up message' });
  await h.waitDelivered();
  const sub = await subscriber(h, { channels, table, capacity: Math.ceil(rate * seconds * 1.5) + 10000 });
  const workerPid = (await h.status()).worker_pid;
  const samples = [];
  const rotations = [];
  const truncations = [];
  const exact = [];
  let longTxState = { open: false, pid: null };
  const clockSkewStartMs = Date.now() - now();
  const t0 = now();
  const rel = () => (now() - t0) / 1000;
  const pgbenchLogs = mkdtempSync(join(tmpdir(), 'ablypg-bench-pgbench-'));
  let sampling = true;
  let lastState = null;
  const sampleState = async () => {
    const s = await h.queueState();
    const t = rel();
    if (lastState) {
      if (Number(s.rotations) > Number(lastState.rotations)) {
        rotations.push({ t: (Number(s.rotated_at) - t0) / 1000, count: Number(s.rotations) - Number(lastState.rotations), part: s.current_part });
      }
      if (s.retired < lastState.retired) truncations.push({ t, within: [lastState.t, t] });
    }
    lastState = { ...s, t };
  };
  const sample = async () => {
    const bytes = await h.queueBytes();
    const status = await h.status();
    const stats = await h.tableStats();
    const cpu = processCpu(workerPid).cpuMs;
    let horizonAge = null;
    if (longTxState.open) {
      horizonAge = Number((await h.one('SELECT age(backend_xmin)::bigint AS a FROM pg_stat_activity WHERE pid = $1', [longTxState.pid]))?.a ?? NaN);
    }
    samples.push({
      t: rel(),
      queueBytes: Number(bytes.queue),
      batchesBytes: Number(bytes.batches),
      ticksBytes: Number(bytes.ticks),
      batchesHeapBytes: Number(bytes.batches_heap),
      ticksHeapBytes: Number(bytes.ticks_heap),
      depth: Number(status.depth),
      inFlightBatches: Number(status.batches),
      delivered: Number(status.delivered),
      workerCpuMs: cpu,
      received: sub.count(),
      longTx: longTxState.open,
      horizonAge,
      deadTuples: Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v.dead])),
      partsDead: QUEUE_PARTS.reduce((a, p) => a + (stats[p]?.dead ?? 0), 0),
      partsUpdDel: QUEUE_PARTS.reduce((a, p) => a + (stats[p]?.upd ?? 0) + (stats[p]?.del ?? 0), 0),
      // Whether the worker's own counts reach the statistics at all (they
      // drive autovacuum of ably.batches and ably.ticks).
      batchesStats: stats.batches,
      ticksStats: stats.ticks,
    });
  };
  const sampler = (async () => {
    let n = 0;
    while (sampling) {
      try {
        await sampleState();
        if (n % sampleEvery === 0) await sample();
      } catch (e) {
        log(`steady ${rate}/s: a sample failed: ${e.message}`);
      }
      n += 1;
      await sleep(1000);
    }
  })();

  // The long REPEATABLE READ transaction.
  const longTxTask = longTx && (async () => {
    await sleep(longTx.at * 1000);
    const c = new pg.Client({ connectionString: h.stack.cluster.url });
    await c.connect();
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await c.query(`SELECT count(*) FROM ${table}`);
    const opened = rel();
    longTxState = { open: true, pid };
    log(`steady ${rate}/s: REPEATABLE READ transaction open (pid ${pid}) for ${longTx.seconds} s`);
    await sleep(longTx.seconds * 1000 - 3000);
    // Just before it ends: the queue parts, scanned.
    try { exact.push({ t: rel(), when: 'long transaction open', ...(await exactDead(h)) }); } catch (e) { exact.push({ t: rel(), error: e.message }); }
    await sleep(3000);
    const horizon = Number((await h.one('SELECT age(backend_xmin)::bigint AS a FROM pg_stat_activity WHERE pid = $1', [pid]))?.a ?? NaN);
    await c.query('COMMIT');
    longTxState = { open: false, pid: null };
    await c.end();
    return { opened, closed: rel(), pid, horizonAgeAtEnd: horizon };
  })();

  // The measured window.
  let windowResult = null;
  const windowTask = window && (async () => {
    await sleep(window.at * 1000);
    const meter = await startMeter(h);
    const prof = profile ? startProfile(meter.pids.worker, `steady ${rate}/s`) : null;
    const from = rel();
    // perf records the first 20 s of the window at most (DWARF stacks make
    // large recordings).
    const profiled = Math.min(window.seconds, 20);
    await sleep(profiled * 1000);
    const recording = prof ? await prof.stop() : null;
    await sleep((window.seconds - profiled) * 1000);
    const m = await stopMeter(h, meter);
    windowResult = { from, to: rel(), meter: m, recording, lsn: [m.startLsn, m.endLsn] };
  })();

  try {
    // Long runs are cut into segments of fresh pgbench connections, so that
    // a problem tied to a connection's lifetime shortens one segment (and is
    // reported) instead of ending the run.
    const file = h.script('steady.pgbench', { table, channels });
    const segments = [];
    const meter = await startMeter(h);
    for (let left = seconds; left > 0; left -= segmentSeconds) {
      segments.push(await h.pgbench({ file, clients: 8, seconds: Math.min(segmentSeconds, left), rate, logPrefix: join(pgbenchLogs, `s${segments.length}`) }));
    }
    const whileWriting = await stopMeter(h, meter);
    const writtenSeconds = rel();
    const bench = { tps: segments.reduce((a, x) => a + x.transactions, 0) / writtenSeconds };
    const aborted = segments.filter((x) => x.aborted).map((x) => x.aborted);
    const written = Number((await h.one(`SELECT count(*) AS n FROM ${table}`)).n);
    log(`steady ${rate}/s: ${written} messages written at ${bench.tps.toFixed(0)} tps, waiting for delivery`);
    const longTxResult = longTx ? await longTxTask : null;
    if (windowTask) await windowTask;
    const deadline = now() + 300000;
    while (sub.count() < written && now() < deadline) await sleep(100);
    const drainedSeconds = rel();
    await sleep(settleSeconds * 1000);
    sampling = false;
    await sampler;
    await sample();
    try { exact.push({ t: rel(), when: 'after the run', ...(await exactDead(h)) }); } catch (e) { exact.push({ t: rel(), error: e.message }); }
    const clockSkewEndMs = Date.now() - now();

    // Commit times, fetched in id ranges to keep memory flat; latency per
    // message and, per second of commit time, the count and the maxima.
    const { at, server } = sub;
    const toSubscriber = new Float64Array(written);
    const toServer = new Float64Array(written);
    const hop = new Float64Array(written);
    const perSecond = [];
    let n = 0;
    let missing = 0;
    const maxId = Number((await h.one(`SELECT coalesce(max(id), 0) AS m FROM ${table}`)).m);
    for (let lo = 1; lo <= maxId; lo += 100000) {
      const { rows } = await h.pool.query({
        text: `SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 FROM ${table} WHERE id BETWEEN $1 AND $2`,
        values: [lo, lo + 99999],
        rowMode: 'array',
      });
      for (const [id, commitText] of rows) {
        const i = Number(id);
        const commit = Number(commitText);
        const sec = Math.floor((commit - t0) / 1000);
        const bin = sec >= 0 ? (perSecond[sec] ??= { t: sec, commits: 0, maxServerMs: 0, maxSubscriberMs: 0 }) : null;
        if (bin) bin.commits += 1;
        if (!(i < at.length) || at[i] === 0) { missing += 1; continue; }
        toSubscriber[n] = at[i] - commit;
        toServer[n] = server[i] - commit;
        hop[n] = at[i] - server[i];
        if (bin) {
          bin.maxServerMs = Math.max(bin.maxServerMs, toServer[n]);
          bin.maxSubscriberMs = Math.max(bin.maxSubscriberMs, toSubscriber[n]);
        }
        n += 1;
      }
    }
    // The writers' own worst transaction in each second (pgbench's
    // aggregate log; with --rate it includes the schedule lag): when it is
    // as large as the worst commit → server, the whole box stalled.
    for (const name of readdirSync(pgbenchLogs)) {
      for (const line of readFileSync(join(pgbenchLogs, name), 'utf8').split('\n')) {
        const f = line.trim().split(/\s+/).map(Number);
        if (f.length < 6 || !Number.isFinite(f[0])) continue;
        const from = Math.floor((f[0] * 1000 - t0) / 1000);
        for (const sec of [from, from + 1]) {
          const bin = perSecond[sec];
          if (bin) bin.writersMaxMs = Math.max(bin.writersMaxMs ?? 0, f[5] / 1000);
        }
      }
    }
    rmSync(pgbenchLogs, { recursive: true, force: true });
    const seconds_ = perSecond.filter(Boolean);
    const near = (t, list) => list.some((r) => Math.abs(r.t - t) <= 1.5);
    const spikes = [...seconds_].sort((a, b) => b.maxServerMs - a.maxServerMs).slice(0, 8)
      .map((s) => ({ ...s, rotationNear: near(s.t + 0.5, rotations), truncationNear: truncations.some((x) => s.t + 0.5 >= x.within[0] - 1.5 && s.t + 0.5 <= x.within[1] + 1.5) }));
    const inner = seconds_.filter((s) => s.t >= 1 && s.t < Math.floor(writtenSeconds) - 1);
    const minCommits = inner.length ? inner.reduce((a, b) => (b.commits < a.commits ? b : a)) : null;

    if (windowResult?.recording) windowResult.profile = await summarize(windowResult.recording);
    if (windowResult) delete windowResult.recording;
    if (windowResult && walDump) {
      windowResult.wal = await walBreakdown(h, windowResult.lsn[0], windowResult.lsn[1]);
      const msgs = windowResult.meter.messages;
      windowResult.workerWalBytesPerMessage = windowResult.wal?.classes ? windowResult.wal.classes.worker.bytes / msgs : null;
      windowResult.workerCounts = workerCounts(windowResult.wal, msgs);
      log(`steady ${rate}/s window: worker ${windowResult.meter.workerCpuUsPerMessage?.toFixed(1)} µs/msg; pg_waldump: ${walSummary(windowResult.wal, msgs)}`);
    }

    const during = samples.filter((x) => x.t <= writtenSeconds);
    const total = (x) => x.queueBytes + x.batchesBytes + x.ticksBytes;
    const phase = (list) => {
      if (list.length < 2) return null;
      const a = list[0];
      const b = list[list.length - 1];
      const msgs = b.delivered - a.delivered;
      return {
        from: a.t,
        to: b.t,
        samples: list.length,
        maxPartsDead: Math.max(...list.map((x) => x.partsDead)),
        maxQueueBytes: Math.max(...list.map(total)),
        minQueueBytes: Math.min(...list.map(total)),
        maxDepth: Math.max(...list.map((x) => x.depth)),
        maxHorizonAge: Math.max(0, ...list.map((x) => x.horizonAge ?? 0)),
        maxDeadByTable: Object.fromEntries(Object.keys(b.deadTuples).map((k) => [k, Math.max(...list.map((x) => x.deadTuples[k] ?? 0))])),
        workerCpuUsPerMessage: msgs > 0 ? ((b.workerCpuMs - a.workerCpuMs) * 1000) / msgs : null,
        bookkeepingBytes: [a.batchesBytes + a.ticksBytes, b.batchesBytes + b.ticksBytes],
      };
    };
    // Is the worker's bookkeeping (ably.batches + ably.ticks) still growing?
    // Its size a third into the writing phase against the end of it.
    const book = (x) => x.batchesBytes + x.ticksBytes;
    const third = during.find((x) => x.t >= writtenSeconds / 3) ?? during[0];
    const lastDuring = during[during.length - 1];
    const bookkeeping = {
      atThird: { t: third.t, bytes: book(third), delivered: third.delivered },
      atEnd: { t: lastDuring.t, bytes: book(lastDuring), delivered: lastDuring.delivered },
      bytesPer1000Messages: lastDuring.delivered > third.delivered ? ((book(lastDuring) - book(third)) * 1000) / (lastDuring.delivered - third.delivered) : null,
      final: book(samples[samples.length - 1]),
      batchesStats: samples[samples.length - 1].batchesStats,
      ticksStats: samples[samples.length - 1].ticksStats,
    };
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
      clockSkewMs: { start: clockSkewStartMs, end: clockSkewEndMs },
      whileWriting,
      window: windowResult,
      latencyMs: {
        // Arrival at the server: its message timestamp, whole milliseconds
        // (truncated, so up to 1 ms early).
        server: percentiles(toServer.subarray(0, n)),
        // Arrival at a realtime subscriber (the ably SDK), sub-millisecond.
        subscriber: percentiles(toSubscriber.subarray(0, n)),
        // The server's fan-out: subscriber arrival minus the server's
        // timestamp (which is truncated to the millisecond: the true hop is
        // 0–1 ms shorter, 0.5 ms on average).
        hop: percentiles(hop.subarray(0, n)),
      },
      perSecond: seconds_,
      spikes,
      minCommitsPerSecond: minCommits,
      rotations,
      truncations,
      longTx: longTxResult,
      exactDead: exact,
      queue: {
        minBytes: Math.min(...during.map(total)),
        maxBytes: Math.max(...during.map(total)),
        maxDepth: Math.max(...during.map((x) => x.depth)),
        maxPartsDead: Math.max(...samples.map((x) => x.partsDead)),
        maxPartsUpdDel: Math.max(...samples.map((x) => x.partsUpdDel)),
        finalBytes: total(samples[samples.length - 1]),
        finalDepth: samples[samples.length - 1].depth,
        bookkeeping,
        phases: {
          withoutLongTx: phase(during.filter((x) => !x.longTx)),
          withLongTx: longTx ? phase(during.filter((x) => x.longTx)) : null,
        },
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
  await h.waitDelivered();
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
