// Who is acting. The display name lives in a sealed session cookie, so every
// write is attributed to the session's name, never to a name the browser sends.
import { randomBytes } from 'node:crypto'
import type { H3Event } from 'h3'

// Without a configured secret, sessions last as long as this server process.
const password = process.env.CHAT_SESSION_SECRET || randomBytes(32).toString('hex')
if (password.length < 32) throw new Error('CHAT_SESSION_SECRET must be at least 32 characters')

interface SessionData {
  name?: string
}

export function chatSession(event: H3Event) {
  return useSession<SessionData>(event, {
    name: 'chat-session',
    password,
    cookie: { httpOnly: true, sameSite: 'lax', secure: false },
    maxAge: 60 * 60 * 24 * 30,
  })
}

export async function currentUser(event: H3Event): Promise<string | null> {
  const session = await chatSession(event)
  return session.data.name ?? null
}

export async function requireUser(event: H3Event): Promise<string> {
  const name = await currentUser(event)
  if (!name) throw createError({ statusCode: 401, statusMessage: 'Choose a display name first' })
  return name
}

const NAME = /^[\p{L}\p{N}][\p{L}\p{N} _.-]{0,31}$/u

export function validDisplayName(raw: unknown): string {
  const name = typeof raw === 'string' ? raw.trim() : ''
  if (!NAME.test(name)) {
    throw createError({
      statusCode: 400,
      statusMessage: 'A display name is 1 to 32 letters, digits, spaces, dots, dashes or underscores',
    })
  }
  return name
}
