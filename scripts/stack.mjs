// The local stack every test, the demo and the benchmarks run on: a private
// PostgreSQL cluster with ably_pg preloaded and the local Ably-compatible
// server, both on free loopback ports, both torn down by stop().
//
// PostgreSQL runs from the private installation scripts/pgtree.sh made for
// the major version in $PG (default 15): target/pg/<major>, or PG_BIN.
//
// As a library: `import { startStack } from './stack.mjs'`.
// As a command: `node scripts/stack.mjs` starts the stack, prints its
// settings as shell variables and keeps running until Ctrl-C.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, appendFileSync, readFileSync, rmSync, chownSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** The PostgreSQL major version under test. */
export const PG_MAJOR = process.env.PG ?? '15';
/** Binaries of the private installation with ably_pg packaged into it. */
export const PG_BIN = process.env.PG_BIN
  ?? join(ROOT, 'target', `pg/${PG_MAJOR}${process.env.PG_PROFILE === 'release' ? '-release' : ''}`, { 15: 'lib/postgresql/15/bin', 16: 'pgserver/pginstall/bin', 18: 'embedded_postgres/pginstall/bin' }[PG_MAJOR]);
export const TEST_KEY = 'appId.keyId:local-test-secret';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; throws with `what` on timeout. */
export async function waitFor(fn, { timeout = 30000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(interval);
  }
}

function asPostgres(args, opts = {}) {
  const [cmd, ...rest] = args;
  if (process.getuid && process.getuid() === 0) {
    return execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...rest], { stdio: 'pipe', ...opts });
  }
  return execFileSync(cmd, rest, { stdio: 'pipe', ...opts });
}

/** The local Ably-compatible server as a separate process. */
export class AblyServer {
  constructor({ port, keys = [TEST_KEY], args = [] } = {}) {
    this.port = port;
    this.keys = keys;
    this.args = args;
    this.bin = process.env.ABLY_SERVER_BIN ?? join(ROOT, 'target', 'debug', 'ably-server');
  }

  async start() {
    if (!this.port) this.port = await freePort();
    // Tests read history as the record of what was delivered: keep it for
    // the whole run (Ably, and the server by default, keep two minutes).
    const defaults = [['--history-ttl', '86400000'], ['--history-limit', '1000000']]
      .filter(([flag]) => !this.args.includes(flag)).flat();
    const args = ['--port', String(this.port), ...this.keys.flatMap((k) => ['--key', k]), ...defaults, ...this.args];
    this.proc = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.ABLY_SERVER_LOG ?? 'warn' } });
    this.proc.stderr.on('data', (d) => process.env.STACK_VERBOSE && process.stderr.write(d));
    await new Promise((resolve, reject) => {
      let out = '';
      const onData = (d) => {
        out += d;
        if (/listening on/.test(out)) {
          this.proc.stdout.off('data', onData);
          resolve();
        }
      };
      this.proc.stdout.on('data', onData);
      this.proc.once('exit', (code) => reject(new Error(`ably-server exited with ${code} before it was ready`)));
    });
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await exited;
  }

  /** Client options for the `ably` SDK pointing at this server. */
  clientOptions(extra = {}) {
    return { endpoint: '127.0.0.1', port: this.port, tls: false, fallbackHosts: [], useBinaryProtocol: false, ...extra };
  }
}

/** A private PostgreSQL cluster with ably_pg preloaded, owned by `postgres`. */
export class Cluster {
  constructor({ ablyPort, key = TEST_KEY, settings = {}, bin = PG_BIN } = {}) {
    this.ablyPort = ablyPort;
    this.key = key;
    this.settings = settings;
    /** The PostgreSQL binaries this cluster runs (a private installation). */
    this.bin = bin;
  }

  async start() {
    this.port = await freePort();
    this.dir = mkdtempSync(join(tmpdir(), 'ablypg-'));
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    if (process.getuid && process.getuid() === 0) chownSync(this.dir, uid, gid);
    this.data = join(this.dir, 'data');
    asPostgres([join(this.bin, 'initdb'), '-D', this.data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8']);
    // Without a local server port the cluster talks to real Ably (defaults).
    const localAbly = this.ablyPort
      ? { 'ably.rest_host': "'127.0.0.1'", 'ably.port': this.ablyPort, 'ably.tls': 'off', 'ably.fallback_hosts': "''", 'ably.request_timeout': "'3s'" }
      : {};
    const conf = {
      port: this.port,
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: `'${this.dir}'`,
      shared_preload_libraries: "'ably_pg'",
      'ably.database': "'postgres'",
      ...localAbly,
      max_connections: 100,
      fsync: process.env.STACK_FSYNC ?? 'on',
      ...this.settings,
    };
    appendFileSync(join(this.data, 'postgresql.conf'), Object.entries(conf).map(([k, v]) => `${k} = ${v}\n`).join(''));
    if (this.key) this.setKeyInConf(this.key);
    await this.startServer();
    return this;
  }

  /** The API key lives in postgresql.auto.conf, readable by postgres only. */
  setKeyInConf(key) {
    const auto = join(this.data, 'postgresql.auto.conf');
    const lines = readFileSync(auto, 'utf8').split('\n').filter((l) => !l.startsWith('ably.api_key'));
    lines.push(`ably.api_key = '${key}'`);
    writeFileSync(auto, lines.join('\n') + '\n');
  }

  /** Stops the server and keeps its data directory (see startServer). */
  stopServer(mode = 'fast') {
    asPostgres([join(this.bin, 'pg_ctl'), '-D', this.data, '-m', mode, '-w', 'stop']);
  }

  async startServer() {
    asPostgres([join(this.bin, 'pg_ctl'), '-D', this.data, '-l', join(this.dir, 'log'), '-w', 'start']);
  }

  get url() {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  psql(sql, db = 'postgres') {
    return execFileSync(join(this.bin, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', db, '-c', sql], { stdio: 'pipe' }).toString();
  }

  reload() {
    asPostgres([join(this.bin, 'pg_ctl'), '-D', this.data, 'reload']);
  }

  postmasterPid() {
    return Number(readFileSync(join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  }

  /** kill -9 of the postmaster and every backend, as a crash would. */
  async crash() {
    const pid = this.postmasterPid();
    const children = execFileSync('pgrep', ['-P', String(pid)]).toString().trim().split('\n').filter(Boolean).map(Number);
    for (const p of [pid, ...children]) {
      try { process.kill(p, 'SIGKILL'); } catch { /* gone already */ }
    }
    await waitFor(() => [pid, ...children].every((p) => { try { process.kill(p, 0); return false; } catch { return true; } }), { what: 'postgres processes to die' });
  }

  /** A streaming replica of this cluster (pg_basebackup -R), started. */
  async standby() {
    const replica = new Cluster({ ablyPort: this.ablyPort, key: null, settings: this.settings, bin: this.bin });
    replica.port = await freePort();
    replica.dir = mkdtempSync(join(tmpdir(), 'ablypg-standby-'));
    if (process.getuid && process.getuid() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(replica.dir, uid, gid);
    }
    replica.data = join(replica.dir, 'data');
    asPostgres([join(this.bin, 'pg_basebackup'), '-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-D', replica.data, '-R', '-X', 'stream', '-c', 'fast']);
    appendFileSync(join(replica.data, 'postgresql.conf'), `port = ${replica.port}\nunix_socket_directories = '${replica.dir}'\n`);
    await replica.startServer();
    return replica;
  }

  promote() {
    asPostgres([join(this.bin, 'pg_ctl'), '-D', this.data, '-w', 'promote']);
  }

  log() {
    return existsSync(join(this.dir, 'log')) ? readFileSync(join(this.dir, 'log'), 'utf8') : '';
  }

  async stop() {
    if (!this.data) return;
    try {
      asPostgres([join(this.bin, 'pg_ctl'), '-D', this.data, '-m', 'immediate', 'stop']);
    } catch { /* not running */ }
    if (!process.env.STACK_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts the local Ably server and a cluster delivering to it. */
export async function startStack({ settings = {}, serverArgs = [], keys } = {}) {
  const ably = await new AblyServer({ args: serverArgs, keys }).start();
  const cluster = await new Cluster({ ablyPort: ably.port, settings }).start();
  cluster.psql('CREATE EXTENSION ably_pg');
  return {
    ably,
    cluster,
    async stop() {
      await cluster.stop();
      await ably.stop();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const stack = await startStack();
  process.stdout.write(`DATABASE_URL=${stack.cluster.url}\nABLY_PORT=${stack.ably.port}\nABLY_KEY=${TEST_KEY}\n`);
  const shutdown = async () => { await stack.stop(); process.exit(0); };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  setInterval(() => {}, 1 << 30);
}
