// Input rules shared by the routes; the database enforces the same limits.
export const MAX_BODY_CHARS = 4000

/** The reactions the app offers (psql may add any short text). */
export const REACTIONS = ['👍', '❤️', '😂', '🎉', '😮', '👀'] as const

export function validBody(raw: unknown): string {
  const body = typeof raw === 'string' ? raw.trim() : ''
  if (body === '') throw createError({ statusCode: 400, statusMessage: 'A message cannot be empty' })
  const length = [...body].length
  if (length > MAX_BODY_CHARS) {
    throw createError({
      statusCode: 400,
      statusMessage: `A message is at most ${MAX_BODY_CHARS} characters; this one has ${length}`,
    })
  }
  return body
}

export function validId(raw: unknown): string {
  const id = String(raw ?? '')
  if (!/^[1-9][0-9]{0,17}$/.test(id)) throw createError({ statusCode: 400, statusMessage: 'Invalid message id' })
  return id
}

export function validClientKey(raw: unknown): string | null {
  if (raw === undefined || raw === null) return null
  const key = String(raw).toLowerCase()
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(key)) {
    throw createError({ statusCode: 400, statusMessage: 'Invalid client key' })
  }
  return key
}

export function validReaction(raw: unknown): string {
  if (typeof raw !== 'string' || !(REACTIONS as readonly string[]).includes(raw)) {
    throw createError({ statusCode: 400, statusMessage: `A reaction is one of ${REACTIONS.join(' ')}` })
  }
  return raw
}

// Room ids: lower-case letters, marks and digits of any script, and '-' (a
// stricter form of the CHECK on chat.rooms.id).
const ROOM_ID = /^[\p{L}\p{N}\p{M}](?:[\p{L}\p{N}\p{M}-]{0,39})$/u

export function validRoomId(raw: unknown): string {
  const id = String(raw ?? '')
  if (!ROOM_ID.test(id) || [...id].length > 40 || id !== id.toLowerCase()) {
    throw createError({ statusCode: 404, statusMessage: 'No such room' })
  }
  return id
}

/** The room id for a title: "Café Talk" -> "cafe-talk", "日本語 チャット" -> "日本語-チャット". */
export function roomSlug(title: string): string {
  const folded = title
    .toLowerCase()
    .normalize('NFKD')
    // Accents on Latin letters go (é -> e); marks of other scripts stay.
    .replace(/([a-z])\p{M}+/gu, '$1')
    .normalize('NFC')
  const slug = folded.replace(/[^\p{L}\p{N}\p{M}]+/gu, '-').replace(/^-+/, '')
  return [...slug].slice(0, 40).join('').replace(/-+$/, '')
}

/** A route parameter, percent-decoded (h3 leaves it encoded). */
export function routeParam(event: Parameters<typeof getRouterParam>[0], name: string): string {
  return getRouterParam(event, name, { decode: true }) ?? ''
}
