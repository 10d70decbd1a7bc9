// The ably_pg benchmark: starts its own private PostgreSQL cluster with
// ably_pg and the local Ably-compatible server (scripts/stack.mjs), measures
// the write path, delivery rate, sink capacity, latency, queue growth and
// idle cost, prints a table and writes every figure as JSON. It never fails
// on a number: targets are printed next to the figures, not asserted.
//
//   node bench/run.mjs [--quick] [--profile] [--out FILE] [--md FILE] [--only write,delivery,steady,idle]
//
// --profile records the worker with perf during the default drains and a
// window of each steady run (bench/profile.mjs). The JSON goes to --out and
// the Markdown report (bench/report.mjs) to --md and stdout: by default
// bench/results-full.json and bench/RESULTS.md for a full run (the record),
// bench/results.json and bench/results.md for a quick one (not committed).
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
import { backlogDrains, sinkCapacity, measuredShape, sampleData, DEFAULT_SETTINGS } from './delivery.mjs';
import { steadyRun, idleCost } from './steady.mjs';
import { report } from './report.mjs';
import { perfAvailable, cleanupProfiles } from './profile.mjs';

const MODES = {
  full: {
    write: { clients: [1, 4, 16], rounds: 5, seconds: 4, updateRows: 100000 },
    delivery: {
      backlog: 200000,
      // batch_size / max_in_flight tried per channel count, the default first.
      grids: {
        1: [DEFAULT_SETTINGS, { batchSize: 250, maxInFlight: 1 }, { batchSize: 1000, maxInFlight: 8 }],
        100: [DEFAULT_SETTINGS, { batchSize: 1000, maxInFlight: 8 }, { batchSize: 1000, maxInFlight: 16 }],
        10000: [DEFAULT_SETTINGS, { batchSize: 1000, maxInFlight: 16 }, { batchSize: 1000, maxInFlight: 64 }],
      },
    },
    sink: { seconds: 5, concurrencies: [8, 32] },
    steady: {
      channels: 10,
      sampleEvery: 5,
      settleSeconds: 10,
      runs: [
        { rate: 1000, seconds: 60, window: { at: 10, seconds: 40 } },
        // The REPEATABLE READ transaction: 5 minutes at 5,000/s.
        { rate: 5000, seconds: 600, window: { at: 30, seconds: 60 }, longTx: { at: 120, seconds: 300 } },
      ],
    },
    idle: { seconds: 60 },
  },
  quick: {
    write: { clients: [1, 4, 16], rounds: 1, seconds: 3, updateRows: 20000 },
    delivery: {
      backlog: 50000,
      grids: {
        1: [DEFAULT_SETTINGS],
        100: [DEFAULT_SETTINGS],
        10000: [DEFAULT_SETTINGS, { batchSize: 1000, maxInFlight: 32 }],
      },
    },
    sink: { seconds: 2, concurrencies: [8, 32] },
    steady: {
      channels: 10,
      sampleEvery: 2,
      settleSeconds: 3,
      runs: [
        { rate: 1000, seconds: 10, window: { at: 2, seconds: 6 } },
        { rate: 5000, seconds: 40, window: { at: 3, seconds: 10 }, longTx: { at: 15, seconds: 20 } },
      ],
    },
    idle: { seconds: 10 },
  },
};

function parseArgs(argv) {
  const args = { mode: 'full', out: null, md: null, only: null, profile: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') args.mode = 'quick';
    else if (a === '--profile') args.profile = true;
    else if (a === '--out') args.out = resolve(argv[++i]);
    else if (a === '--md') args.md = resolve(argv[++i]);
    else if (a === '--only') args.only = new Set(argv[++i].split(','));
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node bench/run.mjs [--quick] [--profile] [--out FILE] [--md FILE] [--only write,delivery,steady,idle]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  // A full run is the record (committed); a quick one is not (ignored by git).
  args.out ??= join(BENCH, args.mode === 'full' ? 'results-full.json' : 'results.json');
  args.md ??= join(BENCH, args.mode === 'full' ? 'RESULTS.md' : 'results.md');
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
    // The box is shared: the 1-minute load average at the start and the end.
    loadAverage: { start: os.loadavg()[0] },
    machine: machine(),
    config: cfg,
  };
  if (args.profile) {
    const p = perfAvailable();
    results.profile = { available: p.ok, version: p.version, reason: p.reason };
    log(p.ok ? `profiling the worker with ${p.version}` : `perf not available (${p.reason}): no profiles`);
  }
  const profile = Boolean(results.profile?.available);
  log(`mode ${args.mode}, results to ${args.out} and ${args.md}`);

  if (want('write')) {
    await withStack({}, async (h) => {
      results.writePath = await writePath(h, { ...cfg.write, log });
    });
  }

  if (want('delivery')) {
    await withStack({}, async (h) => {
      results.delivery = await backlogDrains(h, { ...cfg.delivery, log, profile });
      const data = await sampleData(h);
      results.sink = [];
      results.deliveryRatios = [];
      for (const row of results.delivery.summary) {
        const runs = [row.default];
        if (row.best !== row.default) runs.push(row.best);
        for (const run of runs) {
          const shape = measuredShape(run);
          // One channel: the worker has one request in flight per channel,
          // so the sink it is compared with sends one at a time too.
          const concurrencies = row.channels === 1 ? [1] : [...new Set([...cfg.sink.concurrencies, run.maxInFlight])];
          const sinkRuns = [];
          for (const concurrency of concurrencies) sinkRuns.push(await sinkCapacity(h, shape, { seconds: cfg.sink.seconds, concurrency, data }));
          const top = sinkRuns.reduce((a, b) => (b.rate > a.rate ? b : a));
          const settings = { batchSize: run.batchSize, maxInFlight: run.maxInFlight };
          results.sink.push({ channels: row.channels, settings, shape, runs: sinkRuns, rate: top.rate, concurrency: top.concurrency });
          log(`sink: ${row.channels} channels, ${shape.channelsPerRequest} channel(s) × ${shape.messagesPerChannel} messages per request: ${top.rate.toFixed(0)} msg/s at concurrency ${top.concurrency}`);
          if (run === row.default) {
            results.deliveryRatios.push({
              channels: row.channels,
              rate: run.sustainedRate,
              shape,
              shapeText: shape.channelsPerRequest === 1 ? `1 ch × ${shape.messagesPerChannel}` : `${shape.channelsPerRequest} ch × ${shape.messagesPerChannel}`,
              concurrencyText: row.channels === 1 ? '1' : `best of ${concurrencies.join(', ')} (${top.concurrency})`,
              sinkRate: top.rate,
              ratio: top.rate > 0 ? run.sustainedRate / top.rate : null,
              sinkFailures: sinkRuns.reduce((a, x) => a + x.failures, 0),
              target: { 1: '≥ 0.80', 100: '≥ 0.80', 10000: '≥ 0.60' }[row.channels] ?? '',
            });
          }
        }
      }
    });
  }

  if (want('steady') || want('idle')) {
    // A fresh stack, so the queue starts empty. Commit timestamps are the
    // start of the latency measurement.
    await withStack({ track_commit_timestamp: 'on' }, async (h) => {
      h.psqlFile(join(BENCH, 'sql', 'delivery.sql'));
      await h.query('CREATE EXTENSION IF NOT EXISTS pgstattuple');
      if (want('steady')) {
        results.steady = [];
        for (const run of cfg.steady.runs) {
          await h.query('CHECKPOINT');
          const r = await steadyRun(h, { table: `steady_${run.rate}`, ...run, channels: cfg.steady.channels, sampleEvery: cfg.steady.sampleEvery, settleSeconds: cfg.steady.settleSeconds, profile, log });
          results.steady.push(r);
          const l = r.latencyMs.server;
          const s = r.latencyMs.subscriber;
          log(`steady ${run.rate}/s: → server p50 ${l?.p50.toFixed(1)} p99 ${l?.p99.toFixed(1)} max ${l?.max.toFixed(1)} ms; → subscriber p50 ${s?.p50.toFixed(1)} p99 ${s?.p99.toFixed(1)} ms; `
            + `hop p50 ${r.latencyMs.hop?.p50.toFixed(1)} ms; worker ${r.whileWriting.workerCpuUsPerMessage?.toFixed(1)} µs/msg; queue ${mb(r.queue.minBytes)}–${mb(r.queue.maxBytes)} MB; max n_dead_tup in parts ${r.queue.maxPartsDead}`);
        }
      }
      if (want('idle')) {
        results.idle = await idleCost(h, cfg.idle);
        log(`idle: ${results.idle.cpuMs.toFixed(0)} ms CPU in ${results.idle.seconds.toFixed(0)} s`);
      }
    });
  }

  results.loadAverage.end = os.loadavg()[0];
  results.finishedAt = new Date().toISOString();
  results.elapsedSeconds = (now() - started) / 1000;
  writeFileSync(args.out, JSON.stringify(results, null, 2) + '\n');
  const text = report(results, { json: args.out });
  writeFileSync(args.md, text);
  process.stdout.write(text);
  cleanupProfiles();
  log(`wrote ${args.out} and ${args.md}`);
}

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);

main().catch(async (e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  for (const h of stacks) await h.stop().catch(() => {});
  process.exit(1);
});
