// Changes a user may make to their own messages. The author check is part of
// the UPDATE itself, so a request for someone else's message changes nothing;
// only then is the row looked at again to say why.
export async function updateOwnMessage(user: string, id: string, set: string, params: unknown[] = []) {
  const result = await asActor(user, (client) =>
    client.query<{ message: unknown }>(
      `UPDATE chat.messages m SET ${set}
        WHERE m.id = $1 AND m.author = $2 AND m.deleted_at IS NULL
        RETURNING to_jsonb(m.*) AS message`,
      [id, user, ...params],
    ),
  ).catch((err) => {
    if (isCheckViolation(err)) throw createError({ statusCode: 400, statusMessage: 'Message rejected by the database' })
    throw err
  })
  if (result.rows.length > 0) return result.rows[0]!.message

  const [existing] = await query<{ author: string; deleted: boolean }>(
    'SELECT author, deleted_at IS NOT NULL AS deleted FROM chat.messages WHERE id = $1',
    [id],
  )
  if (!existing) throw createError({ statusCode: 404, statusMessage: 'No such message' })
  if (existing.author !== user) throw createError({ statusCode: 403, statusMessage: 'You can only change your own messages' })
  throw createError({ statusCode: 409, statusMessage: 'This message has been deleted' })
}
