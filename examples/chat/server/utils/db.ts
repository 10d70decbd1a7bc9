// The one connection pool, and the two ways routes touch the database: a plain
// query, or a transaction that records which chat user is acting (the
// messages trigger reads chat.actor_id and chat.actor to attribute edits).
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

export async function asActor<T>(actor: ChatUser, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await getPool().connect()
  try {
    await client.query('BEGIN')
    await client.query(`SELECT set_config('chat.actor_id', $1, true), set_config('chat.actor', $2, true)`, [actor.id, actor.name])
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

/** A UNIQUE violation. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string })?.code === '23505'
}
