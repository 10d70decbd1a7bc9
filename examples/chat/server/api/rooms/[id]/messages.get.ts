// One page of a room's history, oldest first: the newest `limit` messages, or
// those just before `before` (a message id) when paging back, with their
// reactions. Rows are shaped with to_jsonb, exactly like the `new` row in an
// ably_pg event, so the browser merges both the same way.
export default defineEventHandler(async (event) => {
  await requireUser(event)
  const room = validRoomId(routeParam(event, 'id'))
  const q = getQuery(event)
  const before = q.before === undefined ? null : validId(q.before)
  const limit = Math.min(Math.max(Number.parseInt(String(q.limit ?? '50'), 10) || 50, 1), 500)
  const rows = await query<{ message: { id: number } }>(
    `SELECT to_jsonb(m) AS message FROM chat.messages m
      WHERE m.room_id = $1 AND ($2::bigint IS NULL OR m.id < $2)
      ORDER BY m.id DESC LIMIT $3`,
    [room, before, limit + 1],
  )
  const hasOlder = rows.length > limit
  const messages = rows.slice(0, limit).reverse().map((r) => r.message)
  return { messages, reactions: await reactionsOf(messages.map((m) => m.id)), hasOlder }
})
