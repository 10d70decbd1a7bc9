// Test fixture: a TCP proxy in front of the server, so a test can cut a
// client's network at will — every socket through it dies at once, like a
// lost link, and new connections are refused until it is restored — while
// other clients keep talking to the server directly.
import net from 'node:net';
import { once } from 'node:events';

/** Starts a proxy to 127.0.0.1:`targetPort`; resolves to { port, cut(), restore(), close() }. */
export async function startProxy(targetPort) {
  const sockets = new Set();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
    }
    const end = () => {
      for (const s of [client, upstream]) {
        s.destroy();
        sockets.delete(s);
      }
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: server.address().port,
    /** Drops every connection through the proxy and refuses new ones. */
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    async close() {
      this.cut();
      await new Promise((r) => server.close(r));
    },
  };
}
