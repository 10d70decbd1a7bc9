// `--profile`: perf record -g on the delivery worker (all its threads)
// during a phase, summarized as text: the flat profile by thread, library
// and symbol (perf report --stdio --no-children), by library, and the top of
// the call graph. The raw perf.data files are deleted. Hardware counters are
// not available in this VM, so the event is the cpu-clock software timer.

import { spawn, execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
export function startProfile(pid, label, { freq = 999 } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), 'ablypg-bench-perf-'));
  const file = join(dir, `${label.replace(/[^\w.-]+/g, '_')}.data`);
  const started = Date.now();
  const p = spawn('perf', ['record', '-e', 'cpu-clock', '-F', String(freq), '-g', '-p', String(pid), '-o', file, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => p.on('exit', resolve));
  return {
    async stop() {
      const seconds = (Date.now() - started) / 1000;
      p.kill('SIGINT');
      await exited;
      return { label, pid, seconds, freq, file, err };
    },
  };
}

export async function summarize(rec) {
  if (!rec) return null;
  const { label, pid, seconds, freq, file, err } = rec;
  let size = 0;
  try { size = statSync(file).size; } catch { /* no file */ }
  if (!size) return { label, pid, seconds, error: `perf record wrote nothing: ${err.trim()}` };
  const base = ['report', '-i', file, '--stdio', '--no-children'];
  const publishers = Array.from({ length: 64 }, (_, i) => `ably-publish-${i}`).join(',');
  const summary = {
    label,
    pid,
    seconds,
    event: `cpu-clock, ${freq} Hz, -g (frame pointers)`,
    // Share of the worker's samples per thread and library.
    byLibrary: await run([...base, '-g', 'none', '--sort', 'comm,dso', '--percent-limit', '1'], 30),
    // Flat, all threads together, then the main thread and the HTTP threads
    // apart (percentages stay shares of all the worker's samples).
    top: await run([...base, '-g', 'none', '--sort', 'dso,symbol', '--percent-limit', '0.7'], 40),
    mainThread: await run([...base, '-g', 'none', '--comms', 'postgres', '--sort', 'dso,symbol', '--percent-limit', '0.5'], 30),
    publisherThreads: await run([...base, '-g', 'none', '--comms', publishers, '--sort', 'dso,symbol', '--percent-limit', '0.5'], 25),
    // The same as `perf report --stdio --no-children | head`.
    callGraph: await run([...base, '--sort', 'dso,symbol', '--percent-limit', '3'], 100),
  };
  rmSync(file, { force: true });
  return summary;
}

export function cleanupProfiles() {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
}
