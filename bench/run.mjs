// The ably_pg benchmark: starts its own private PostgreSQL cluster with
// ably_pg and the local Ably-compatible server (scripts/stack.mjs), measures
// the write path, delivery rate, sink capacity, latency, queue growth and
// idle cost, prints a table and writes every figure as JSON. It never fails
// on a number: targets are printed next to the figures, not asserted.
//
//   node bench/run.mjs [--quick] [--out FILE] [--only write,delivery,steady,idle]
//
// Uses the installed ably_pg and target/release/ably-server (scripts/bench.sh
// builds both); PG_BIN and ABLY_SERVER_BIN point elsewhere, and BENCH_COMMIT
// names the source of an extension not built from this checkout. Progress
// goes to stderr, the tables to stdout. See bench/RESULTS.md.

import { writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { BENCH, ROOT, benchStack, now } from './harness.mjs';
import { PG_BIN } from '../scripts/stack.mjs';
import { writePath, VARIANTS } from './write_path.mjs';
import { backlogDrains, sinkCapacity, workerShape, sampleData, SAMPLE_NAME, DEFAULT_SETTINGS } from './delivery.mjs';
import { steadyRun, idleCost } from './steady.mjs';

const MODES = {
  full: {
    write: { clients: [1, 4, 16], rounds: 5, seconds: 4, updateRows: 100000 },
    delivery: {
      backlog: 200000,
      // batch_size / max_in_flight tried per channel count, the default first.
      grids: {
        1: [DEFAULT_SETTINGS, { batchSize: 125, maxInFlight: 1 }, { batchSize: 250, maxInFlight: 1 }, { batchSize: 500, maxInFlight: 1 }, { batchSize: 1000, maxInFlight: 8 }],
        100: [DEFAULT_SETTINGS, { batchSize: 250, maxInFlight: 4 }, { batchSize: 500, maxInFlight: 16 }, { batchSize: 1000, maxInFlight: 8 }, { batchSize: 1000, maxInFlight: 16 }],
        10000: [DEFAULT_SETTINGS, { batchSize: 500, maxInFlight: 16 }, { batchSize: 1000, maxInFlight: 16 }, { batchSize: 1000, maxInFlight: 32 }, { batchSize: 1000, maxInFlight: 64 }],
      },
    },
    sink: { seconds: 5, concurrencies: [8, 32] },
    steady: { channels: 10, sampleEvery: 5, settleSeconds: 10, runs: [{ rate: 1000, seconds: 60 }, { rate: 5000, seconds: 600 }] },
    idle: { seconds: 60 },
  },
  quick: {
    write: { clients: [1, 4, 16], rounds: 1, seconds: 3, updateRows: 20000 },
    delivery: {
      backlog: 50000,
      grids: {
        1: [DEFAULT_SETTINGS, { batchSize: 250, maxInFlight: 1 }],
        100: [DEFAULT_SETTINGS, { batchSize: 1000, maxInFlight: 8 }],
        10000: [DEFAULT_SETTINGS, { batchSize: 1000, maxInFlight: 32 }],
      },
    },
    sink: { seconds: 2, concurrencies: [8] },
    steady: { channels: 10, sampleEvery: 2, settleSeconds: 3, runs: [{ rate: 1000, seconds: 10 }, { rate: 5000, seconds: 30 }] },
    idle: { seconds: 10 },
  },
};

function parseArgs(argv) {
  const args = { mode: 'full', out: join(BENCH, 'results.json'), only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') args.mode = 'quick';
    else if (a === '--out') args.out = resolve(argv[++i]);
    else if (a === '--only') args.only = new Set(argv[++i].split(','));
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node bench/run.mjs [--quick] [--out FILE] [--only write,delivery,steady,idle]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

const started = now();
const log = (msg) => process.stderr.write(`[bench ${((now() - started) / 1000).toFixed(0).padStart(5)} s] ${msg}\n`);

function machine() {
  const cpus = os.cpus();
  const sh = (cmd, args) => { try { return execFileSync(cmd, args, { cwd: ROOT }).toString().trim(); } catch { return null; } };
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    postgres: sh(join(PG_BIN, 'postgres'), ['--version']),
    pgBin: process.env.PG_BIN ?? null,
    ablyServerBin: process.env.ABLY_SERVER_BIN ?? null,
    node: process.version,
    // BENCH_COMMIT names the source of an extension built elsewhere (e.g.
    // from `git archive`); by default it is this checkout.
    commit: process.env.BENCH_COMMIT ?? sh('git', ['rev-parse', '--short', 'HEAD']),
    worktreeDirty: process.env.BENCH_COMMIT ? false : Boolean(sh('git', ['status', '--porcelain', '--', 'src', 'sql'])),
  };
}

const stacks = new Set();
async function withStack(settings, fn) {
  const h = await benchStack(settings);
  stacks.add(h);
  try {
    return await fn(h);
  } finally {
    stacks.delete(h);
    await h.stop();
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: stopping the stack`);
    for (const h of stacks) await h.stop().catch(() => {});
    process.exit(130);
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const cfg = MODES[args.mode];
  const want = (part) => !args.only || args.only.has(part);
  const results = {
    command: process.env.BENCH_COMMAND ?? `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    mode: args.mode,
    startedAt: new Date().toISOString(),
    machine: machine(),
    config: cfg,
  };
  log(`mode ${args.mode}, results to ${args.out}`);

  if (want('write')) {
    await withStack({}, async (h) => {
      results.writePath = await writePath(h, { ...cfg.write, log });
    });
  }

  if (want('delivery')) {
    await withStack({}, async (h) => {
      results.delivery = await backlogDrains(h, { ...cfg.delivery, log });
      const data = await sampleData(h);
      results.sink = [];
      for (const row of results.delivery.summary) {
        const settings = [DEFAULT_SETTINGS];
        const best = { batchSize: row.best.batchSize, maxInFlight: row.best.maxInFlight };
        if (best.batchSize !== DEFAULT_SETTINGS.batchSize || best.maxInFlight !== DEFAULT_SETTINGS.maxInFlight) settings.push(best);
        for (const s of settings) {
          const shape = workerShape(row.channels, s, SAMPLE_NAME.length + Buffer.byteLength(data));
          const runs = [];
          for (const concurrency of new Set([...cfg.sink.concurrencies, s.maxInFlight])) {
            runs.push(await sinkCapacity(h, shape, { seconds: cfg.sink.seconds, concurrency, data }));
          }
          const top = runs.reduce((a, b) => (b.rate > a.rate ? b : a));
          results.sink.push({ channels: row.channels, settings: s, shape, runs, rate: top.rate, concurrency: top.concurrency });
          log(`sink: ${row.channels} channels, ${shape.channelsPerRequest} channel(s) × ${shape.messagesPerChannel} messages per request: ${top.rate.toFixed(0)} msg/s`);
        }
      }
    });
  }

  if (want('steady') || want('idle')) {
    // A fresh stack, so the queue starts empty. Commit timestamps are the
    // start of the latency measurement.
    await withStack({ track_commit_timestamp: 'on' }, async (h) => {
      h.psqlFile(join(BENCH, 'sql', 'delivery.sql'));
      if (want('steady')) {
        results.steady = [];
        for (const run of cfg.steady.runs) {
          const r = await steadyRun(h, { table: `steady_${run.rate}`, ...run, channels: cfg.steady.channels, sampleEvery: cfg.steady.sampleEvery, settleSeconds: cfg.steady.settleSeconds, log });
          results.steady.push(r);
          const l = r.latencyMs.server;
          log(`steady ${run.rate}/s: at the server p50 ${l?.p50.toFixed(1)} ms, p99 ${l?.p99.toFixed(1)} ms, queue ${mb(r.queue.minBytes)}–${mb(r.queue.maxBytes)} MB`);
        }
      }
      if (want('idle')) {
        results.idle = await idleCost(h, cfg.idle);
        log(`idle: ${results.idle.cpuMs.toFixed(0)} ms CPU in ${results.idle.seconds.toFixed(0)} s`);
      }
    });
  }

  results.finishedAt = new Date().toISOString();
  results.elapsedSeconds = (now() - started) / 1000;
  writeFileSync(args.out, JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(report(results));
  log(`wrote ${args.out}`);
}

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);
const int = (x) => (x === null || x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));
const ms = (x) => (x === null || x === undefined ? '–' : x.toFixed(1));

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? ':' : '-') + '-'.repeat(w) + (i === 0 ? '-' : ':')).join('|')}|`, ...rows.map(line)].join('\n') + '\n';
}

/** The results as Markdown tables (pasted as is into bench/RESULTS.md). */
export function report(r) {
  let out = `\nably_pg benchmark, ${r.mode} mode, ${r.machine.cpus} CPUs (${r.machine.cpuModel}), ${r.machine.postgres}, commit ${r.machine.commit}${r.machine.worktreeDirty ? ' (modified)' : ''}\n`;
  out += `command: ${r.command}\n`;

  if (r.writePath) {
    const w = r.writePath;
    out += `\n### Write path: TPS (ratio to the plain table of the same round), median of ${w.rounds} × ${w.seconds} s\n\n`;
    const rows = VARIANTS.map((v) => [v.id, ...w.clients.map((c) => {
      const s = w.summary.find((x) => x.variant === v.id && x.clients === c);
      return `${int(s.tps)} (${s.ratio.toFixed(2)})`;
    })]);
    out += table(['variant', ...w.clients.map((c) => `${c} client${c > 1 ? 's' : ''}`)], rows);
    const last = w.clients[w.clients.length - 1];
    out += `\nCost per transaction at ${last} clients (medians): WAL written, CPU of the ably_pg worker and of the local server during the run, and for ably_pg the queue left when pgbench stopped and the time to drain it.\n\n`;
    out += table(['variant', 'tps', 'WAL bytes/tx', 'worker CPU ms/1000 tx', 'server CPU ms/1000 tx', 'requests/1000 tx', 'queued at end', 'drain s'],
      VARIANTS.map((v) => {
        const s = w.summary.find((x) => x.variant === v.id && x.clients === last);
        return [v.id, int(s.tps), int(s.walBytesPerTx), s.workerCpuMsPer1000Tx.toFixed(1), s.serverCpuMsPer1000Tx.toFixed(1), s.requestsPer1000Tx === undefined ? '–' : s.requestsPer1000Tx.toFixed(0), s.queuedAtEnd === undefined ? '–' : int(s.queuedAtEnd), s.drainSeconds === undefined ? '–' : s.drainSeconds.toFixed(1)];
      }));
    out += '\n"ably_pg" = worker delivering to the local server during the run; "paused" = empty API key, trigger and queue insert only. Target: insert ably_pg ≥ 0.90 at 16 clients.\n';
  }

  if (r.delivery) {
    const d = r.delivery;
    out += `\n### Delivery of a ${int(d.backlog)}-message backlog (messages/s acknowledged by the local server, 10–90 % of the backlog)\n\n`;
    const rows = d.summary.map((s) => {
      const sinkDefault = r.sink?.find((x) => x.channels === s.channels && x.settings.batchSize === DEFAULT_SETTINGS.batchSize && x.settings.maxInFlight === DEFAULT_SETTINGS.maxInFlight);
      const sinkBest = r.sink?.find((x) => x.channels === s.channels && x.settings.batchSize === s.best.batchSize && x.settings.maxInFlight === s.best.maxInFlight);
      return [
        int(s.channels),
        int(s.default.sustainedRate),
        int(s.best.sustainedRate),
        `${s.best.batchSize} / ${s.best.maxInFlight}`,
        s.best.messagesPerRequest.toFixed(0),
        sinkDefault ? int(sinkDefault.rate) : '–',
        sinkBest ? int(sinkBest.rate) : '–',
        sinkDefault ? (s.default.sustainedRate / sinkDefault.rate).toFixed(2) : '–',
        sinkBest ? (s.best.sustainedRate / sinkBest.rate).toFixed(2) : '–',
      ];
    });
    out += table(['channels', 'default msg/s', 'best msg/s', 'best batch_size / max_in_flight', 'msgs/request (best)', 'sink msg/s (default shape)', 'sink msg/s (best shape)', 'default ÷ sink', 'best ÷ sink'], rows);
    out += '\nEvery setting tried:\n\n';
    out += table(['channels', 'batch_size', 'max_in_flight', 'sustained msg/s', 'overall msg/s', 'first ack s', 'msgs/request', 'backlog insert s'],
      d.runs.map((x) => [int(x.channels), x.batchSize, x.maxInFlight, int(x.sustainedRate), int(x.rate), x.firstAckSeconds?.toFixed(2) ?? '–', x.messagesPerRequest.toFixed(1), x.buildSeconds.toFixed(1)]));
    out += '\nTarget: ≥ 20,000 msg/s over 100 channels.\n';
    if (r.sink) {
      out += '\nSink capacity (plain HTTP client, keep-alive, same request shapes as the worker):\n\n';
      out += table(['channels', 'settings', 'request', 'concurrency', 'msg/s'],
        r.sink.flatMap((s) => s.runs.map((x) => [int(s.channels), `${s.settings.batchSize} / ${s.settings.maxInFlight}`,
          x.channelsPerRequest === 1 ? `POST /channels/…/messages × ${x.messagesPerChannel}` : `POST /messages ${x.channelsPerRequest} ch × ${x.messagesPerChannel}`,
          x.concurrency, int(x.rate)])));
    }
  }

  if (r.steady) {
    out += `\n### Commit-to-delivery latency (ms), ${r.steady[0].channels} channels, pgbench --rate\n\n`;
    out += table(['rate', 'achieved tps', 'messages', 'server p50', 'p95', 'p99', 'max', 'subscriber p50', 'p95', 'p99', 'max'],
      r.steady.map((s) => {
        const v = s.latencyMs.server ?? {};
        const l = s.latencyMs.subscriber ?? {};
        return [`${int(s.targetRate)}/s × ${s.seconds} s`, int(s.achievedTps), int(s.received), ms(v.p50), ms(v.p95), ms(v.p99), ms(v.max), ms(l.p50), ms(l.p95), ms(l.p99), ms(l.max)];
      }));
    out += '\nFrom the commit (pg_xact_commit_timestamp) to the arrival at the local server (its message timestamp, whole ms, truncated) and at an ably SDK realtime subscriber. Target at 1,000/s: p50 ≤ 5 ms, p99 ≤ 25 ms.\n';
    out += '\n### Queue size on disk (ably.queue_0..2 with indexes and TOAST, plus ably.batches)\n\n';
    out += table(['run', 'min MB', 'max MB', 'max depth', 'after drain MB', 'after drain depth'],
      r.steady.map((s) => [`${int(s.targetRate)}/s × ${s.seconds} s`, mb(s.queue.minBytes), mb(s.queue.maxBytes), int(s.queue.maxDepth), mb(s.queue.finalBytes), int(s.queue.finalDepth)]));
  }

  if (r.idle) {
    out += `\n### Idle cost\n\nWorker CPU over ${r.idle.seconds.toFixed(0)} s with no writes: ${r.idle.cpuMs.toFixed(0)} ms (${r.idle.cpuPercent.toFixed(3)} % of one core), ${r.idle.mainThreadWakeupsPerSecond.toFixed(1)} wake-ups/s.\n`;
  }
  const aborted = [
    ...(r.writePath?.runs ?? []).filter((x) => x.aborted).map((x) => `write path, ${x.variant}, ${x.clients} clients, round ${x.round + 1}: ${x.aborted}`),
    ...(r.steady ?? []).flatMap((x) => x.aborted.map((a) => `steady ${x.targetRate}/s: ${a}`)),
  ];
  if (aborted.length) out += `\n### pgbench runs that ended early\n\n${aborted.map((a) => `- ${a.replaceAll('\n', ' / ')}`).join('\n')}\n`;
  out += `\nTotal time: ${(r.elapsedSeconds / 60).toFixed(1)} min.\n`;
  return out;
}

main().catch(async (e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  for (const h of stacks) await h.stop().catch(() => {});
  process.exit(1);
});
