// authUrl for ably-js: a TokenRequest signed inside the database by ably_pg
// (the API key never leaves Postgres). The token's clientId is the session's
// name, and its capability covers one room's channel (subscribe + presence) or,
// without ?room, only the room list.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const { room: rawRoom } = getQuery(event)
  let capability: Record<string, string[]>
  if (rawRoom === undefined || rawRoom === '') {
    capability = { 'chat-rooms': ['subscribe'] }
  } else {
    const room = validRoomId(rawRoom)
    const [exists] = await query('SELECT 1 FROM chat.rooms WHERE id = $1', [room])
    if (!exists) throw createError({ statusCode: 404, statusMessage: 'No such room' })
    capability = { [`chat:${room}`]: ['subscribe', 'presence'] }
  }
  const [row] = await query<{ token_request: unknown }>(
    'SELECT ably.create_token_request($1, $2::jsonb) AS token_request',
    [user, JSON.stringify(capability)],
  )
  setHeader(event, 'cache-control', 'no-store')
  return row!.token_request
})
