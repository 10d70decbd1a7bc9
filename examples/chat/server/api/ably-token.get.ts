// authUrl for ably-js: a TokenRequest signed inside the database by ably_pg
// (the API key never leaves Postgres). The token's clientId is the session's
// random id (never the display name, which anyone may also choose). It may
// subscribe to the room list and to every room channel (for live unread
// counts) and use presence in rooms; it cannot publish, so browsers only ever
// receive what ably_pg published.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const capability = { 'chat-rooms': ['subscribe'], 'chat:*': ['subscribe', 'presence'] }
  const [row] = await query<{ token_request: unknown }>(
    'SELECT ably.create_token_request($1, $2::jsonb) AS token_request',
    [user.id, JSON.stringify(capability)],
  )
  setHeader(event, 'cache-control', 'no-store')
  return row!.token_request
})
