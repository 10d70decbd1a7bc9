// Times and days as a chat shows them, in the reader's time zone and locale.

export function timeOf(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
}

export function fullDate(iso: string): string {
  return new Date(iso).toLocaleString([], { dateStyle: 'full', timeStyle: 'short' })
}

/** The local calendar day of a timestamp, e.g. "2025-03-07". */
export function dayKey(iso: string | Date): string {
  const d = new Date(iso)
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
}

/** "Today", "Yesterday", "Monday 3 March" (this year) or "3 March 2024". */
export function dayLabel(iso: string, now = new Date()): string {
  const key = dayKey(iso)
  if (key === dayKey(now)) return 'Today'
  const yesterday = new Date(now)
  yesterday.setDate(now.getDate() - 1)
  if (key === dayKey(yesterday)) return 'Yesterday'
  const d = new Date(iso)
  return d.getFullYear() === now.getFullYear()
    ? d.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' })
    : d.toLocaleDateString([], { day: 'numeric', month: 'long', year: 'numeric' })
}

/** A stable colour for a person, dark enough for white text (WCAG AA). */
const AVATAR_COLOURS = ['#1d4ed8', '#047857', '#9a3412', '#6d28d9', '#be123c', '#0f766e', '#4338ca', '#a21caf', '#374151', '#854d0e']
export function avatarColour(key: string): string {
  let h = 0
  for (const ch of key) h = (h * 31 + ch.codePointAt(0)!) >>> 0
  return AVATAR_COLOURS[h % AVATAR_COLOURS.length]!
}
