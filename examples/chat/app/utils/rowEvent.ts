// The messages ably_pg publishes for row changes, and the check every
// subscriber applies before trusting one: the browser acts only on changes
// to the tables it expects, on the channel it expects them on. Anything else
// that reaches the channel (an ably.publish call, a rule some other table
// got) is ignored.
import type * as Ably from 'ably'

export interface ChatMessage {
  id: number
  room_id: string
  author: string
  author_id: string | null
  body: string
  created_at: string
  edited_at: string | null
  edited_by: string | null
  deleted_at: string | null
  deleted_by: string | null
  client_key: string | null
  version: number
}

export interface Reaction {
  message_id: number
  room_id: string
  user_id: string
  user_name: string
  emoji: string
  created_at: string
}

export interface Room {
  id: string
  title: string
  created_by: string
  created_at: string
}

interface Rows {
  messages: ChatMessage
  reactions: Reaction
  rooms: Room
}

/** The `data` of every message ably_pg publishes for a row change. */
export interface RowEvent<T extends keyof Rows = keyof Rows> {
  event: 'insert' | 'update' | 'delete'
  schema: 'chat'
  table: T
  new: Rows[T] | null
  old: Rows[T] | null
}

export type AnyRowEvent = { [T in keyof Rows]: RowEvent<T> }[keyof Rows]

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function rowFits(table: keyof Rows, row: unknown, roomId: string | null): boolean {
  if (!isObject(row)) return false
  switch (table) {
    case 'messages':
      return typeof row.id === 'number' && row.room_id === roomId && typeof row.version === 'number' && typeof row.body === 'string'
    case 'reactions':
      return typeof row.message_id === 'number' && row.room_id === roomId && typeof row.user_id === 'string' && typeof row.emoji === 'string'
    case 'rooms':
      return typeof row.id === 'string' && typeof row.title === 'string'
  }
}

/**
 * The row event carried by `msg` if it is a change to one of `tables` in
 * schema `chat` (rows of a room's tables must belong to `roomId`), else a
 * reason to ignore it.
 */
export function parseRowEvent(
  msg: Ably.InboundMessage,
  tables: readonly (keyof Rows)[],
  roomId: string | null,
): { event: AnyRowEvent } | { ignored: string } {
  const d = msg.data as unknown
  if (!isObject(d) || !['insert', 'update', 'delete'].includes(d.event as string)) return { ignored: 'not a row change' }
  if (d.schema !== 'chat' || !tables.includes(d.table as keyof Rows)) {
    return { ignored: `unexpected table ${String(d.schema)}.${String(d.table)}` }
  }
  const table = d.table as keyof Rows
  const needNew = d.event !== 'delete'
  const needOld = d.event !== 'insert'
  if ((needNew && !rowFits(table, d.new, roomId)) || (needOld && d.old !== null && d.old !== undefined && !rowFits(table, d.old, roomId))) {
    return { ignored: 'row does not belong here' }
  }
  if (d.event === 'delete' && !rowFits(table, d.old, roomId)) return { ignored: 'row does not belong here' }
  return { event: d as unknown as AnyRowEvent }
}
