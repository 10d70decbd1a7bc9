export default defineEventHandler(async (event) => {
  await requireUser(event)
  const id = validRoomId(routeParam(event, 'id'))
  const [row] = await query<{ room: unknown }>('SELECT to_jsonb(r) AS room FROM chat.rooms r WHERE r.id = $1', [id])
  if (!row) throw createError({ statusCode: 404, statusMessage: 'No such room' })
  return row.room
})
