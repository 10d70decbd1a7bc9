// A small HTTP proxy the reliability tests put between the cluster and the
// local Ably server, to play what sits in front of Ably in real life: a
// captive portal answering 200 "ok", a load balancer's 404 page, a sink
// that accepts the connection and never answers, or a host that is down.
//
//   const proxy = await new Proxy().start();        // before the cluster
//   stack({ settings: { 'ably.port': proxy.port } });
//   proxy.target = s.ably.port;                     // then pass through
//   proxy.mode = 'ok200';                           // answer for Ably
//
// Every request is recorded with the message ids its body carries, so a
// test can tell what was sent, when and in which mode.

import { createServer, request as httpRequest } from 'node:http';
import { stack } from './helpers.mjs';

/** The answers the proxy can give instead of Ably's. */
export const MODES = {
  /** Forward to the local Ably server and relay its reply. */
  pass: null,
  /** A captive portal or misconfigured host: 200 with a plain-text body. */
  ok200: { status: 200, type: 'text/plain', body: 'ok' },
  /** A stub that answers 201 with an empty JSON object. */
  created201: { status: 201, type: 'application/json', body: '{}' },
  /** A load balancer's error page. */
  html404: { status: 404, type: 'text/html', body: '<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>nginx</p></body></html>' },
  /** Accept the request and never answer (until the proxy stops). */
  hang: 'hang',
  /** Forward to Ably, which stores the messages, and never answer: the
   *  acknowledgement is lost. */
  swallow: 'swallow',
  /** Close the connection without an answer: the host is down. */
  reset: 'reset',
};

/** The messages in a publish body, as { id, data }. */
export function messagesOf(body) {
  let doc;
  try {
    doc = JSON.parse(body);
  } catch {
    return [];
  }
  const out = [];
  for (const item of Array.isArray(doc) ? doc : [doc]) {
    const messages = item && item.messages !== undefined ? [].concat(item.messages) : [item];
    for (const m of messages) if (m && m.id) out.push({ id: m.id, data: m.data });
  }
  return out;
}

/** Message ids in a publish body: a channel publish (array or one message) or a batch publish. */
export function messageIdsOf(body) {
  return messagesOf(body).map((m) => m.id);
}

/** Channel names a publish addresses: from the path, or a batch publish body. */
export function channelsOf(url, body) {
  const m = /^\/channels\/([^/?]*)\/messages/.exec(url ?? '');
  if (m) {
    try {
      return [decodeURIComponent(m[1])];
    } catch {
      return [m[1]];
    }
  }
  try {
    const doc = JSON.parse(body);
    const specs = Array.isArray(doc) ? doc : [doc];
    return specs.flatMap((spec) => (spec && spec.channels ? [].concat(spec.channels) : []));
  } catch {
    return [];
  }
}

export class Proxy {
  constructor({ mode = 'pass', target = null } = {}) {
    this.mode = mode;
    this.target = target;
    /** { at, mode, method, url, ids, channels, status } for every request
     *  (and its messages, { id, data }, while keepMessages is set). */
    this.requests = [];
    this.keepMessages = false;
    /** If set, (entry) => a mode for that request, instead of this.mode. */
    this.route = null;
    this.hung = new Set();
    this.sockets = new Set();
  }

  async start() {
    // Long request lines pass (a channel name too long for a URL is the
    // local server's to refuse, not the proxy's).
    this.server = createServer({ maxHeaderSize: 1 << 20 }, (req, res) => this.handle(req, res));
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }

  /** Requests that carried publishes (POST with message ids). */
  publishes() {
    return this.requests.filter((r) => r.method === 'POST' && r.ids.length > 0);
  }

  handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const entry = { at: Date.now(), mode: this.mode, method: req.method, url: req.url, ids: messageIdsOf(text), channels: channelsOf(req.url, text), status: null };
      if (this.keepMessages) entry.messages = messagesOf(text);
      if (this.route) entry.mode = this.route(entry) ?? this.mode;
      const mode = entry.mode;
      this.requests.push(entry);
      const canned = MODES[mode];
      if (canned === 'hang' || canned === 'swallow') {
        this.hung.add(res);
        res.on('close', () => this.hung.delete(res));
        if (canned === 'swallow' && this.target) {
          const headers = { ...req.headers, host: `127.0.0.1:${this.target}` };
          const upstream = httpRequest({ host: '127.0.0.1', port: this.target, method: req.method, path: req.url, headers }, (up) => {
            entry.status = `swallowed ${up.statusCode}`;
            up.resume();
          });
          upstream.on('error', () => { entry.status = 'upstream-error'; });
          upstream.end(body);
        }
        return;
      }
      if (canned === 'reset') {
        entry.status = 'reset';
        req.socket.destroy();
        return;
      }
      if (canned) {
        entry.status = canned.status;
        res.writeHead(canned.status, { 'content-type': canned.type, 'content-length': Buffer.byteLength(canned.body) });
        res.end(canned.body);
        return;
      }
      if (!this.target) {
        entry.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('no target');
        return;
      }
      const headers = { ...req.headers, host: `127.0.0.1:${this.target}` };
      const upstream = httpRequest({ host: '127.0.0.1', port: this.target, method: req.method, path: req.url, headers }, (up) => {
        entry.status = up.statusCode;
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => {
        entry.status = 'upstream-error';
        req.socket.destroy();
      });
      upstream.end(body);
    });
  }

  async stop() {
    for (const res of this.hung) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    if (this.server) await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A stack whose cluster reaches the local Ably server through a Proxy
 * (s.proxy, passing through until a test changes its mode).
 */
export async function proxiedStack(options = {}) {
  const proxy = await new Proxy().start();
  let s;
  try {
    s = await stack({ ...options, settings: { 'ably.port': proxy.port, ...(options.settings ?? {}) } });
  } catch (e) {
    await proxy.stop();
    throw e;
  }
  proxy.target = s.ably.port;
  s.proxy = proxy;
  const stop = s.stop;
  s.stop = async () => {
    await stop();
    await proxy.stop();
  };
  return s;
}
