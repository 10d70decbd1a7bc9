export default defineEventHandler(async (event) => {
  await requireUser(event)
  const rows = await query<{ room: unknown }>('SELECT to_jsonb(r) AS room FROM chat.rooms r ORDER BY r.created_at, r.id')
  return rows.map((r) => r.room)
})
