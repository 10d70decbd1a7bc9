export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const room = validRoomId(getRouterParam(event, 'id'))
  const body = validBody((await readBody<{ body?: unknown }>(event))?.body)
  const rows = await query<{ message: unknown }>(
    `INSERT INTO chat.messages (room_id, author, body)
     SELECT r.id, $2, $3 FROM chat.rooms r WHERE r.id = $1
     RETURNING to_jsonb(messages.*) AS message`,
    [room, user, body],
  ).catch((err) => {
    if (isCheckViolation(err)) throw createError({ statusCode: 400, statusMessage: 'Message rejected by the database' })
    throw err
  })
  if (rows.length === 0) throw createError({ statusCode: 404, statusMessage: 'No such room' })
  setResponseStatus(event, 201)
  return rows[0]!.message
})
