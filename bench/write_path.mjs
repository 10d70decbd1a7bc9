// Write path: what a trigger costs the writer. pgbench runs the same INSERT
// (or UPDATE) against tables of one shape that differ only in what fires on
// a write. Variants are interleaved and repeated, and each variant's TPS is
// divided by the baseline's TPS of the same round and client count, so slow
// drifts of a shared machine cancel out.

import { join } from 'node:path';
import { loadavg } from 'node:os';
import pg from 'pg';
import { BENCH, median, startMeter, stopMeter } from './harness.mjs';
import { walBreakdown, workerCounts } from './wal.mjs';

/** `delivery`: 'active' = the worker sends to the local server meanwhile;
 * 'paused' = empty API key, so only the trigger and queue insert are paid. */
export const VARIANTS = [
  { id: 'insert plain', op: 'insert', table: 'w_plain', baseline: true },
  { id: 'insert pg_notify', op: 'insert', table: 'w_notify' },
  { id: 'insert outbox', op: 'insert', table: 'w_outbox' },
  { id: 'insert ably_pg', op: 'insert', table: 'w_ably', delivery: 'active' },
  { id: 'insert ably_pg paused', op: 'insert', table: 'w_ably_paused', delivery: 'paused' },
  { id: 'update plain', op: 'update', table: 'u_plain', baseline: true },
  { id: 'update ably_pg', op: 'update', table: 'u_ably', delivery: 'active' },
  { id: 'update ably_pg paused', op: 'update', table: 'u_ably_paused', delivery: 'paused' },
];

export async function writePath(h, { clients, rounds, seconds, updateRows, log, walDump = true }) {
  h.psqlFile(join(BENCH, 'sql', 'write_path.sql'), { rows: updateRows });

  // The old connector had a LISTENer; so does this benchmark.
  const listener = new pg.Client({ connectionString: h.stack.cluster.url });
  listener.on('error', () => {}); // a dead cluster fails the next pgbench run
  await listener.connect();
  let notifications = 0;
  listener.on('notification', () => { notifications += 1; });
  await listener.query('LISTEN chat');

  const runs = [];
  try {
    // Warm-up, not recorded: caches, plans and WAL segments of a new cluster.
    for (const v of VARIANTS) {
      await h.pgbench({ file: script(h, v, updateRows), clients: clients[clients.length - 1], seconds: 2 });
      await h.waitDelivered();
    }
    log('write path: warmed up');
    for (let round = 0; round < rounds; round++) {
      for (const c of clients) {
        // Rotate the order so no variant always runs first after a checkpoint.
        const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]);
        for (const v of order) {
          const file = script(h, v, updateRows);
          if (v.delivery) await h.waitDelivered();
          if (v.delivery === 'paused') await h.pauseDelivery();
          await h.query('CHECKPOINT');
          const notifiedBefore = notifications;
          const meter = await startMeter(h);
          const res = await h.pgbench({ file, clients: c, seconds });
          const m = await stopMeter(h, meter);
          const run = {
            round, clients: c, variant: v.id, op: v.op, ...res,
            loadAverage1m: loadavg()[0],
            // The whole cluster's WAL over the run (writers, queue, worker).
            walBytesPerTx: m.walBytes / res.transactions,
            // CPU of the delivery side during the run, per 1,000 transactions.
            workerCpuMsPer1000Tx: (m.workerCpuMs * 1000) / res.transactions,
            serverCpuMsPer1000Tx: (m.serverCpuMs * 1000) / res.transactions,
            // ... and per message the worker delivered during the run.
            delivered: m.messages,
            workerCpuUsPerMessage: m.workerCpuUsPerMessage,
            serverCpuUsPerMessage: m.serverCpuUsPerMessage,
            workerThreadsCpuMs: m.workerThreadsCpuMs,
          };
          if (v.id === 'insert pg_notify') {
            await new Promise((r) => setTimeout(r, 200));
            run.notificationsReceived = notifications - notifiedBefore;
          }
          if (v.delivery === 'active') {
            run.requestsPer1000Tx = (m.requests * 1000) / res.transactions;
            // Who wrote the WAL (pg_waldump): the worker's share per message
            // it delivered, at the largest client count.
            if (walDump && c === clients[clients.length - 1]) {
              const wal = await walBreakdown(h, m.startLsn, m.endLsn);
              if (wal && !wal.error) {
                run.wal = { classes: Object.fromEntries(Object.entries(wal.classes).map(([k, x]) => [k, { bytes: x.bytes, records: x.records, fpiRecords: x.fpiRecords, fpiBytes: x.fpiBytes, byType: Object.fromEntries(Object.entries(x.byType).slice(0, 8)) }])), truncated: wal.truncated, workerCounts: workerCounts(wal, m.messages) };
                run.workerWalBytesPerMessage = m.messages > 0 ? wal.classes.worker.bytes / m.messages : null;
                run.queueWalBytesPerTx = wal.classes.queue.bytes / res.transactions;
              } else run.wal = wal;
            }
          }
          if (v.delivery) {
            // How far the worker was behind when the writers stopped, and
            // how long it took to catch up.
            run.queuedAtEnd = await h.queueDepth();
            if (v.delivery === 'paused') await h.resumeDelivery();
            const t0 = Date.now();
            await h.waitDelivered();
            run.drainSeconds = (Date.now() - t0) / 1000;
          }
          runs.push(run);
          log(`write path: round ${round + 1}/${rounds}, ${c} clients, ${v.id}: ${run.tps.toFixed(0)} tps`);
        }
      }
    }
  } finally {
    await listener.end().catch(() => {});
  }
  return { clients, rounds, seconds, updateRows, runs, summary: summarize(runs, clients) };
}

function script(h, v, updateRows) {
  return v.op === 'insert'
    ? h.script('insert.pgbench', { table: v.table })
    : h.script('update.pgbench', { table: v.table, rows: updateRows });
}

/** Median TPS per variant and client count, and the median of the per-round
 * ratios to the baseline of the same operation. */
function summarize(runs, clients) {
  const summary = [];
  for (const v of VARIANTS) {
    const baseline = VARIANTS.find((b) => b.baseline && b.op === v.op);
    for (const c of clients) {
      const mine = runs.filter((r) => r.variant === v.id && r.clients === c);
      const ratios = mine.map((r) => {
        const base = runs.find((b) => b.variant === baseline.id && b.clients === c && b.round === r.round);
        return r.tps / base.tps;
      });
      summary.push({
        variant: v.id,
        clients: c,
        tps: median(mine.map((r) => r.tps)),
        tpsPerRound: mine.map((r) => r.tps),
        ratio: median(ratios),
        ratioPerRound: ratios,
        latencyMs: median(mine.map((r) => r.latencyMs)),
        walBytesPerTx: median(mine.map((r) => r.walBytesPerTx)),
        workerCpuMsPer1000Tx: median(mine.map((r) => r.workerCpuMsPer1000Tx)),
        serverCpuMsPer1000Tx: median(mine.map((r) => r.serverCpuMsPer1000Tx)),
        ...(v.delivery === 'active' ? {
          workerCpuUsPerMessage: median(mine.map((r) => r.workerCpuUsPerMessage)),
          serverCpuUsPerMessage: median(mine.map((r) => r.serverCpuUsPerMessage)),
          workerWalBytesPerMessage: median(mine.map((r) => r.workerWalBytesPerMessage).filter((x) => x !== undefined && x !== null)),
          queueWalBytesPerTx: median(mine.map((r) => r.queueWalBytesPerTx).filter((x) => x !== undefined && x !== null)),
        } : {}),
        ...(v.delivery === 'active' ? { requestsPer1000Tx: median(mine.map((r) => r.requestsPer1000Tx)) } : {}),
        ...(v.delivery ? { queuedAtEnd: median(mine.map((r) => r.queuedAtEnd)), drainSeconds: median(mine.map((r) => r.drainSeconds)) } : {}),
      });
    }
  }
  return summary;
}
