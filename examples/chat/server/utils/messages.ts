// Changes a user may make to their own messages. The ownership check (the
// session id that wrote the message) is part of the UPDATE itself, so a
// request for someone else's message changes nothing; only then is the row
// looked at again to say why.
export async function updateOwnMessage(user: ChatUser, id: string, set: string, params: unknown[] = []) {
  const result = await asActor(user, (client) =>
    client.query<{ message: unknown }>(
      `UPDATE chat.messages m SET ${set}
        WHERE m.id = $1 AND m.author_id = $2 AND m.deleted_at IS NULL
        RETURNING to_jsonb(m.*) AS message`,
      [id, user.id, ...params],
    ),
  ).catch((err) => {
    if (isCheckViolation(err)) throw createError({ statusCode: 400, statusMessage: 'Message rejected by the database' })
    throw err
  })
  if (result.rows.length > 0) return result.rows[0]!.message

  const [existing] = await query<{ mine: boolean; deleted: boolean }>(
    'SELECT author_id IS NOT DISTINCT FROM $2 AS mine, deleted_at IS NOT NULL AS deleted FROM chat.messages WHERE id = $1',
    [id, user.id],
  )
  if (!existing) throw createError({ statusCode: 404, statusMessage: 'No such message' })
  if (!existing.mine) throw createError({ statusCode: 403, statusMessage: 'You can only change your own messages' })
  throw createError({ statusCode: 409, statusMessage: 'This message has been deleted' })
}

/** The reactions of some messages, as rows shaped like ably_pg's `new`. */
export async function reactionsOf(messageIds: number[]): Promise<unknown[]> {
  if (messageIds.length === 0) return []
  const rows = await query<{ reaction: unknown }>(
    `SELECT to_jsonb(x) AS reaction FROM chat.reactions x
      WHERE x.message_id = ANY($1::bigint[]) ORDER BY x.created_at, x.user_id`,
    [messageIds],
  )
  return rows.map((r) => r.reaction)
}
