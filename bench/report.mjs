// bench/RESULTS.md from a results JSON of bench/run.mjs: the targets of
// issue 11 (measure / this run / previous record / target / met or not),
// then every table, the WAL breakdowns, the profiles and how each figure is
// taken. run.mjs prints the same text at the end of a run.
//
//   node bench/report.mjs [results.json] [--out bench/RESULTS.md]

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { relative, resolve, dirname } from 'node:path';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** A results path as the report names it: relative to the checkout if inside it. */
const shown = (p) => { const r = relative(ROOT, resolve(p)); return r.startsWith('..') ? resolve(p) : r; };

const DEFAULT = { batchSize: 500, maxInFlight: 8 };
const isDefault = (s) => s.batchSize === DEFAULT.batchSize && s.maxInFlight === DEFAULT.maxInFlight;

const mb = (bytes) => (bytes === null || bytes === undefined || !Number.isFinite(bytes) ? '–' : (bytes / 2 ** 20).toFixed(1));
const int = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US'));
const f1 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1));
const f2 = (x) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(2));

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(' | ')} |`;
  return [line(header), `|${widths.map((w, i) => (i === 0 ? ':' : '-') + '-'.repeat(w) + (i === 0 ? '-' : ':')).join('|')}|`, ...rows.map(line)].join('\n') + '\n';
}

/** The figures recorded before the PgQ-style queue (full run at bff62f3,
 * bench/RESULTS.md of that commit and issue 11). */
export const PREVIOUS = {
  source: 'full run at bff62f3 (the per-row DELETE queue), as recorded in bench/RESULTS.md and bench/results-full.json of 6d2366a and in issue 11',
  insertDelivering: '0.47–0.54',
  insertPaused: '0.73–0.77',
  updateDelivering: '0.56',
  workerCpu: '41–72 ms/1000 (41–72 µs/msg)',
  workerWal: '~174 B',
  deadTuples: 'grew until TRUNCATE',
  ch100: '0.40',
  ch1: '0.12 (vs concurrency 32)',
  ch10000: '0.37',
  sub1000: '10.8 / 31.3 ms',
  server5000: '18.6 / 694 ms',
  hop: '~9 ms',
};

const VARIANTS = ['insert plain', 'insert pg_notify', 'insert outbox', 'insert ably_pg', 'insert ably_pg paused', 'update plain', 'update ably_pg', 'update ably_pg paused'];

/** One row per target: [measure, now, previous, target, met]. met is true,
 * false or null (not measured in this run). */
export function targets(r) {
  const rows = [];
  const yes = (ok) => (ok === null || ok === undefined ? 'not measured' : ok ? '**met**' : '**not met**');
  const w = r.writePath;
  const last = w ? w.clients[w.clients.length - 1] : null;
  const wp = (id) => w?.summary.find((x) => x.variant === id && x.clients === last);
  const ratioRow = (label, id, target, prev) => {
    const s = wp(id);
    rows.push([`${label}, ${last ?? 16} clients, ratio to plain`, s ? f2(s.ratio) : '–', prev, `≥ ${target.toFixed(2)}`, yes(s ? s.ratio >= target : null)]);
  };
  ratioRow('insert, delivering', 'insert ably_pg', 0.9, PREVIOUS.insertDelivering);
  ratioRow('insert, paused', 'insert ably_pg paused', 0.95, PREVIOUS.insertPaused);
  ratioRow('update, delivering', 'update ably_pg', 0.85, PREVIOUS.updateDelivering);
  {
    const s = wp('insert ably_pg');
    const u = s?.workerCpuUsPerMessage;
    rows.push([`worker CPU per delivered message, insert ably_pg at ${last ?? 16} clients`, u == null ? '–' : `${f1(u)} µs (${f1(u)} ms/1000)`, PREVIOUS.workerCpu, '≤ 10 µs (10 ms/1000)', yes(u == null ? null : u <= 10)]);
  }
  {
    const d = r.delivery?.summary.find((x) => x.channels === 100)?.default;
    const lsn = d?.drainWalBytesPerMessage;
    const dump = d?.workerWalBytesPerMessage;
    const judged = [lsn, dump].filter((x) => x !== null && x !== undefined);
    const shown = d ? `${f1(lsn)} B (LSN over the drain); ${dump == null ? 'pg_waldump –' : `${f1(dump)} B (pg_waldump, worker records, cut-ahead included)`}` : '–';
    rows.push([`WAL by the worker per delivered message, drain of a ${int(r.delivery?.backlog)} backlog, 100 channels, writers stopped`, shown, PREVIOUS.workerWal, '≤ 30 B', yes(judged.length ? Math.max(...judged) <= 30 : null)]);
  }
  {
    const st = r.steady ?? [];
    const withTx = st.find((s) => s.longTx);
    if (st.length) {
      const pgstat = Math.max(...st.map((s) => s.queue.maxPartsDead));
      const exact = Math.max(0, ...st.flatMap((s) => s.exactDead.flatMap((e) => (e.parts ? Object.values(e.parts).map((p) => p.dead) : []))));
      const during = withTx?.queue.phases.withLongTx;
      rows.push([`dead tuples in queue parts (ably.queue_0..2), incl. a REPEATABLE READ transaction open ${withTx ? int(withTx.longTx.closed - withTx.longTx.opened) : '–'} s at ${int(withTx?.targetRate ?? 5000)}/s`,
        `n_dead_tup max ${int(pgstat)} (${int(during?.maxPartsDead)} while the transaction was open), pgstattuple max ${int(exact)}`, PREVIOUS.deadTuples, '0 at all times',
        yes(withTx ? pgstat === 0 && exact === 0 : null)]);
      const ph = withTx?.queue.phases;
      const bk = withTx?.queue.bookkeeping;
      // Still growing: more than 1 MB and more than 1 byte per message
      // delivered between a third into the writing phase and its end.
      const stillGrowing = bk ? bk.atEnd.bytes - bk.atThird.bytes > 2 ** 20 && bk.bytesPer1000Messages > 1000 : null;
      // The parts fill and empty with every rotation: a phase says something
      // about the bound only if it spans two rotations or more.
      // The bookkeeping tables are vacuumed, so their dead rows wait while
      // the long transaction holds the horizon: growth "with the long
      // transaction" if pgstattuple finds ten times more dead rows in them
      // while it is open than after the run.
      const exactBookDead = (withTx?.exactDead ?? []).filter((e) => e.bookkeeping);
      const deadOf = (e) => (e?.bookkeeping['ably.batches']?.dead ?? 0) + (e?.bookkeeping['ably.ticks']?.dead ?? 0);
      const bookDuring = exactBookDead.find((e) => /open/.test(e.when));
      const bookAfter = exactBookDead.find((e) => /after/.test(e.when));
      const bookGrewWithTx = bookDuring && bookAfter ? deadOf(bookDuring) > 10 * Math.max(deadOf(bookAfter), 1000) : false;
      const rotationsIn = (p) => (p ? withTx.rotations.filter((x) => x.t >= p.from && x.t <= p.to).length : 0);
      const judgeable = ph?.withLongTx && ph.withoutLongTx && rotationsIn(ph.withLongTx) >= 2 && rotationsIn(ph.withoutLongTx) >= 2;
      const partsBounded = judgeable ? ph.withLongTx.maxQueueBytes <= 1.5 * ph.withoutLongTx.maxQueueBytes + 2 ** 20 : null;
      const bounded = stillGrowing || bookGrewWithTx ? false : partsBounded;
      const size = ph?.withLongTx ? `${mb(ph.withoutLongTx?.maxQueueBytes)} MB max without, ${mb(ph.withLongTx.maxQueueBytes)} MB max with the transaction open (${rotationsIn(ph.withoutLongTx)} / ${rotationsIn(ph.withLongTx)} rotations${judgeable ? '' : ': too few to compare'})` : '–';
      const growth = bk ? `; ably.batches + ably.ticks ${mb(bk.atThird.bytes)} MB at ${int(bk.atThird.t)} s → ${mb(bk.atEnd.bytes)} MB at ${int(bk.atEnd.t)} s (+${int(bk.bytesPer1000Messages)} B per 1,000 messages)` : '';
      const exactBook = withTx?.exactDead.filter((e) => e.bookkeeping) ?? [];
      const deadBook = exactBook.length ? `; pgstattuple dead tuples in ably.batches / ably.ticks: ${exactBook.map((e) => `${int(e.bookkeeping['ably.batches']?.dead)} / ${int(e.bookkeeping['ably.ticks']?.dead)} (${e.when})`).join(', ')}` : '';
      rows.push([`queue size (parts + ably.batches + ably.ticks) bounded without VACUUM, same run`, `${size}${growth}${deadBook}`, 'bounded (2.8–46 MB at 5,000/s)', 'bounded; no growth with time or with the long transaction', bounded === null ? 'not judged (run too short)' : yes(bounded)]);
    } else {
      rows.push(['dead tuples in queue parts', '–', PREVIOUS.deadTuples, '0 at all times', yes(null)]);
    }
  }
  const ratio = (ch) => r.deliveryRatios?.find((x) => x.channels === ch);
  {
    const x = ratio(100);
    rows.push(['100 channels, backlog, ratio to the sink (same request shape, best concurrency)', x ? `${f2(x.ratio)} (${int(x.rate)} ÷ ${int(x.sinkRate)} msg/s)` : '–', PREVIOUS.ch100, '≥ 0.80', yes(x ? x.ratio >= 0.8 : null)]);
  }
  {
    const x = ratio(1);
    rows.push(['1 channel, backlog, ratio to the sink at concurrency 1, same request shape', x ? `${f2(x.ratio)} (${int(x.rate)} ÷ ${int(x.sinkRate)} msg/s)` : '–', PREVIOUS.ch1, '≥ 0.80', yes(x ? x.ratio >= 0.8 : null)]);
  }
  {
    const x = ratio(10000);
    rows.push(['10,000 channels, default settings, ratio to the sink (same request shape)', x ? `${f2(x.ratio)} (${int(x.rate)} ÷ ${int(x.sinkRate)} msg/s)` : '–', PREVIOUS.ch10000, '≥ 0.60', yes(x ? x.ratio >= 0.6 : null)]);
  }
  {
    const s = r.steady?.find((x) => x.targetRate === 1000);
    const l = s?.latencyMs.subscriber;
    rows.push([`commit → subscriber (ably SDK) at 1,000/s, p50 / p99${s ? ` (${s.seconds} s)` : ''}`, l ? `${f1(l.p50)} / ${f1(l.p99)} ms` : '–', PREVIOUS.sub1000, '≤ 3 / ≤ 15 ms', yes(l ? l.p50 <= 3 && l.p99 <= 15 : null)]);
  }
  {
    const s = r.steady?.find((x) => x.targetRate === 5000);
    const l = s?.latencyMs.server;
    rows.push([`commit → server at 5,000/s${s ? ` for ${s.seconds} s` : ''}, p99 / max (rotations included)`, l ? `${f1(l.p99)} / ${f1(l.max)} ms` : '–', PREVIOUS.server5000, '≤ 15 / ≤ 100 ms', yes(l ? l.p99 <= 15 && l.max <= 100 : null)]);
  }
  {
    const s = r.steady?.find((x) => x.targetRate === 1000) ?? r.steady?.[0];
    const l = s?.latencyMs.hop;
    rows.push([`subscriber hop (server timestamp → SDK subscriber) at ${int(s?.targetRate ?? 1000)}/s, p50`, l ? `${f1(l.p50)} ms measured, ≈ ${f1(l.p50 - 0.5)} ms (server timestamp truncated to the ms)` : '–', PREVIOUS.hop, '< 1 ms', yes(l ? l.p50 - 0.5 < 1 : null)]);
  }
  return rows;
}

export function report(r, { json = null } = {}) {
  const m = r.machine;
  let out = `# Benchmark results\n\n`;
  out += `ably_pg benchmark, **${r.mode} mode**, ${m.cpus} CPUs (${m.cpuModel}), ${m.postgres}, Node ${m.node}, commit ${m.commit}${m.worktreeDirty ? ' (modified)' : ''}, `
    + `${r.startedAt?.slice(0, 16).replace('T', ' ')} UTC, ${f1(r.elapsedSeconds / 60)} min. Every figure is in ${json ? `\`${shown(json)}\`` : 'the results JSON'}; command: \`${r.command}\`.\n`;
  if (r.loadAverage) out += `\n1-minute load average ${f2(r.loadAverage.start)} at the start and ${f2(r.loadAverage.end)} at the end of the run (${m.cpus} CPUs; above about 2 other work shared the box).\n`;
  if (r.mode !== 'full') out += `\n**Quick mode: short runs and a smaller backlog; the figures are indicative only** (and noisy if the machine was shared).\n`;
  if (r.note) out += `\n${r.note}\n`;

  out += `\n## Targets (issue 11)\n\n`;
  const rows = targets(r);
  out += table(['measure', 'this run', `previous (${'bff62f3'})`, 'target', 'met?'], rows);
  const met = rows.filter((x) => x[4] === '**met**').map((x) => x[0]);
  const notMet = rows.filter((x) => x[4] === '**not met**').map((x) => x[0]);
  const other = rows.filter((x) => x[4] !== '**met**' && x[4] !== '**not met**').map((x) => `${x[0]} (${x[4]})`);
  out += `\n**Met (${met.length}):** ${met.length ? met.join('; ') : 'none'}.\n\n**Not met (${notMet.length}):** ${notMet.length ? notMet.join('; ') : 'none'}.\n`;
  if (other.length) out += `\nNot judged: ${other.join('; ')}.\n`;
  out += `\nPrevious: ${PREVIOUS.source}. Ratios are within one run on a 2-core box where the database, the worker, the local server, pgbench and the subscriber share the cores.\n`;

  if (r.writePath) {
    const w = r.writePath;
    out += `\n## Write path: TPS (ratio to the plain table of the same round), median of ${w.rounds} × ${w.seconds} s\n\n`;
    out += table(['variant', ...w.clients.map((c) => `${c} client${c > 1 ? 's' : ''}`)], VARIANTS.map((id) => [id, ...w.clients.map((c) => {
      const s = w.summary.find((x) => x.variant === id && x.clients === c);
      return s ? `${int(s.tps)} (${f2(s.ratio)})` : '–';
    })]));
    const last = w.clients[w.clients.length - 1];
    out += `\nCost at ${last} clients (medians). WAL/tx is the whole cluster's WAL over the run ÷ transactions. Worker and server CPU: process CPU (all threads) over the run. "µs/msg" divides by the messages the worker delivered during the run (ably.status.messages_delivered). "worker WAL/msg" is pg_waldump's worker share (bench/wal.mjs) ÷ messages delivered; "queue WAL/tx" the queue rows the writers wrote.\n\n`;
    out += table(['variant', 'tps', 'WAL B/tx', 'queue WAL B/tx', 'worker CPU ms/1000 tx', 'worker CPU µs/msg', 'server CPU µs/msg', 'worker WAL B/msg', 'requests/1000 tx', 'depth at end', 'drain s'],
      VARIANTS.map((id) => {
        const s = w.summary.find((x) => x.variant === id && x.clients === last);
        if (!s) return [id, '–', '–', '–', '–', '–', '–', '–', '–', '–', '–'];
        return [id, int(s.tps), int(s.walBytesPerTx), f1(s.queueWalBytesPerTx), f1(s.workerCpuMsPer1000Tx), f1(s.workerCpuUsPerMessage), f1(s.serverCpuUsPerMessage), f1(s.workerWalBytesPerMessage),
          s.requestsPer1000Tx === undefined ? '–' : f1(s.requestsPer1000Tx), s.queuedAtEnd === undefined ? '–' : int(s.queuedAtEnd), s.drainSeconds === undefined ? '–' : f1(s.drainSeconds)];
      }));
    out += '\n"ably_pg" = worker delivering to the local server during the run; "paused" = empty API key (the worker still takes ticks of the queue, so its CPU is not zero; it cuts no batches).\n';
    const walRuns = w.runs.filter((x) => x.wal?.classes);
    if (walRuns.length) {
      out += `\nWAL by class at ${last} clients (pg_waldump, bytes per transaction, median over rounds; record types and full-page images of the last round; the worker's per message delivered). Each run follows a CHECKPOINT, so the first change of every page after it carries a full-page image.\n\n`;
      const med = (xs) => { const a = xs.filter((x) => Number.isFinite(x)).sort((p, q) => p - q); return a.length ? a[Math.floor((a.length - 1) / 2)] : null; };
      out += table(['variant', 'writers B/tx', 'queue B/tx (top record types; full-page images)', 'worker B/tx', 'other B/tx', 'worker per 1,000 msgs: commits / batches / ticks', 'worker top record types (B/msg)'],
        [...new Set(walRuns.map((x) => x.variant))].map((id) => {
          const mine = walRuns.filter((x) => x.variant === id);
          const per = (cls) => med(mine.map((x) => x.wal.classes[cls].bytes / x.transactions));
          const lastRun = mine[mine.length - 1];
          const top = Object.entries(lastRun.wal.classes.worker.byType).slice(0, 5).map(([t, v]) => `${t} ${f1(v.bytes / lastRun.delivered)}`).join(', ');
          const n = lastRun.wal.workerCounts;
          const q = lastRun.wal.classes.queue;
          const qTop = Object.entries(q.byType).slice(0, 3).map(([t, v]) => `${t} ${f1(v.bytes / lastRun.transactions)}`).join(', ');
          const fpi = (cls) => f1((lastRun.wal.classes[cls].fpiBytes ?? 0) / lastRun.transactions);
          return [id, f1(per('writers')), `${f1(per('queue'))} (${qTop}; FPI ${fpi('queue')})`, `${f1(per('worker'))} (FPI ${fpi('worker')})`, f1(per('other')), n ? `${f1(n.commitsPer1000)} / ${f1(n.batchesPer1000)} / ${f1(n.ticksPer1000)}` : '–', top];
        }));
    }
  }

  if (r.delivery) {
    const d = r.delivery;
    out += `\n## Delivery of a ${int(d.backlog)}-message backlog\n\n`;
    out += `Messages/s acknowledged by the local server between 10 % and 90 % of the backlog; the sink is a plain HTTP client sending the request shape the worker used in that run (mean channels per request and messages per channel, from ably.status.requests and the server's publish count).\n\n`;
    if (r.deliveryRatios?.length) {
      out += table(['channels', 'worker msg/s (default)', 'request shape', 'sink concurrency', 'sink msg/s', 'ratio', 'target'],
        r.deliveryRatios.map((x) => [int(x.channels), int(x.rate), x.shapeText, x.concurrencyText, int(x.sinkRate), f2(x.ratio), x.target]));
      out += '\n';
    }
    out += `Every setting tried, with the cost per message delivered (process CPU from just before the backlog is loaded to queue_depth = 0, so the cutting the paused worker does is included, ÷ backlog; WAL: pg_current_wal_lsn() from the resume to queue_depth = 0 ÷ backlog, and, for the default settings, pg_waldump's worker share from the loader's COMMIT to 1 s after the drain, which includes the batches the paused worker had already cut):\n\n`;
    out += table(['channels', 'batch_size / max_in_flight', 'sustained msg/s', 'overall msg/s', 'first ack s', 'msgs/request', 'channels/request', 'worker µs/msg', 'server µs/msg', 'drain WAL B/msg', 'worker WAL B/msg (waldump)', 'cut while paused'],
      d.runs.map((x) => [int(x.channels), `${x.batchSize} / ${x.maxInFlight}`, int(x.sustainedRate), int(x.rate), f2(x.firstAckSeconds), f1(x.messagesPerRequest), f1(x.channelsPerRequest), f1(x.workerCpuUsPerMessage), f1(x.serverCpuUsPerMessage), f1(x.drainWalBytesPerMessage), f1(x.workerWalBytesPerMessage), int(x.preCutMessages)]));
    const dumps = d.runs.filter((x) => x.wal?.classes);
    if (dumps.length) {
      out += `\nThe worker's WAL in the default drains by record type (bytes per message; pg_waldump):\n\n`;
      out += table(['channels', 'worker B/msg', 'per 1,000 msgs: commits / batches / ticks', 'FPI records', 'record types (B/msg)', 'by relation (B/msg)'],
        dumps.map((x) => {
          const c = x.wal.classes.worker;
          const n = x.workerCounts;
          return [int(x.channels), f1(c.bytes / x.backlog), n ? `${f1(n.commitsPer1000)} / ${f1(n.batchesPer1000)} / ${f1(n.ticksPer1000)}` : '–', int(c.fpiRecords),
            Object.entries(c.byType).slice(0, 7).map(([t, v]) => `${t} ${f1(v.bytes / x.backlog)}`).join(', '),
            Object.entries(c.byRelation).slice(0, 5).map(([t, v]) => `${t} ${f1(v / x.backlog)}`).join(', ')];
        }));
    }
    if (r.sink?.length) {
      out += '\nSink capacity (plain HTTP client, keep-alive, unique message ids):\n\n';
      out += table(['channels', 'for run', 'request', 'concurrency', 'msg/s'],
        r.sink.flatMap((s) => s.runs.map((x) => [int(s.channels), `${s.settings.batchSize} / ${s.settings.maxInFlight}`,
          x.channelsPerRequest === 1 ? `POST /channels/…/messages × ${x.messagesPerChannel}` : `POST /messages ${x.channelsPerRequest} ch × ${x.messagesPerChannel}`,
          x.concurrency, int(x.rate)])));
    }
  }

  if (r.steady) {
    out += `\n## Latency (ms), ${r.steady[0].channels} channels, pgbench --rate, 8 clients\n\n`;
    out += table(['rate', 'achieved tps', 'messages', 'missing', '→ server p50', 'p99', 'max', '→ subscriber p50', 'p99', 'max', 'hop p50', 'hop p99', 'hop max'],
      r.steady.map((s) => {
        const v = s.latencyMs.server ?? {};
        const l = s.latencyMs.subscriber ?? {};
        const hp = s.latencyMs.hop ?? {};
        return [`${int(s.targetRate)}/s × ${s.seconds} s`, int(s.achievedTps), int(s.received), int(s.missing), f1(v.p50), f1(v.p99), f1(v.max), f1(l.p50), f1(l.p99), f1(l.max), f1(hp.p50), f1(hp.p99), f1(hp.max)];
      }));
    out += '\nCommit = pg_xact_commit_timestamp(xmin); server = the message timestamp the local server assigns (whole ms, truncated, so up to 1 ms early); subscriber = the ably SDK realtime callback in the bench process. Hop = subscriber arrival − server timestamp (true hop ≈ 0.5 ms less).\n';
    out += '\nThe worst seconds (by commit time) and what happened near them (a rotation of the queue parts, or a truncation seen by the 1 s poll of ably.queue_state, within ±1.5 s), with the writers\' own worst transaction around that second (pgbench\'s per-second aggregate log of the seconds it overlaps; with --rate, pgbench counts from the scheduled start, so a writer that could not even start on time shows here: when it is as large as the worst commit → server, the whole box stalled, not delivery):\n\n';
    out += table(['run', 'second', 'commits', 'max → server', 'max → subscriber', 'writers\' max (pgbench)', 'rotation near', 'truncation near'],
      r.steady.flatMap((s) => s.spikes.slice(0, 5).map((x) => [`${int(s.targetRate)}/s`, x.t, int(x.commits), f1(x.maxServerMs), f1(x.maxSubscriberMs), x.writersMaxMs == null ? '–' : f1(x.writersMaxMs), x.rotationNear ? 'yes' : 'no', x.truncationNear ? 'yes' : 'no'])));
    out += `\n${r.steady.map((s) => `${int(s.targetRate)}/s: ${s.rotations.length} rotations, ${s.truncations.length} truncations seen; fewest commits in one second ${s.minCommitsPerSecond ? `${int(s.minCommitsPerSecond.commits)} (second ${s.minCommitsPerSecond.t})` : '–'}`).join('; ')}.\n`;

    out += '\n## Queue: size, depth and dead tuples\n\n';
    out += `Size = pg_total_relation_size of ably.queue_0..2 + ably.batches + ably.ticks. Dead tuples: n_dead_tup (pg_stat_all_tables, polled every sample; the statistics lag up to a second or so), and pgstattuple's exact dead_tuple_count of the parts at the listed moments.\n\n`;
    out += table(['run', 'phase', 's', 'min MB', 'max MB', 'max depth', 'max n_dead_tup parts', 'max n_dead_tup batches / ticks / queue_state', 'horizon age (xids)', 'worker µs/msg'],
      r.steady.flatMap((s) => Object.entries(s.queue.phases).filter(([, p]) => p).map(([name, p]) => [`${int(s.targetRate)}/s`, name === 'withLongTx' ? 'REPEATABLE READ open' : 'no long transaction', `${f1(p.from)}–${f1(p.to)}`, mb(p.minQueueBytes), mb(p.maxQueueBytes), int(p.maxDepth), int(p.maxPartsDead),
        `${int(p.maxDeadByTable.batches)} / ${int(p.maxDeadByTable.ticks)} / ${int(p.maxDeadByTable.queue_state)}`, int(p.maxHorizonAge), f1(p.workerCpuUsPerMessage)])));
    out += '\n' + table(['run', 'after drain MB', 'after drain depth', 'UPDATE+DELETE counted on parts', 'pgstattuple (dead/live per part)'],
      r.steady.map((s) => [`${int(s.targetRate)}/s`, mb(s.queue.finalBytes), int(s.queue.finalDepth), int(s.queue.maxPartsUpdDel),
        s.exactDead.map((e) => (e.parts ? `${e.when} at ${f1(e.t)} s: ${Object.values(e.parts).map((p) => `${p.dead}/${p.live}`).join(', ')}` : `error: ${e.error}`)).join('; ')]));
    out += '\npgstattuple of the worker\'s bookkeeping tables (dead / live tuples, table MB, free MB):\n\n';
    out += table(['run', 'when', 's', 'ably.batches', 'ably.ticks'],
      r.steady.flatMap((s) => s.exactDead.filter((e) => e.bookkeeping).map((e) => {
        const c = (x) => (x ? `${int(x.dead)} / ${int(x.live)}, ${mb(x.bytes)} MB, ${mb(x.free)} MB free` : '–');
        return [`${int(s.targetRate)}/s`, e.when, f1(e.t), c(e.bookkeeping['ably.batches']), c(e.bookkeeping['ably.ticks'])];
      })));
    out += '\nQueue size over time (MB, parts + batches + ticks; t in s):\n\n';
    out += r.steady.map((s) => {
      const every = Math.max(1, Math.ceil(s.queue.samples.length / 24));
      return `- ${int(s.targetRate)}/s: ${s.queue.samples.filter((_, i) => i % every === 0).map((x) => `${int(x.t)}: ${mb(x.queueBytes + x.batchesBytes + x.ticksBytes)}${x.longTx ? '*' : ''}`).join(', ')}${s.longTx ? ' (* REPEATABLE READ open)' : ''}`;
    }).join('\n') + '\n';
    out += `\nThe worker's bookkeeping tables (ably.batches + ably.ticks, with indexes): ${r.steady.map((s) => {
      const bk = s.queue.bookkeeping;
      if (!bk) return '';
      const st = (x) => (x ? `ins ${int(x.ins)}, del ${int(x.del)}, n_dead_tup ${int(x.dead)}, vacuums ${int(x.vacuums)}` : '–');
      return `${int(s.targetRate)}/s: ${mb(bk.atThird.bytes)} MB at ${int(bk.atThird.t)} s → ${mb(bk.atEnd.bytes)} MB at ${int(bk.atEnd.t)} s (${int(bk.bytesPer1000Messages)} B per 1,000 messages delivered), ${mb(bk.final)} MB after the drain; statistics of ably.batches: ${st(bk.batchesStats)}; of ably.ticks: ${st(bk.ticksStats)}`;
    }).join('; ')}.\n`;
    // Since 0.3.0 ably.batches is written only for re-cut batches: the
    // worker's statistics are silent only if ably.ticks shows no inserts.
    const silent = r.steady.filter((s) => s.queue.bookkeeping?.ticksStats && s.queue.bookkeeping.ticksStats.ins === 0 && (s.queue.bookkeeping.batchesStats?.ins ?? 0) === 0 && s.received > 0);
    if (silent.length) out += `\n**The worker's table statistics never reach pg_stat:** after ${silent.map((s) => `${int(s.received)} messages at ${int(s.targetRate)}/s`).join(' and ')}, pg_stat_all_tables still shows 0 inserts and 0 deletes on ably.ticks and ably.batches (the worker, a background worker, does not report its counts), so their n_dead_tup reads 0 and autovacuum never visits them; pgstattuple above shows their real dead tuples.\n`;
    const lt = r.steady.find((s) => s.longTx);
    if (lt) out += `\nThe REPEATABLE READ transaction (BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM ${lt.table}) was open from ${f1(lt.longTx.opened)} s to ${f1(lt.longTx.closed)} s of the ${int(lt.targetRate)}/s run; its xmin was ${int(lt.longTx.horizonAgeAtEnd)} transactions old when it ended.\n`;

    const windows = r.steady.filter((s) => s.window);
    if (windows.length) {
      out += '\n## Cost per message under steady load\n\n';
      out += `Over the writing phase (whole run) and a window of it. WAL: the cluster's (writers' rows, their indexes, queue rows, commits and the worker), ÷ messages delivered; pg_waldump splits the window's WAL (bench/wal.mjs).\n\n`;
      out += table(['run', 'span', 'messages', 'worker µs/msg', 'publish threads µs/msg', 'server µs/msg', 'cluster WAL B/msg', 'worker WAL B/msg', 'queue WAL B/msg', 'writers WAL B/msg', 'msgs/request'],
        r.steady.flatMap((s) => {
          const rowOf = (label, mtr, wal) => {
            const pub = Object.entries(mtr.workerThreadsCpuMs ?? {}).filter(([k]) => k.startsWith('ably-publish')).reduce((a, [, v]) => a + v, 0);
            const per = (x) => (mtr.messages ? x / mtr.messages : null);
            return [`${int(s.targetRate)}/s`, label, int(mtr.messages), f1(mtr.workerCpuUsPerMessage), f1(per(pub * 1000)), f1(mtr.serverCpuUsPerMessage), f1(mtr.walBytesPerMessage),
              wal?.classes ? f1(per(wal.classes.worker.bytes)) : '–', wal?.classes ? f1(per(wal.classes.queue.bytes)) : '–', wal?.classes ? f1(per(wal.classes.writers.bytes)) : '–', f1(mtr.messagesPerRequest)];
          };
          const out2 = [rowOf(`writing, ${f1(s.whileWriting.seconds)} s`, s.whileWriting, null)];
          if (s.window) out2.push(rowOf(`window ${f1(s.window.from)}–${f1(s.window.to)} s`, s.window.meter, s.window.wal));
          return out2;
        }));
      const wl = windows.filter((s) => s.window.wal?.classes);
      if (wl.length) {
        out += '\nThe worker\'s WAL in the window by record type (B/msg):\n\n';
        out += wl.map((s) => {
          const n = s.window.workerCounts;
          return `- ${int(s.targetRate)}/s: ${Object.entries(s.window.wal.classes.worker.byType).slice(0, 8).map(([t, v]) => `${t} ${f1(v.bytes / s.window.meter.messages)}`).join(', ')}${n ? `; per 1,000 messages: ${f1(n.commitsPer1000)} worker commits, ${f1(n.batchesPer1000)} batches, ${f1(n.ticksPer1000)} ticks` : ''}`;
        }).join('\n') + '\n';
      }
    }
  }

  if (r.idle) {
    out += `\n## Idle cost\n\nWorker CPU over ${f1(r.idle.seconds)} s with no writes: ${int(r.idle.cpuMs)} ms (${r.idle.cpuPercent.toFixed(3)} % of one core), ${f1(r.idle.mainThreadWakeupsPerSecond)} wake-ups/s.\n`;
  }

  const profiles = [...(r.delivery?.profiles ?? []), ...(r.steady ?? []).map((s) => s.window?.profile).filter(Boolean)];
  if (r.profile) {
    out += `\n## Profiles (perf)\n\n`;
    if (!r.profile.available) out += `perf not available: ${r.profile.reason}\n`;
    else {
      out += `${r.profile.version}; \`perf record -e cpu-clock -F <Hz> --call-graph dwarf -p <worker pid>\` (all threads of the worker: the main thread is "postgres", the HTTP threads "ably-publish-N"), reports with \`perf report --stdio\`. Percentages are of the worker's samples.\n`;
      for (const p of profiles) {
        out += `\n### ${p.label} (${f1(p.seconds)} s; ${p.event ?? ""})\n\n`;
        if (p.error) { out += `${p.error}\n`; continue; }
        out += 'By thread and library:\n\n```\n' + p.byLibrary + '\n```\n';
        if (p.inclusive) out += '\nInclusive (children) share of the worker\'s functions and what they call:\n\n```\n' + p.inclusive + '\n```\n';
        out += '\nSelf time, top symbols:\n\n```\n' + p.top + '\n```\n';
        out += '\nCall graph (head):\n\n```\n' + p.callGraph + '\n```\n';
      }
    }
  }

  const aborted = [
    ...(r.writePath?.runs ?? []).filter((x) => x.aborted).map((x) => `write path, ${x.variant}, ${x.clients} clients, round ${x.round + 1}: ${x.aborted}`),
    ...(r.steady ?? []).flatMap((x) => x.aborted.map((a) => `steady ${x.targetRate}/s: ${a}`)),
  ];
  if (aborted.length) out += `\n## pgbench runs that ended early\n\n${aborted.map((a) => `- ${a.replaceAll('\n', ' / ')}`).join('\n')}\n`;
  out += NOTES;
  return out;
}

const NOTES = `
## How the figures are taken

- **Stack.** \`bench/run.mjs\` starts private PostgreSQL clusters (fsync on, synchronous_commit on, shared_buffers 256MB, max_wal_size 16GB, checkpoint_timeout 1h, a CHECKPOINT before every measured run) with ably_pg preloaded, and the local Ably-compatible server (\`examples/ably-server\`, release build). Default ably_pg settings unless a table says otherwise.
- **Undelivered.** Queue rows stay in their part until the whole part is truncated, so nothing reads \`ably.queue\` as "undelivered": the benchmark waits for \`SELECT queue_depth FROM ably.status\` = 0 (committed messages not acknowledged: those of recorded batches plus rows not cut yet). Pausing is \`ALTER SYSTEM SET ably.api_key = ''\` + reload (state \`no-api-key\`).
- **CPU per message.** utime + stime of the worker process (all threads; pid = \`ably.status.worker_pid\`) from \`/proc/<pid>/stat\` over the phase, ÷ the phase's \`ably.status.messages_delivered\` delta, in µs (µs/msg = ms per 1,000 messages). The local server the same way with its pid. Per-thread figures come from \`/proc/<pid>/task/*/stat\` (main thread \`postgres\`, HTTP threads \`ably-publish-N\`).
- **WAL per message.** Backlog drain (writers stopped): \`pg_current_wal_lsn()\` difference from the resume to queue_depth = 0, ÷ backlog; the bench itself only reads and \`backlog\` has autovacuum off, so that is the worker's WAL, except batches cut while paused ("cut while paused": 0 since a paused worker cuts nothing; before that it cut up to its cut-ahead, ≥ 20,000 messages). So the drain is also read with pg_waldump from the loader's COMMIT to 1 s after the drain (the truncation included) and the worker's records counted (bench/wal.mjs: records on ably.batches, ticks, queue_state, dead_letters, batch_id_seq, every record of a transaction that wrote one of them, and Storage records). The target is judged on the larger of the two. Phases with writers: the whole cluster's WAL ÷ messages, which includes the writers' table rows, their indexes, the queue rows and commits; pg_waldump splits it into writers / queue / worker / other.
- **Dead tuples.** \`n_dead_tup\` of ably.queue_0..2 (and ably's other tables) from pg_stat_all_tables every sample: each backend flushes its counts about once a second when idle (pg_stat_force_next_flush() is per backend), so the bench polls and reads the maximum; \`pgstattuple\` counts the dead tuples of the parts, ably.batches and ably.ticks exactly 3 s before the REPEATABLE READ transaction ends and after the run. n_tup_upd + n_tup_del of the parts are shown as well (always 0 if rows are never updated or deleted). The REPEATABLE READ transaction is \`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM steady_5000\` on its own connection (a snapshot, no transaction id), 5 minutes into a 10-minute run at 5,000/s (quick: 20 s of 40 s); the age of its backend_xmin is sampled to show it held the horizon.
- **Queue size.** pg_total_relation_size of ably.queue_0..2 + ably.batches + ably.ticks every sample; "bounded" is judged from the maxima with and without the long transaction (only if each phase spans two rotations or more) and from whether ably.batches + ably.ticks keep growing (more than 1 MB and more than 1 byte per message delivered between a third into the writing phase and its end) or hold, by pgstattuple, ten times more dead rows while the long transaction is open than after the run (they need VACUUM, which the horizon holds back).
- **Delivery ratios.** The worker's sustained rate (10–90 % of the backlog acknowledged, from the server's stored-message counter polled every 50 ms) over the rate a plain Node HTTP client (keep-alive, unique ids) gets from the server with the worker's mean request shape of that run. 1 channel: the sink at concurrency 1 (the worker sends one request at a time per channel); 100 and 10,000 channels: the best of concurrencies 8, 32 and max_in_flight.
- **Latency.** pgbench --rate with 8 clients writes rows spread over 10 channels; long runs are 60 s segments of fresh connections. Commit = pg_xact_commit_timestamp(xmin) (track_commit_timestamp on), arrival at the server = its message timestamp, at the subscriber = the ably SDK callback; same machine, same clock (the drift between the bench's clock and the wall clock is in the JSON, clockSkewMs).
- **Profiles** (\`--profile\`, or \`scripts/bench.sh --profile\`, which installs linux-perf if perf is missing): \`perf record -e cpu-clock --call-graph dwarf\` at 299 Hz on the worker process (all threads) during each default-settings drain (from just before the backlog is loaded) and the first 20 s of the measured window of each steady run. The summary keeps the share per thread and library, the inclusive share of the worker's functions, the self-time top and the head of \`perf report --stdio --no-children\`. BENCH_PERF_CALL_GRAPH=fp records plain -g stacks; BENCH_PERF_KEEP=DIR keeps the perf.data files.
`;

function main() {
  const args = process.argv.slice(2);
  let input = null;
  let out = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--out') out = args[++i];
    else input = args[i];
  }
  const r = JSON.parse(readFileSync(input ?? new URL('./results.json', import.meta.url), 'utf8'));
  const text = report(r, { json: input });
  if (out) writeFileSync(out, text);
  else process.stdout.write(text);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
