// Moves this session's read marker for a room forward (never back).
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const room = validRoomId(routeParam(event, 'id'))
  const upTo = validId((await readBody<{ upTo?: unknown }>(event))?.upTo)
  const [row] = await query<{ last_read_id: string }>(
    `INSERT INTO chat.room_reads (user_id, room_id, last_read_id)
     SELECT $1, r.id, $3 FROM chat.rooms r WHERE r.id = $2
     ON CONFLICT (user_id, room_id)
     DO UPDATE SET last_read_id = greatest(chat.room_reads.last_read_id, excluded.last_read_id)
     RETURNING last_read_id`,
    [user.id, room, upTo],
  )
  if (!row) throw createError({ statusCode: 404, statusMessage: 'No such room' })
  return { lastReadId: Number(row.last_read_id) }
})
