// The benchmark's view of the local stack (scripts/stack.mjs): a pg pool,
// pgbench runs, pausing and resuming delivery, worker settings, the local
// server's counters and small statistics helpers. Every figure the benchmark
// reports is measured through these functions.

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startStack, sleep, waitFor, TEST_KEY, PG_BIN } from '../scripts/stack.mjs';

export { sleep, waitFor, TEST_KEY };

export const BENCH = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(BENCH);

/** Cluster settings shared by every stack of the benchmark. */
const BENCH_SETTINGS = {
  shared_buffers: "'256MB'",
  // Checkpoints are taken explicitly between runs, never in the middle of one.
  max_wal_size: "'16GB'",
  checkpoint_timeout: "'1h'",
};

export const now = () => performance.timeOrigin + performance.now();

/** Starts a private stack with the release ably-server; see scripts/stack.mjs. */
export async function benchStack(settings = {}) {
  process.env.ABLY_SERVER_BIN ??= join(ROOT, 'target', 'release', 'ably-server');
  // The benchmark reads the server's counters at /_debug/stats.
  const s = await startStack({ settings: { ...BENCH_SETTINGS, ...settings }, serverArgs: ['--debug-endpoints'] });
  const pool = new pg.Pool({ connectionString: s.cluster.url, max: 4 });
  pool.on('error', () => {});
  const scripts = mkdtempSync(join(tmpdir(), 'ablypg-bench-'));
  const h = {
    stack: s,
    pool,
    query: (sql, params) => pool.query(sql, params),

    async one(sql, params) {
      const { rows } = await pool.query(sql, params);
      return rows[0];
    },

    /** Runs a SQL file with psql, with `-v name=value` variables. */
    psqlFile(file, vars = {}) {
      const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-d', 'postgres'];
      for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
      execFileSync(join(PG_BIN, 'psql'), [...args, '-f', file], { stdio: 'pipe' });
    },

    /** A pgbench script from bench/sql with its @placeholders@ filled in. */
    script(name, vars) {
      let text = readFileSync(join(BENCH, 'sql', name), 'utf8');
      for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`@${k}@`, String(v));
      const file = join(scripts, `${Object.values(vars).join('-')}-${name}`);
      writeFileSync(file, text);
      return file;
    },

    /** One pgbench run (prepared statements, 2 threads at most). */
    pgbench({ file, clients, seconds, rate, logPrefix }) {
      const args = ['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(seconds),
        '-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-f', file];
      if (rate) args.push('-R', String(rate));
      // Per-second aggregates of the writers' own latency (pgbench -l).
      if (logPrefix) args.push('-l', '--aggregate-interval=1', `--log-prefix=${logPrefix}`);
      args.push('postgres');
      return new Promise((resolve, reject) => {
        const p = spawn(join(PG_BIN, 'pgbench'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => { out += d; });
        p.stderr.on('data', (d) => { err += d; });
        p.on('exit', (code) => {
          const num = (re) => { const m = out.match(re); return m ? Number(m[1]) : null; };
          const result = {
            tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
            transactions: num(/number of transactions actually processed: (\d+)/),
            failed: num(/number of failed transactions: (\d+)/) ?? 0,
            latencyMs: num(/latency average = ([\d.]+) ms/),
          };
          // Clients that lost their connection end the run early; pgbench
          // still prints what it did, and the benchmark reports it.
          if (code !== 0) result.aborted = err.trim().split('\n').slice(0, 5).join('\n');
          if (result.tps === null) reject(new Error(`pgbench exited with ${code}: ${err.trim() || out.trim()}`));
          else resolve(result);
        });
      });
    },

    /** The worker's state as ably.status reports it. queue_depth counts
     * committed messages not yet acknowledged (recorded batches and rows not
     * cut into batches yet): 0 when everything is delivered. Queue rows stay
     * in their part until it is truncated, so `ably.queue` itself is never
     * read as "undelivered". */
    async status() {
      return h.one(`SELECT worker_pid, state, queue_depth::bigint AS depth, in_flight_batches::bigint AS batches,
                           messages_delivered::bigint AS delivered, requests::bigint FROM ably.status`);
    },

    /** Messages committed and not yet acknowledged by the local server. */
    async queueDepth() {
      return Number((await h.one('SELECT queue_depth::bigint AS n FROM ably.status')).n);
    },

    async waitDelivered(timeout = 300000) {
      await waitFor(async () => (await h.queueDepth()) === 0, { timeout, interval: 100, what: 'the queue to be delivered (ably.status.queue_depth = 0)' });
    },

    async walLsn() {
      return (await h.one('SELECT pg_current_wal_lsn()::text AS lsn')).lsn;
    },

    async walBytesSince(lsn) {
      return Number((await h.one('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8 AS b', [lsn])).b);
    },

    async reload() {
      await pool.query('SELECT pg_reload_conf()');
    },

    async alterSystem(name, value) {
      await pool.query(`ALTER SYSTEM SET ${name} = ${value === null ? 'DEFAULT' : `'${value}'`}`);
    },

    /** Stops delivery the way a DBA would: an empty API key. */
    async pauseDelivery() {
      await h.alterSystem('ably.api_key', '');
      await h.reload();
      await waitFor(async () => (await h.status()).state === 'no-api-key', { what: 'the worker to pause' });
    },

    /** Restores the key; the worker resumes on the reload's SIGHUP. */
    async resumeDelivery() {
      await h.alterSystem('ably.api_key', TEST_KEY);
      await h.reload();
    },

    /** batch_size / max_in_flight; null restores the default. */
    async workerSettings({ batchSize = null, maxInFlight = null } = {}) {
      await h.alterSystem('ably.batch_size', batchSize);
      await h.alterSystem('ably.max_in_flight', maxInFlight);
      await h.reload();
    },

    /** Counters of the local server (messages it stored, i.e. acknowledged). */
    async serverStats() {
      const res = await fetch(`${s.ably.url}/_debug/stats`);
      return res.json();
    },

    /** Queue size on disk: the three parts with indexes and TOAST, and
     * the worker's bookkeeping (ably.batches, ably.ticks). */
    async queueBytes() {
      return h.one(`SELECT sum(pg_total_relation_size(c))::bigint AS queue,
                           pg_total_relation_size('ably.batches')::bigint AS batches,
                           pg_total_relation_size('ably.ticks')::bigint AS ticks,
                           pg_relation_size('ably.batches')::bigint AS batches_heap,
                           pg_relation_size('ably.ticks')::bigint AS ticks_heap
                    FROM unnest(ARRAY['ably.queue_0', 'ably.queue_1', 'ably.queue_2']::regclass[]) c`);
    },

    /** Dead and live tuples of ably's tables as the statistics system
     * has them (they lag: every backend flushes its counts at most once a
     * second when idle, so callers poll). */
    async tableStats() {
      const { rows } = await pool.query(`SELECT relname, n_dead_tup::bigint AS dead, n_live_tup::bigint AS live,
                                                n_tup_ins::bigint AS ins, n_tup_upd::bigint AS upd, n_tup_del::bigint AS del,
                                                coalesce(vacuum_count + autovacuum_count, 0)::int AS vacuums
                                         FROM pg_stat_all_tables WHERE schemaname = 'ably' ORDER BY relname`);
      return Object.fromEntries(rows.map((r) => [r.relname, { dead: Number(r.dead), live: Number(r.live), ins: Number(r.ins), upd: Number(r.upd), del: Number(r.del), vacuums: r.vacuums }]));
    },

    /** The worker's durable position (rotations, the last rotation, which
     * parts wait for truncation, the last tick cut). */
    async queueState() {
      return h.one(`SELECT current_part, rotations::bigint AS rotations, extract(epoch FROM rotated_at) * 1000 AS rotated_at,
                           (SELECT count(*) FROM unnest(retired_xid) x WHERE x IS NOT NULL)::int AS retired, (SELECT max(id) FROM ably.ticks)::bigint AS cut_tick
                    FROM ably.queue_state`);
    },

    async stop() {
      await pool.end().catch(() => {});
      await s.stop();
      rmSync(scripts, { recursive: true, force: true });
    },
  };
  return h;
}

let clockTicks;

/** CPU time (ms, all threads) and voluntary context switches (main thread)
 * of a process, from /proc. */
export function processCpu(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime + stime
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  const hz = clockTicks;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const switches = Number(status.match(/^voluntary_ctxt_switches:\s+(\d+)/m)[1]);
  return { cpuMs: (ticks * 1000) / hz, switches };
}

/** CPU time (ms) of each thread of a process, summed by thread name
 * (PostgreSQL's main thread is "postgres", the worker's HTTP threads
 * "ably-publish-N"). Threads that ended are missing (their time is still in
 * processCpu). */
export function threadCpu(pid) {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  const out = {};
  let tasks = [];
  try { tasks = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tasks) {
    let stat;
    try { stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'); } catch { continue; }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, 'N');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out[name] = (out[name] ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  }
  return out;
}

/**
 * A measured phase: call `startMeter` before and `stopMeter` after. Reports
 * what the delivery side cost per message delivered in the phase:
 * - messages: ably.status.messages_delivered delta (acknowledged by the server);
 * - worker CPU: utime + stime of the worker process (all threads, from
 *   /proc/<ably.status.worker_pid>/stat) over the phase, ÷ messages, in µs;
 *   per thread name as well;
 * - server CPU: the same for the local server's process;
 * - WAL: pg_current_wal_lsn() difference over the phase (the whole cluster's
 *   WAL: everything written in the phase, by whoever), ÷ messages.
 */
export async function startMeter(h) {
  const status = await h.status();
  const pids = { worker: status.worker_pid, server: h.stack.ably.proc.pid };
  return {
    t: now(),
    pids,
    status,
    server: await h.serverStats(),
    lsn: await h.walLsn(),
    cpu: { worker: processCpu(pids.worker).cpuMs, server: processCpu(pids.server).cpuMs, threads: threadCpu(pids.worker) },
  };
}

export async function stopMeter(h, m) {
  const cpu = { worker: processCpu(m.pids.worker).cpuMs, server: processCpu(m.pids.server).cpuMs, threads: threadCpu(m.pids.worker) };
  const seconds = (now() - m.t) / 1000;
  const walBytes = await h.walBytesSince(m.lsn);
  const endLsn = await h.walLsn();
  const status = await h.status();
  const server = await h.serverStats();
  const messages = Number(status.delivered) - Number(m.status.delivered);
  const requests = Number(status.requests) - Number(m.status.requests);
  const channelPublishes = server.restPublishes - m.server.restPublishes;
  const per = (x) => (messages > 0 ? x / messages : null);
  const threads = {};
  for (const [name, ms] of Object.entries(cpu.threads)) threads[name] = ms - (m.cpu.threads[name] ?? 0);
  const workerMs = cpu.worker - m.cpu.worker;
  const serverMs = cpu.server - m.cpu.server;
  return {
    seconds,
    messages,
    requests,
    channelPublishes,
    messagesStored: server.messagesStored - m.server.messagesStored,
    workerPid: m.pids.worker,
    workerRestarted: status.worker_pid !== m.pids.worker,
    workerCpuMs: workerMs,
    workerCpuUsPerMessage: per(workerMs * 1000),
    workerThreadsCpuMs: threads,
    serverCpuMs: serverMs,
    serverCpuUsPerMessage: per(serverMs * 1000),
    startLsn: m.lsn,
    endLsn,
    walBytes,
    walBytesPerMessage: per(walBytes),
    messagesPerRequest: requests > 0 ? messages / requests : null,
    channelsPerRequest: requests > 0 ? channelPublishes / requests : null,
    messagesPerChannelPublish: channelPublishes > 0 ? messages / channelPublishes : null,
  };
}

export function median(values) {
  const a = [...values].sort((x, y) => x - y);
  if (a.length === 0) return null;
  const m = Math.floor(a.length / 2);
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/** Nearest-rank percentiles of a Float64Array (sorted in place). */
export function percentiles(values) {
  if (values.length === 0) return null;
  values.sort();
  const at = (q) => values[Math.min(values.length - 1, Math.max(0, Math.ceil(q * values.length) - 1))];
  let sum = 0;
  for (const v of values) sum += v;
  return { n: values.length, mean: sum / values.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: values[values.length - 1] };
}
