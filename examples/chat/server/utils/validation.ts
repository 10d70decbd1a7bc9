// Input rules shared by the routes; the database enforces the same limits.
export const MAX_BODY_CHARS = 4000

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

export function validRoomId(raw: unknown): string {
  const id = String(raw ?? '')
  if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(id)) throw createError({ statusCode: 404, statusMessage: 'No such room' })
  return id
}
