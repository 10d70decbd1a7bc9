// Creates a room from a title; the id is a slug of it (letters of any script
// kept, so the address stays readable). Creating a room that already exists
// just returns it, so "create" doubles as "go to".
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const { title: raw } = (await readBody<{ title?: unknown }>(event)) ?? {}
  const title = typeof raw === 'string' ? raw.trim().normalize('NFC') : ''
  if ([...title].length < 1 || [...title].length > 80) {
    throw createError({ statusCode: 400, statusMessage: 'A room title is 1 to 80 characters' })
  }
  const id = roomSlug(title) || `room-${Date.now().toString(36)}`
  const [row] = await query<{ room: unknown; created: boolean }>(
    `WITH ins AS (
       INSERT INTO chat.rooms (id, title, created_by) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO NOTHING RETURNING *
     )
     SELECT to_jsonb(r) AS room, true AS created FROM ins r
     UNION ALL
     SELECT to_jsonb(r), false FROM chat.rooms r WHERE r.id = $1 AND NOT EXISTS (SELECT 1 FROM ins)`,
    [id, title, user.name],
  )
  // Only when another request created the same room at this very moment.
  if (!row) throw createError({ statusCode: 409, statusMessage: 'That room is being created; try again' })
  setResponseStatus(event, row.created ? 201 : 200)
  return row.room
})
