// `--profile`: perf record on the delivery worker (all its threads, DWARF
// call stacks, 299 Hz) during a phase, summarized as text: the share per
// thread and library, the inclusive share of the worker's own functions and
// of the costs around them (commits, catalog look-ups, the HTTP client), the
// flat profile (perf report --stdio --no-children) and the top of the call
// graph. The raw perf.data files are deleted (BENCH_PERF_KEEP=DIR keeps
// them). Hardware counters are not available in this VM, so the event is the
// cpu-clock software timer.

import { spawn, execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';

let dir = null;

/** Whether perf can sample here; the reason if not. */
export function perfAvailable() {
  try {
    execFileSync('perf', ['record', '-e', 'cpu-clock', '-o', '/dev/null', '-q', '--', 'true'], { stdio: 'pipe', timeout: 20000 });
    return { ok: true, version: execFileSync('perf', ['--version']).toString().trim() };
  } catch (e) {
    return { ok: false, reason: e.code === 'ENOENT' ? 'perf not installed' : `perf record failed: ${String(e.stderr ?? e.message).trim().split('\n').slice(-1)[0]}` };
  }
}

const execFileP = (cmd, args, opts) => new Promise((resolve, reject) => {
  execFile(cmd, args, opts, (err, stdout, stderr) => (err ? reject(Object.assign(err, { stderr })) : resolve(stdout)));
});

// Asynchronous, so the benchmark's event loop (the subscriber) never waits.
const run = async (args, limit) => {
  try {
    const out = String(await execFileP('perf', args, { maxBuffer: 256 * 2 ** 20, timeout: 300000 }));
    const lines = out.split('\n').filter((l) => !/^#\s*$/.test(l) && l.trim() !== '' && !l.startsWith('# To display') && !l.startsWith('# Total Lost') && !l.startsWith('# Event count') && !l.startsWith('# (Tip'));
    return lines.slice(0, limit).map((l) => l.replace(/\s+(IPC\s+\[IPC Coverage\]|-\s+-)\s*$/, '').replace(/\s+\.+\s+\.+\s*$/, '').trimEnd()).map((l) => (l.length > 170 ? `${l.slice(0, 167)}...` : l)).join('\n');
  } catch (e) {
    return `perf report failed: ${String(e.stderr || e.message).trim().split('\n').slice(-1)[0]}`;
  }
};

/**
 * Starts `perf record -e cpu-clock -F <freq> -g -p <pid>` (threads the
 * process starts later are followed). `stop()` ends the recording and
 * returns it; `summarize(recording)` makes the text summary and deletes the
 * data (call it when nothing is being timed).
 */
const INTERESTING = /ably_pg::|ureq::|XLogFlush|fdatasync|clone3|CommitTransactionCommand|StartTransactionCommand|get_extension_oid|WaitLatchOrSocket|heap_insert|index_insert|heap_fetch|index_getnext|systable_beginscan|GetSnapshotData|SetLatch|__libc_kill|pg_detoast|OutputFunctionCall|serde/;

export function startProfile(pid, label, { freq = Number(process.env.BENCH_PERF_FREQ ?? 299) } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), 'ablypg-bench-perf-'));
  const file = join(dir, `${label.replace(/[^\w.-]+/g, '_')}.data`);
  const started = Date.now();
  // DWARF stacks by default: neither PostgreSQL nor the release build keeps
  // frame pointers, so plain -g stacks stop after a frame or two.
  // BENCH_PERF_CALL_GRAPH=fp gives -g (smaller, faster recordings).
  const mode = process.env.BENCH_PERF_CALL_GRAPH ?? 'dwarf';
  const callGraph = mode === 'fp' ? ['-g'] : ['--call-graph', mode];
  const p = spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(freq), ...callGraph, '-p', String(pid), '-o', file, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => p.on('exit', resolve));
  return {
    async stop() {
      const seconds = (Date.now() - started) / 1000;
      p.kill('SIGINT');
      await exited;
      return { label, pid, seconds, freq, file, err, callGraph: callGraph.join(' ') };
    },
  };
}

export async function summarize(rec) {
  if (!rec) return null;
  const { label, pid, seconds, freq, file, err, callGraph } = rec;
  let size = 0;
  try { size = statSync(file).size; } catch { /* no file */ }
  if (!size) return { label, pid, seconds, error: `perf record wrote nothing: ${err.trim()}` };
  const base = ['report', '-i', file, '--stdio', '--no-children'];
  const summary = {
    label,
    pid,
    seconds,
    event: `cpu-clock, ${freq} Hz, ${callGraph}`,
    // Share of the worker's samples per thread and library.
    byLibrary: await run([...base, '-g', 'none', '--sort', 'comm,dso', '--percent-limit', '1'], 30),
    // Inclusive share of the functions that matter for tuning (with DWARF
    // stacks: the worker's round, its catalog look-ups, commits, the HTTP
    // client).
    inclusive: (await run(['report', '-i', file, '--stdio', '--children', '-g', 'none', '--sort', 'symbol', '--percent-limit', '0.5'], 400))
      .split('\n').filter((l) => l.startsWith('#') || INTERESTING.test(l)).slice(0, 45).join('\n'),
    // Flat, self time, all threads together.
    top: await run([...base, '-g', 'none', '--sort', 'dso,symbol', '--percent-limit', '0.7'], 40),
    // The same as `perf report --stdio --no-children | head`.
    callGraph: await run([...base, '--sort', 'dso,symbol', '--percent-limit', '3'], 100),
  };
  // BENCH_PERF_KEEP=DIR keeps the recording there for a closer look.
  if (process.env.BENCH_PERF_KEEP) {
    const kept = join(process.env.BENCH_PERF_KEEP, basename(file));
    copyFileSync(file, kept);
    summary.kept = kept;
  }
  rmSync(file, { force: true });
  return summary;
}

export function cleanupProfiles() {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
}
