// Checks the reliability tests share: errors of a statement, a drained
// queue, per-row order of what arrived, and the server log.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { waitFor, queueDepth, status } from './helpers.mjs';
import { PG_BIN } from '../../scripts/stack.mjs';

/**
 * For test files whose tests each start a stack of their own: returns
 * `track(stack)`, which hands the stack back and stops it after the file's
 * tests, whatever they did to it.
 */
export function stopAfterwards() {
  const stacks = [];
  after(async () => {
    for (const s of stacks) await s.stop().catch(() => {});
  });
  return async (s) => {
    stacks.push(s);
    return s;
  };
}

/** The error a promise rejects with, or null. */
export async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e;
  }
}

/** Nothing queued, nothing in flight (the worker holds everything delivered or dead-lettered). */
export async function drained(s, { timeout = 30000 } = {}) {
  await waitFor(async () => (await queueDepth(s)) === 0 && Number((await status(s)).in_flight_batches) === 0, { timeout, what: 'queue drained' });
}

/** Whether a process exists. */
export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/**
 * Asserts that every row's versions arrived exactly once and in order:
 * `expected` maps a row id to its versions (e.g. 1 = insert, 2, 3 = updates).
 * Messages carry `data.new.id` and `data.new.version`.
 */
export function assertVersions(messages, expected, label = '') {
  const seen = new Map([...expected.keys()].map((id) => [id, []]));
  const stray = [];
  for (const m of messages) {
    const id = m.data?.new?.id;
    if (!seen.has(id)) stray.push(id);
    else seen.get(id).push(m.data.new.version);
  }
  const wrong = [];
  for (const [id, versions] of expected) {
    if (JSON.stringify(seen.get(id)) !== JSON.stringify(versions)) wrong.push(`row ${id}: got [${seen.get(id)}], want [${versions}]`);
  }
  assert.deepEqual(stray, [], `${label}messages for rows never written`);
  assert.equal(new Set(messages.map((m) => m.id)).size, messages.length, `${label}a message id arrived twice`);
  assert.ok(wrong.length === 0, `${label}${wrong.length} of ${expected.size} rows did not arrive exactly once in order, e.g.\n  ${wrong.slice(0, 8).join('\n  ')}`);
}

/** Lines of the server log written after byte `from`. */
export function logSince(s, from = 0) {
  return s.cluster.log().slice(from).split('\n');
}

/** pg_ctl as the postgres user (like scripts/stack.mjs does). */
export function pgCtl(cluster, args) {
  const cmd = [join(PG_BIN, 'pg_ctl'), '-D', cluster.data, ...args];
  if (process.getuid && process.getuid() === 0) return execFileSync('runuser', ['-u', 'postgres', '--', ...cmd], { stdio: 'pipe' }).toString();
  return execFileSync(cmd[0], cmd.slice(1), { stdio: 'pipe' }).toString();
}
