// Posts a message as this session. With a client key (a UUID the browser
// picks per message), a retry of a send whose answer was lost returns the
// message already stored instead of posting it twice.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const room = validRoomId(routeParam(event, 'id'))
  const input = (await readBody<{ body?: unknown; clientKey?: unknown }>(event)) ?? {}
  const body = validBody(input.body)
  const clientKey = validClientKey(input.clientKey)
  const rows = await query<{ message: unknown }>(
    `INSERT INTO chat.messages (room_id, author, author_id, body, client_key)
     SELECT r.id, $2, $3, $4, $5 FROM chat.rooms r WHERE r.id = $1
     ON CONFLICT (client_key) DO NOTHING
     RETURNING to_jsonb(messages.*) AS message`,
    [room, user.name, user.id, body, clientKey],
  ).catch((err) => {
    if (isCheckViolation(err)) throw createError({ statusCode: 400, statusMessage: 'Message rejected by the database' })
    throw err
  })
  if (rows.length > 0) {
    setResponseStatus(event, 201)
    return rows[0]!.message
  }
  if (clientKey) {
    const [earlier] = await query<{ message: unknown; mine: boolean }>(
      `SELECT to_jsonb(m) AS message, m.author_id IS NOT DISTINCT FROM $2 AND m.room_id = $3 AS mine
         FROM chat.messages m WHERE m.client_key = $1`,
      [clientKey, user.id, room],
    )
    if (earlier?.mine) return earlier.message
    if (earlier) throw createError({ statusCode: 409, statusMessage: 'That client key belongs to another message' })
  }
  throw createError({ statusCode: 404, statusMessage: 'No such room' })
})
