// What the WAL of a phase is made of: pg_waldump over an LSN range of the
// benchmark's cluster, each record attributed to
//   worker  – the delivery worker's bookkeeping: records on ably.batches,
//             ably.ticks, ably.queue_state, ably.dead_letters, the batch
//             sequence (and their indexes and TOAST), every record of a
//             transaction that wrote one of those (its COMMIT, a Standby
//             LOCK for a TRUNCATE, ...), and Storage records (the
//             truncation of a queue part: only the worker truncates);
//   queue   – the writers' queue rows: records on ably.queue_0..2, their
//             indexes and TOAST, and ably.queue_id_seq;
//   writers – everything else written by a transaction (the published
//             tables, their indexes, the writers' COMMITs), and records of no
//             transaction on other relations (pruning of the published
//             tables);
//   other   – records of no transaction on no relation (checkpoints,
//             RUNNING_XACTS, ...).
// Records with no transaction id on ably's relations (pruning, hint-bit full
// page images) go to the class of the relation. Full-page images are counted
// apart, per class.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { PG_BIN } from '../scripts/stack.mjs';

/** relfilenode → { name, cls } for every relation in schema ably (with
 * indexes, TOAST tables and their indexes). */
async function ablyRelations(h) {
  const { rows } = await h.query(`
    WITH rels AS (
      SELECT c.oid, c.oid::regclass::text AS name, c.relname AS base FROM pg_class c WHERE c.relnamespace = 'ably'::regnamespace
      UNION ALL
      SELECT t.oid, c.oid::regclass::text || ' (toast)', c.relname FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
       WHERE c.relnamespace = 'ably'::regnamespace
      UNION ALL
      SELECT i.indexrelid, c.oid::regclass::text || ' (toast index)', c.relname FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid
       WHERE c.relnamespace = 'ably'::regnamespace
    )
    SELECT name, base, pg_relation_filenode(oid)::text AS node FROM rels WHERE pg_relation_filenode(oid) IS NOT NULL`);
  const map = new Map();
  for (const r of rows) {
    const queue = /^queue(_\d+)?(_txid_idx|_txid_idx\d*)?$/.test(r.base) || r.base === 'queue_id_seq' || /^queue_\d+_/.test(r.base);
    map.set(r.node, { name: r.name, cls: queue ? 'queue' : 'worker' });
  }
  return map;
}

const LINE = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*(\d+), lsn: \S+, prev \S+, desc: (\S+)(.*)$/;
const REL = /rel \d+\/\d+\/(\d+)|base\/\d+\/(\d+)/g;

function newClass() {
  return { bytes: 0, records: 0, fpiRecords: 0, fpiBytes: 0, byType: {}, byRelation: {}, recordsByRelation: {}, insertsByRelation: {} };
}

function add(c, type, bytes, fpi, relName) {
  c.bytes += bytes;
  c.records += 1;
  if (fpi) {
    c.fpiRecords += 1;
    // The whole record, image included.
    c.fpiBytes += bytes;
  }
  const t = (c.byType[type] ??= { records: 0, bytes: 0 });
  t.records += 1;
  t.bytes += bytes;
  if (relName) {
    c.byRelation[relName] = (c.byRelation[relName] ?? 0) + bytes;
    c.recordsByRelation[relName] = (c.recordsByRelation[relName] ?? 0) + 1;
    if (type === 'Heap/INSERT' || type === 'Heap/INSERT+INIT') c.insertsByRelation[relName] = (c.insertsByRelation[relName] ?? 0) + 1;
  }
}

/**
 * Breaks down the WAL between two LSNs (text, as pg_current_wal_lsn()
 * returns). Reads at most `maxBytes` of WAL (from the start): a longer range
 * is cut and marked `truncated`. Returns null if pg_waldump is missing.
 */
export async function walBreakdown(h, startLsn, endLsn, { maxBytes = 1024 * 2 ** 20 } = {}) {
  const rels = await ablyRelations(h);
  const span = Number((await h.one('SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::float8 AS b', [startLsn, endLsn])).b);
  let end = endLsn;
  let truncated = false;
  if (span > maxBytes) {
    end = (await h.one('SELECT ($1::pg_lsn + $2::numeric)::text AS l', [startLsn, maxBytes])).l;
    truncated = true;
  }
  const classes = { worker: newClass(), queue: newClass(), writers: newClass(), other: newClass() };
  const workerXids = new Set();
  // Records of a transaction that touch no ably relation, held until it is
  // known whether the transaction is the worker's: xid → [[type, bytes, fpi]].
  const held = new Map();
  const args = ['-p', join(h.stack.cluster.data, 'pg_wal'), '-s', startLsn, '-e', end];
  const p = spawn(join(PG_BIN, 'pg_waldump'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  const lines = createInterface({ input: p.stdout });
  let parsed = 0;
  for await (const line of lines) {
    const m = LINE.exec(line);
    if (!m) continue;
    parsed += 1;
    const [, rmgr, , tot, txText, first, rest] = m;
    const bytes = Number(tot);
    const tx = Number(txText);
    const type = `${rmgr}/${first.replace(/[,:]$/, '')}`;
    const fpi = / FPW| FPI/.test(rest) || first === 'FPI' || first === 'FPI_FOR_HINT';
    let cls = null;
    let relName = null;
    let anyRel = false;
    for (const r of rest.matchAll(REL)) {
      anyRel = true;
      const info = rels.get(r[1] ?? r[2]);
      if (!info) continue;
      // A record on a worker relation makes it the worker's, whatever else.
      if (cls !== 'worker') { cls = info.cls; relName = info.name; }
    }
    if (rmgr === 'Storage') { cls = 'worker'; }
    if (cls === 'worker' && tx !== 0) workerXids.add(tx);
    if (cls === null && tx !== 0) {
      let list = held.get(tx);
      if (!list) held.set(tx, (list = []));
      list.push([type, bytes, fpi]);
      continue;
    }
    // No transaction, no ably relation: pruning or a hint-bit image of a
    // published table counts for the writers; the rest is the cluster's.
    add(classes[cls ?? (anyRel ? 'writers' : 'other')], type, bytes, fpi, relName);
  }
  const code = await new Promise((resolve) => (p.exitCode !== null ? resolve(p.exitCode) : p.on('exit', resolve)));
  for (const [tx, list] of held) {
    const c = workerXids.has(tx) ? classes.worker : classes.writers;
    for (const [type, bytes, fpi] of list) add(c, type, bytes, fpi, null);
  }
  if (parsed === 0) {
    return { startLsn, endLsn: end, truncated, error: `pg_waldump exited with ${code}: ${err.trim().split('\n').slice(-2).join(' / ')}` };
  }
  const total = Object.values(classes).reduce((a, c) => a + c.bytes, 0);
  for (const c of Object.values(classes)) {
    c.byType = Object.fromEntries(Object.entries(c.byType).sort((a, b) => b[1].bytes - a[1].bytes));
    c.byRelation = Object.fromEntries(Object.entries(c.byRelation).sort((a, b) => b[1] - a[1]));
  }
  return {
    startLsn,
    endLsn: end,
    truncated,
    spanBytes: span,
    recordBytes: total,
    records: parsed,
    workerTransactions: workerXids.size,
    // pg_waldump stops with an error at the end of the WAL written so far.
    waldumpExit: code,
    classes,
  };
}

/** Per 1,000 messages: the worker's transactions (COMMIT records), the
 * batches and ticks it recorded (heap inserts into ably.batches and
 * ably.ticks). */
export function workerCounts(b, messages) {
  if (!b?.classes || !messages) return null;
  const w = b.classes.worker;
  const k = 1000 / messages;
  return {
    commitsPer1000: ((w.byType['Transaction/COMMIT']?.records ?? 0) + (w.byType['Transaction/COMMIT_PREPARED']?.records ?? 0)) * k,
    batchesPer1000: (w.insertsByRelation['ably.batches'] ?? 0) * k,
    ticksPer1000: (w.insertsByRelation['ably.ticks'] ?? 0) * k,
    fpiRecords: w.fpiRecords,
  };
}

/** A short text line: bytes per message of each class, and the worker's
 * largest record types. */
export function walSummary(b, messages) {
  if (!b || b.error || !messages) return b?.error ?? '–';
  const per = (x) => (x / messages).toFixed(1);
  const top = Object.entries(b.classes.worker.byType).slice(0, 6).map(([t, v]) => `${t} ${per(v.bytes)}`).join(', ');
  const n = workerCounts(b, messages);
  return `worker ${per(b.classes.worker.bytes)} B/msg (${top}; per 1,000 messages ${n.commitsPer1000.toFixed(0)} worker commits, ${n.batchesPer1000.toFixed(0)} batches, ${n.ticksPer1000.toFixed(0)} ticks); queue ${per(b.classes.queue.bytes)}; writers ${per(b.classes.writers.bytes)}; other ${per(b.classes.other.bytes)}`;
}
