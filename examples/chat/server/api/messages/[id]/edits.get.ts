// Earlier versions of a message, oldest first.
export default defineEventHandler(async (event) => {
  await requireUser(event)
  const id = validId(getRouterParam(event, 'id'))
  const rows = await query<{ edit: unknown }>(
    `SELECT jsonb_build_object('version', e.version, 'body', e.body, 'edited_by', e.edited_by, 'edited_at', e.edited_at) AS edit
       FROM chat.message_edits e WHERE e.message_id = $1 ORDER BY e.version`,
    [id],
  )
  return rows.map((r) => r.edit)
})
