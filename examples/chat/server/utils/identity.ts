// Who is acting. Each browser session gets a random id, kept with its display
// name in a sealed session cookie the browser can neither read nor forge. The
// id is the identity: it owns messages and is the Ably clientId. The display
// name is only shown, may repeat, and may change without losing anything.
import { randomBytes } from 'node:crypto'
import type { H3Event } from 'h3'

// Without a configured secret, sessions last as long as this server process.
const password = process.env.CHAT_SESSION_SECRET || randomBytes(32).toString('hex')
if (password.length < 32) throw new Error('CHAT_SESSION_SECRET must be at least 32 characters')

interface SessionData {
  /** Random session id: 16 URL-safe characters. */
  uid?: string
  name?: string
  /** When the session picked its first name (ms); unread counts start there. */
  joined?: number
}

export interface ChatUser {
  id: string
  name: string
  joined: number
}

export function chatSession(event: H3Event) {
  return useSession<SessionData>(event, {
    name: 'chat-session',
    password,
    cookie: { httpOnly: true, sameSite: 'lax', secure: false },
    maxAge: 60 * 60 * 24 * 30,
  })
}

export function newUserId(): string {
  return randomBytes(12).toString('base64url')
}

export async function currentUser(event: H3Event): Promise<ChatUser | null> {
  const { uid, name, joined } = (await chatSession(event)).data
  return uid && name ? { id: uid, name, joined: joined ?? 0 } : null
}

export async function requireUser(event: H3Event): Promise<ChatUser> {
  const user = await currentUser(event)
  if (!user) throw createError({ statusCode: 401, statusMessage: 'Choose a display name first' })
  return user
}

const NAME = /^[\p{L}\p{N}][\p{L}\p{M}\p{N} _.'-]{0,31}$/u

export function validDisplayName(raw: unknown): string {
  const name = typeof raw === 'string' ? raw.trim().normalize('NFC') : ''
  if (!NAME.test(name)) {
    throw createError({
      statusCode: 400,
      statusMessage: 'A display name is 1 to 32 letters, digits, spaces, dots, dashes or underscores',
    })
  }
  return name
}
