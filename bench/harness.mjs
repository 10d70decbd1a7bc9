// The benchmark's view of the local stack (scripts/stack.mjs): a pg pool,
// pgbench runs, pausing and resuming delivery, worker settings, the local
// server's counters and small statistics helpers. Every figure the benchmark
// reports is measured through these functions.

import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
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
    pgbench({ file, clients, seconds, rate }) {
      const args = ['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(2, clients)), '-T', String(seconds),
        '-h', '127.0.0.1', '-p', String(s.cluster.port), '-U', 'postgres', '-f', file];
      if (rate) args.push('-R', String(rate));
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

    /** The worker's state as ably.status() reports it. */
    async status() {
      return h.one('SELECT worker_pid, state, messages_delivered::bigint AS delivered, requests::bigint FROM ably.status()');
    },

    async queueEmpty() {
      return (await h.one('SELECT NOT EXISTS (SELECT 1 FROM ably.queue) AS empty')).empty;
    },

    async waitQueueEmpty(timeout = 300000) {
      await waitFor(() => h.queueEmpty(), { timeout, interval: 100, what: 'the queue to drain' });
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

    /** Queue size on disk: the three parts with indexes and TOAST, and ably.batches. */
    async queueBytes() {
      return h.one(`SELECT sum(pg_total_relation_size(c))::bigint AS queue,
                           pg_total_relation_size('ably.batches')::bigint AS batches
                    FROM unnest(ARRAY['ably.queue_0', 'ably.queue_1', 'ably.queue_2']::regclass[]) c`);
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
