// Shared pieces of the security suite: a stack (private cluster with ably_pg
// preloaded + the local Ably server, both real processes), connections as
// any role, the server log read incrementally, and error assertions.
//
// Every connection the harness itself makes as a superuser pins
// search_path = pg_catalog, pg_temp in its startup options (which win over
// ALTER DATABASE/ROLE … SET), so that a shadow an attacker planted can only
// ever be reached through ably_pg's own code, never through the test's
// queries. Connections made as other roles (connect({ user }), as(),
// psql({ user })) take that role's own settings, as an attacker's would.
//
// Run one file: ABLY_SERVER_BIN=$PWD/../target/debug/ably-server
//   node --test security/capture.test.mjs   (SECTEST_VERBOSE=1 prints how
// each attack step ended; PG_BIN=… runs against another PostgreSQL tree).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as Ably from 'ably';
import pg from 'pg';
import { AblyServer, Cluster, PG_BIN, TEST_KEY, waitFor } from '../../scripts/stack.mjs';
import { foreignRuns, describeRuns } from './shadows.mjs';

export { waitFor, TEST_KEY, PG_BIN };

export const PINNED = '-c search_path=pg_catalog,pg_temp';

/**
 * Starts the local Ably server and a cluster delivering to it.
 * options: settings (postgresql.conf), keys (server keys), key (the
 * cluster's ably.api_key), serverArgs.
 */
export async function securityStack({ settings = {}, keys, key = TEST_KEY, serverArgs = [] } = {}) {
  const ably = await new AblyServer({ keys, args: serverArgs }).start();
  const cluster = await new Cluster({ ablyPort: ably.port, key, settings }).start();
  const clients = [];
  const s = {
    ably,
    cluster,
    /** A connected pg.Client as `user` in `db` (superuser: pinned path). */
    async connect({ user = 'postgres', db = 'postgres', pinned = user === 'postgres', password } = {}) {
      const c = new pg.Client({
        host: '127.0.0.1', port: cluster.port, user, database: db, password,
        options: pinned ? PINNED : undefined,
      });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    /** One statement as the superuser with a pinned search_path. */
    async su(sql, params, db = 'postgres') {
      const c = await s.connect({ db });
      try {
        return await c.query(sql, params);
      } finally {
        await c.end();
      }
    },
    /** One statement as `user` on a fresh connection (its own settings apply). */
    async as(user, sql, params, db = 'postgres') {
      const c = await s.connect({ user, db, pinned: false });
      try {
        return await c.query(sql, params);
      } finally {
        await c.end();
      }
    },
    /** psql as `user` (stdin from `input`), e.g. for COPY FROM STDIN. */
    psql(sql, { user = 'postgres', db = 'postgres', input, pinned = user === 'postgres' } = {}) {
      return execFileSync(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', user, '-d', db, '-c', sql], {
        stdio: 'pipe', input, env: { ...process.env, PGOPTIONS: pinned ? PINNED : '' },
      }).toString();
    },
    /** pg_ctl restart (fast): every process, the worker included, reconnects. */
    restart() {
      const args = [join(PG_BIN, 'pg_ctl'), '-D', cluster.data, '-l', join(cluster.dir, 'log'), '-w', '-m', 'fast', 'restart'];
      if (process.getuid && process.getuid() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...args], { stdio: 'pipe' });
      else execFileSync(args[0], args.slice(1), { stdio: 'pipe' });
    },
    /** A position in the server log; logSince(mark) is what came after. */
    logMark() {
      return cluster.log().length;
    },
    logSince(mark) {
      return cluster.log().slice(mark);
    },
    /** Every message in a channel's history at the local server, oldest first. */
    async history(channel) {
      const rest = new Ably.Rest({ key: TEST_KEY, ...ably.clientOptions() });
      const out = [];
      let page = await rest.channels.get(channel).history({ direction: 'forwards', limit: 1000 });
      for (;;) {
        out.push(...page.items);
        if (!page.hasNext()) break;
        page = await page.next();
      }
      return out;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
      await cluster.stop();
      await ably.stop();
    },
  };
  return s;
}

/** Runs `fn`, returning the error it threw (or null). */
export async function errorOf(fn) {
  try {
    await (typeof fn === 'function' ? fn() : fn);
    return null;
  } catch (e) {
    return e;
  }
}

/** Asserts that `promise` fails with SQLSTATE `code` (and a HINT if asked). */
export async function rejectsWith(promise, code, { hint = false, message } = {}) {
  const e = await errorOf(promise);
  assert.ok(e, `expected SQLSTATE ${code}${message ? ` (${message})` : ''}, but the statement succeeded`);
  assert.equal(e.code, code, `expected SQLSTATE ${code}${message ? ` (${message})` : ''}, got ${e.code}: ${e.message}`);
  if (hint) assert.ok(e.hint && e.hint.length > 0, `expected a HINT with ${code}: ${e.message}`);
  return e;
}

/** Creates a LOGIN role; extra is appended (e.g. 'NOINHERIT'). */
export async function createRole(s, name, extra = '') {
  await s.su(`CREATE ROLE ${name} LOGIN ${extra}`);
}

/**
 * Makes sure `ably_publisher` exists and may run ably.publish, so that a
 * test about something else also runs on code that predates the role
 * (where publish_table is executable by PUBLIC anyway). Harmless where
 * CREATE EXTENSION already did it.
 */
export async function ensurePublisherRole(s, db) {
  await s.su(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'ably_publisher') THEN
        CREATE ROLE ably_publisher NOLOGIN;
      END IF;
    END $$`, [], db);
  await s.su(`GRANT EXECUTE ON FUNCTION ably.publish(text, text, jsonb) TO ably_publisher`, [], db);
}

export async function isSuperuser(s, role) {
  const { rows } = await s.su(`SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1`, [role]);
  return rows[0]?.rolsuper === true;
}

/** Asserts that no shadow (of `creators`, or anyone's) ran as someone else since `mark`. */
export function assertNoForeignRuns(s, mark, creators) {
  const runs = foreignRuns(s.logSince(mark), creators);
  assert.equal(runs.length, 0, `attacker code ran with someone else's rights:\n${describeRuns(runs)}`);
}

/**
 * waitFor, but a timeout first reports any shadow that ran as someone else
 * since `mark` (the likelier reason the awaited effect never came).
 */
export async function waitForOrExplain(s, fn, { mark, creators, ...options }) {
  try {
    return await waitFor(fn, options);
  } catch (e) {
    const runs = foreignRuns(s.logSince(mark), creators);
    if (runs.length) assert.fail(`attacker code ran with someone else's rights (then: ${e.message}):\n${describeRuns(runs)}`);
    throw e;
  }
}
