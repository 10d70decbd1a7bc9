// Adds (on: true) or removes (on: false) this session's reaction to a
// message. The row change, published by ably_pg, is what updates every
// browser, this one included.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const id = validId(getRouterParam(event, 'id'))
  const input = (await readBody<{ emoji?: unknown; on?: unknown }>(event)) ?? {}
  const emoji = validReaction(input.emoji)
  if (typeof input.on !== 'boolean') throw createError({ statusCode: 400, statusMessage: '"on" is true or false' })
  const [message] = await query<{ deleted: boolean }>(
    'SELECT deleted_at IS NOT NULL AS deleted FROM chat.messages WHERE id = $1',
    [id],
  )
  if (!message) throw createError({ statusCode: 404, statusMessage: 'No such message' })
  if (message.deleted) throw createError({ statusCode: 409, statusMessage: 'This message has been deleted' })
  if (input.on) {
    await query(
      `INSERT INTO chat.reactions (message_id, user_id, user_name, emoji)
       SELECT m.id, $2, $3, $4 FROM chat.messages m WHERE m.id = $1 AND m.deleted_at IS NULL
       ON CONFLICT DO NOTHING`,
      [id, user.id, user.name, emoji],
    )
  } else {
    await query('DELETE FROM chat.reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3', [id, user.id, emoji])
  }
  return { messageId: Number(id), emoji, on: input.on }
})
