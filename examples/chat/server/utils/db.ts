// The one connection pool, and the two ways routes touch the database: a plain
// query, or a transaction that records which chat user is acting (the
// messages trigger reads chat.actor to attribute edit history).
import pg from 'pg'

let pool: pg.Pool | undefined

function getPool(): pg.Pool {
  if (!pool) {
    const connectionString = process.env.DATABASE_URL
    if (!connectionString) throw new Error('DATABASE_URL is not set')
    pool = new pg.Pool({ connectionString, max: 10 })
  }
  return pool
}

export async function query<T extends pg.QueryResultRow = any>(text: string, params: unknown[] = []): Promise<T[]> {
  const { rows } = await getPool().query<T>(text, params)
  return rows
}

export async function asActor<T>(actor: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await getPool().connect()
  try {
    await client.query('BEGIN')
    await client.query(`SELECT set_config('chat.actor', $1, true)`, [actor])
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
}

/** A CHECK violation means input the route's own validation let through. */
export function isCheckViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === '23514'
}
