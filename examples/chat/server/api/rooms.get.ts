// The room list with this session's unread messages per room: messages by
// others, not deleted, after the session's read marker (or, for a room never
// opened, written since the session began). Up to 100 ids per room, so the
// browser can keep counting exactly as live events arrive.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const rows = await query<{ room: unknown }>(
    `SELECT to_jsonb(r) || jsonb_build_object(
              'last_read_id', coalesce(rd.last_read_id, 0),
              'unread_ids', array(
                SELECT m.id FROM chat.messages m
                 WHERE m.room_id = r.id AND m.id > coalesce(rd.last_read_id, 0)
                   AND (rd.last_read_id IS NOT NULL OR m.created_at >= to_timestamp($2::double precision / 1000))
                   AND m.deleted_at IS NULL AND m.author_id IS DISTINCT FROM $1
                 ORDER BY m.id DESC LIMIT 100)) AS room
       FROM chat.rooms r
       LEFT JOIN chat.room_reads rd ON rd.room_id = r.id AND rd.user_id = $1
      ORDER BY r.created_at, r.id`,
    [user.id, user.joined],
  )
  return rows.map((r) => r.room)
})
