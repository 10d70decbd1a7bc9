// Shared pieces of the delivery tests: a started stack, a pg pool, and
// subscribers that collect what the local Ably server delivers.

import * as Ably from 'ably';
import pg from 'pg';
import { startStack, waitFor, TEST_KEY } from '../../scripts/stack.mjs';

export { waitFor, TEST_KEY };

export async function stack(options) {
  const s = await startStack(options);
  s.newPool = () => {
    s.pool = new pg.Pool({ connectionString: s.cluster.url, max: 20 });
    // idle clients see the connection drop when a test crashes the cluster
    s.pool.on('error', () => {});
  };
  s.newPool();
  const stop = s.stop;
  s.stop = async () => {
    await s.pool.end().catch(() => {});
    await stop();
  };
  s.query = (sql, params) => s.pool.query(sql, params);
  return s;
}

/** Every message in a channel's history at the local server, oldest first. */
export async function history(s, channel) {
  const rest = new Ably.Rest({ key: TEST_KEY, ...s.ably.clientOptions() });
  const out = [];
  let page = await rest.channels.get(channel).history({ direction: 'forwards', limit: 1000 });
  for (;;) {
    out.push(...page.items);
    if (!page.hasNext()) break;
    page = await page.next();
  }
  return out;
}

/** A realtime subscriber that records every message it receives. */
export async function subscriber(s, channelName, options = {}) {
  const client = new Ably.Realtime({ key: TEST_KEY, ...s.ably.clientOptions(), ...options });
  const channel = client.channels.get(channelName);
  const received = [];
  await channel.subscribe((m) => received.push(m));
  return { client, channel, received, close: () => client.close() };
}

export async function status(s) {
  const { rows } = await s.query('SELECT * FROM ably.status');
  return rows[0];
}

/** Messages not yet delivered (queue rows stay until their part is truncated). */
export async function queueDepth(s) {
  const { rows } = await s.query('SELECT queue_depth::int AS n FROM ably.status');
  return rows[0].n;
}
