// ALTER EXTENSION ably_pg UPDATE from each release, the way a DBA does it: a
// database of that release with rules, delivered, in-flight (sent, not acknowledged)
// and queued messages and a dead letter; the current package installed and
// the server restarted; the update (through every version's script) run
// while writers keep writing. Afterwards every row's versions arrive exactly
// once and in order, the dead letter is kept, the rules work, and the
// database's schema equals a fresh install of the current version with the
// same rules.
//
// Needs ABLY_PG_RELEASE_010 and ABLY_PG_RELEASE_020: the folders
// `scripts/build-release.sh 0.1.0 15` (and 0.2.0) printed, each release built
// from the commit scripts/releases names.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, cpSync, mkdtempSync, chmodSync, copyFileSync, renameSync, existsSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import * as Ably from 'ably';
import { AblyServer, Cluster, freePort, waitFor, TEST_KEY, PG_MAJOR } from '../../scripts/stack.mjs';

const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const RELEASES = [
  ['0.1.0', process.env.ABLY_PG_RELEASE_010],
  ['0.2.0', process.env.ABLY_PG_RELEASE_020],
];
const VERSION = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8').match(/^version = "(.*)"/m)[1];

/** A proxy in front of the local server: passes requests through, or
 *  forwards them and drops the reply (Ably has the messages, the worker
 *  never hears so), or refuses them. */
class Proxy {
  constructor(target) {
    this.target = target;
    this.mode = 'pass';
    this.swallowed = 0;
  }

  async start() {
    this.port = await freePort();
    this.server = createServer((req, res) => {
      if (this.mode === 'refuse') return req.socket.destroy();
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const up = request({ host: '127.0.0.1', port: this.target, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
          const body = [];
          upRes.on('data', (c) => body.push(c));
          upRes.on('end', () => {
            if (this.mode === 'swallow') {
              this.swallowed += 1;
              return req.socket.destroy();
            }
            res.writeHead(upRes.statusCode, upRes.headers);
            res.end(Buffer.concat(body));
          });
        });
        up.on('error', () => req.socket.destroy());
        up.end(Buffer.concat(chunks));
      });
    });
    await new Promise((r) => this.server.listen(this.port, '127.0.0.1', r));
    return this;
  }

  stop() {
    this.server?.closeAllConnections?.();
    return new Promise((r) => (this.server ? this.server.close(r) : r()));
  }
}

/** A private PostgreSQL with the current version packaged in, and an old
 *  release's library and script laid over it (the state before the new
 *  package is installed). */
function makeTree(FROM, RELEASE) {
  const source = join(ROOT, 'target', 'pg', PG_MAJOR);
  const tree = mkdtempSync(join(tmpdir(), 'ablypg-upgrade-tree-'));
  chmodSync(tree, 0o755);
  cpSync(source, tree, { recursive: true });
  const lib = join(tree, 'lib/postgresql/15/lib');
  const ext = join(tree, 'share/postgresql/15/extension');
  copyFileSync(join(lib, 'ably_pg.so'), join(tree, 'ably_pg-current.so'));
  copyFileSync(join(RELEASE, 'usr/lib/postgresql/15/lib/ably_pg.so'), join(lib, 'ably_pg.so'));
  copyFileSync(join(RELEASE, `usr/share/postgresql/15/extension/ably_pg--${FROM}.sql`), join(ext, `ably_pg--${FROM}.sql`));
  return { tree, bin: join(tree, 'lib/postgresql/15/bin'), lib };
}

for (const [FROM, RELEASE] of RELEASES) {
  const env = `ABLY_PG_RELEASE_${FROM.replaceAll('.', '').slice(0, 3)}`;
  let ably;
  let proxy;
  let cluster;
  after(async () => {
    await cluster?.stop();
    await proxy?.stop();
    await ably?.stop();
  });

  test(`${FROM} → ${VERSION} while writers run: nothing lost or duplicated, rules work, schema as a fresh install`, { skip: !RELEASE || PG_MAJOR !== '15' ? `needs ${env} (PostgreSQL 15)` : false, timeout: 600000 }, async () => {
    assert.ok(existsSync(join(RELEASE, 'usr/lib/postgresql/15/lib/ably_pg.so')), `${FROM} is built in ${RELEASE}`);
    ably = await new AblyServer().start();
    proxy = await new Proxy(ably.port).start();
    const { bin, lib, tree } = makeTree(FROM, RELEASE);
    cluster = await new Cluster({ ablyPort: proxy.port, bin, settings: { 'ably.request_timeout': "'1s'" } }).start();
    const sql = (text, db) => cluster.psql(text, db).trim();

    // --- the old release --------------------------------------------------------
    sql(`CREATE EXTENSION ably_pg VERSION '${FROM}'`);
    sql(`CREATE TABLE items (id int PRIMARY KEY, room int, v int NOT NULL)`);
    sql(`SELECT ably.publish_table('items', 'items')`);
    sql(`SELECT ably.publish_table('items', 'room:{room}', events => '{insert}', condition => 'v >= 0')`);
    const depth = () => Number(sql(`SELECT queue_depth FROM ably.status`));
    sql(`INSERT INTO items SELECT g, 1, 0 FROM generate_series(1, 20) g`);
    await waitFor(() => depth() === 0, { what: `${FROM} delivering` });
    // A dead letter: no room for the room channel.
    sql(`INSERT INTO items VALUES (21, NULL, 0)`);
    // Sent and stored by Ably, but the acknowledgement is lost: in flight.
    proxy.mode = 'swallow';
    sql(`UPDATE items SET v = 1 WHERE id <= 20`);
    await waitFor(() => proxy.swallowed > 0 && Number(sql(`SELECT count(*) FROM ably.batches`)) > 0, { what: 'a batch in flight' });
    // Not sent at all: queued.
    proxy.mode = 'refuse';
    sql(`INSERT INTO items SELECT g, 2, 0 FROM generate_series(22, 221) g`);
    assert.ok(depth() > 0);
    assert.equal(sql(`SELECT count(*) FROM ably.dead_letters`), '1');

    // --- the current package, a restart ------------------------------------------
    // (the old release may not stop on a fast shutdown while it retries; a crash
    // leaves the same durable state.)
    cluster.stopServer('immediate');
    copyFileSync(join(tree, 'ably_pg-current.so'), join(lib, 'ably_pg.so.new'));
    renameSync(join(lib, 'ably_pg.so.new'), join(lib, 'ably_pg.so'));
    await cluster.startServer();
    await waitFor(() => sql(`SELECT state FROM ably.status`) === 'needs-update', { what: 'the new library waiting for the update' });

    // Writers keep writing through the update.
    const pool = new pg.Pool({ connectionString: cluster.url, max: 4 });
    pool.on('error', () => {});
    const expected = new Map(); // id → committed versions in order
    for (let id = 1; id <= 221; id += 1) expected.set(id, id <= 20 ? [0, 1] : [0]);
    let writing = true;
    let nextId = 1000;
    const writer = async (n) => {
      while (writing) {
        if (n === 0) {
          const id = nextId++;
          await pool.query('INSERT INTO items VALUES ($1, 3, 0)', [id]);
          expected.set(id, [0]);
        } else {
          const id = 1 + Math.floor(Math.random() * 221);
          if (id === 21) continue;
          const { rows } = await pool.query('UPDATE items SET v = v + 1 WHERE id = $1 RETURNING v', [id]);
          expected.get(id).push(rows[0].v);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const writers = [0, 1, 2].map((n) => writer(n).catch((e) => { throw e; }));
    await waitFor(() => nextId > 1010, { what: 'writers running' });
    sql(`ALTER EXTENSION ably_pg UPDATE`);
    assert.equal(sql(`SELECT extversion FROM pg_extension WHERE extname = 'ably_pg'`), VERSION);
    await waitFor(() => nextId > 1030, { what: 'writers running after the update' });
    proxy.mode = 'pass';
    await waitFor(() => nextId > 1060, { what: 'writers running while delivery resumes' });
    writing = false;
    await Promise.all(writers);
    await waitFor(() => depth() === 0, { timeout: 120000, what: 'everything delivered' });
    await pool.end();

    // Every row's versions, exactly once, in order (the lost-ack batch was
    // re-sent under its old ids and de-duplicated by the server).
    const rest = new Ably.Rest({ key: TEST_KEY, ...ably.clientOptions() });
    const got = new Map();
    let page = await rest.channels.get('items').history({ direction: 'forwards', limit: 1000 });
    for (;;) {
      for (const m of page.items) {
        const row = m.data.new ?? m.data.old;
        if (!got.has(row.id)) got.set(row.id, []);
        got.get(row.id).push(row.v);
      }
      if (!page.hasNext()) break;
      page = await page.next();
    }
    // v only grows, so ascending order is commit order (the writers'
    // replies may arrive in another order).
    for (const [id, versions] of expected) {
      assert.deepEqual(got.get(id), [...versions].sort((a, b) => a - b), `row ${id}'s versions`);
    }
    assert.equal(got.size, expected.size);
    assert.equal(sql(`SELECT count(*) FROM ably.dead_letters`), '1', 'the dead letter is kept');
    const rooms = await rest.channels.get('room:2').history({ limit: 1000 });
    assert.equal(rooms.items.length, 200, 'the conditioned rule published rows 22..221');
    assert.equal(sql(`SELECT state FROM ably.status`), 'running');

    // --- the same as a fresh install ----------------------------------------
    sql(`CREATE DATABASE fresh`);
    sql(`CREATE EXTENSION ably_pg`, 'fresh');
    sql(`CREATE TABLE items (id int PRIMARY KEY, room int, v int NOT NULL)`, 'fresh');
    sql(`SELECT ably.publish_table('items', 'items')`, 'fresh');
    sql(`SELECT ably.publish_table('items', 'room:{room}', events => '{insert}', condition => 'v >= 0')`, 'fresh');
    const schema = (db) => execFileSync(join(bin, 'pg_dump'), ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '-s', db])
      .toString().split('\n').filter((l) => !l.startsWith('--') && !/^\\(un)?restrict /.test(l)).join('\n');
    assert.equal(schema('postgres'), schema('fresh'), 'pg_dump --schema-only');
    // pg_dump does not show the extension's own objects: compare those too.
    const members = (db) => sql(`
      SELECT string_agg(d, E'\\n' ORDER BY d) FROM (
        SELECT pg_describe_object(e.classid, e.objid, e.objsubid) || ' ' ||
               CASE e.classid
                 WHEN 'pg_proc'::regclass THEN pg_get_functiondef(e.objid) || coalesce(p.proacl::text, '')
                 WHEN 'pg_class'::regclass THEN coalesce(c.relacl::text, '') || coalesce(c.reloptions::text, '') ||
                   (SELECT coalesce(string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull ||
                           ':' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), ''), ',' ORDER BY a.attnum), '')
                      FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                     WHERE a.attrelid = e.objid AND a.attnum > 0 AND NOT a.attisdropped) ||
                   coalesce(pg_get_indexdef(e.objid), '') ||
                   (SELECT coalesce(string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY k.conname), '') FROM pg_constraint k WHERE k.conrelid = e.objid)
                 WHEN 'pg_event_trigger'::regclass THEN (SELECT evtevent || coalesce(evttags::text, '') || evtfoid::regproc FROM pg_event_trigger WHERE oid = e.objid)
                 ELSE ''
               END AS d
          FROM pg_depend e
          LEFT JOIN pg_proc p ON e.classid = 'pg_proc'::regclass AND p.oid = e.objid
          LEFT JOIN pg_class c ON e.classid = 'pg_class'::regclass AND c.oid = e.objid
         WHERE e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e'
           AND e.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'ably_pg')) s`, db);
    assert.equal(members('postgres'), members('fresh'), "the extension's objects");
    const configs = (db) => sql(`SELECT extconfig::regclass[]::text || coalesce(extcondition::text, '') FROM pg_extension WHERE extname = 'ably_pg'`, db);
    assert.equal(configs('postgres'), configs('fresh'), 'what pg_dump dumps of it');
  });
}
