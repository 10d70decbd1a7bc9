// The room list and this session's unread messages per room, live: the
// `chat-rooms` channel reports rooms being created or changed, and every
// room's channel reports messages (both published by ably_pg). The server
// answers with the unread message ids per room; live events add and remove
// ids, so counts stay exact without polling. After any attachment that is not
// a resume (the first one included) the list is fetched again.
import type * as Ably from 'ably'
import type { ChatMessage, Room } from '~/utils/rowEvent'

interface RoomRow extends Room {
  last_read_id: number
  unread_ids: number[]
}

interface Unread {
  lastRead: number
  ids: Set<number>
}

/** Room channels followed for unread counts (the newest rooms first). */
const MAX_FOLLOWED = 50

let started = false
let fetching = 0
let heldEvents: { roomId: string; msg: Ably.InboundMessage }[] = []
let refreshTimer: ReturnType<typeof setTimeout> | undefined
const followed = new Map<string, Ably.RealtimeChannel>()
/** Per room: the read marker last sent to the server, and the throttle timer. */
const readState: Record<string, { sent: number; timer: ReturnType<typeof setTimeout> | undefined }> = {}

export function useRooms() {
  const rooms = useState<Room[]>('rooms', () => [])
  const loaded = useState<boolean>('rooms-loaded', () => false)
  const error = useState<string | null>('rooms-error', () => null)
  const unread = useState<Record<string, Unread>>('rooms-unread', () => ({}))
  /** The room open on screen, whose messages count as read while the page is visible. */
  const openRoom = useState<string | null>('open-room', () => null)
  const { id: myId } = useMe()

  const unreadCount = (roomId: string) => unread.value[roomId]?.ids.size ?? 0

  function countMessage(roomId: string, m: ChatMessage | null, removed: boolean) {
    if (!m) return
    const u = (unread.value[roomId] ??= { lastRead: 0, ids: new Set() })
    if (removed || m.deleted_at !== null) {
      if (u.ids.delete(m.id)) unread.value = { ...unread.value }
    } else if (m.id > u.lastRead && m.author_id !== myId.value && !u.ids.has(m.id)) {
      u.ids.add(m.id)
      unread.value = { ...unread.value }
    }
  }

  function onRoomMessage(roomId: string, msg: Ably.InboundMessage) {
    if (fetching > 0) heldEvents.push({ roomId, msg })
    const parsed = parseRowEvent(msg, ['messages'], roomId)
    if (!('event' in parsed) || parsed.event.table !== 'messages') return
    const ev = parsed.event
    if (ev.event === 'delete') countMessage(roomId, ev.old, true)
    else countMessage(roomId, ev.new, false)
  }

  function follow(roomId: string) {
    if (followed.has(roomId)) return
    const channel = realtime().channels.get(`chat:${roomId}`)
    followed.set(roomId, channel)
    channel.on(['attached', 'update'], (change) => {
      if (!change.resumed) scheduleRefresh()
    })
    channel.subscribe((msg) => onRoomMessage(roomId, msg)).catch(() => {})
  }

  async function refresh() {
    fetching++
    try {
      const list = await $fetch<RoomRow[]>('/api/rooms')
      const next: Record<string, Unread> = {}
      for (const r of list) next[r.id] = { lastRead: Number(r.last_read_id), ids: new Set(r.unread_ids.map(Number)) }
      // A read marker moved by this page while the list was loading wins.
      for (const [id, u] of Object.entries(unread.value)) {
        const n = next[id]
        if (n && u.lastRead > n.lastRead) {
          n.lastRead = u.lastRead
          for (const m of n.ids) if (m <= u.lastRead) n.ids.delete(m)
        }
      }
      rooms.value = list.map(({ id, title, created_by, created_at }) => ({ id, title, created_by, created_at }))
      unread.value = next
      loaded.value = true
      error.value = null
      // Newest rooms first, up to the limit.
      ;[...list].reverse().slice(0, MAX_FOLLOWED).forEach((r) => follow(r.id))
    } catch (err) {
      error.value = apiError(err)
    } finally {
      if (--fetching === 0) {
        // Events that arrived while the list was loading may predate it.
        const events = heldEvents
        heldEvents = []
        for (const e of events) onRoomMessage(e.roomId, e.msg)
      }
    }
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer)
    refreshTimer = setTimeout(() => void refresh(), 150)
  }

  function start() {
    if (started) return
    started = true
    void refresh()
    const channel = realtime().channels.get('chat-rooms')
    channel.on(['attached', 'update'], (change) => {
      if (!change.resumed) scheduleRefresh()
    })
    channel
      .subscribe((msg) => {
        if ('event' in parseRowEvent(msg, ['rooms'], null)) scheduleRefresh()
      })
      .catch((err) => (error.value = `Realtime: ${apiError(err)}`))
  }

  /**
   * Marks a room read up to a message id: here at once, on the server right
   * away (then at most every 300 ms per room). keepalive lets the request
   * finish when the page is being left.
   */
  function markRead(roomId: string, upTo: number) {
    const u = (unread.value[roomId] ??= { lastRead: 0, ids: new Set() })
    if (upTo <= u.lastRead && u.ids.size === 0) return
    const before = u.ids.size
    u.lastRead = Math.max(u.lastRead, upTo)
    for (const m of u.ids) if (m <= u.lastRead) u.ids.delete(m)
    if (u.ids.size !== before) unread.value = { ...unread.value }
    const state = (readState[roomId] ??= { sent: 0, timer: undefined })
    const push = () => {
      state.timer = undefined
      if (u.lastRead <= state.sent) return
      state.sent = u.lastRead
      $fetch(`/api/rooms/${encodeURIComponent(roomId)}/read`, { method: 'PUT', body: { upTo: u.lastRead }, keepalive: true }).catch(() => {
        // Try again shortly (the server keeps the highest marker it got).
        state.sent = 0
        clearTimeout(state.timer)
        state.timer = setTimeout(push, 3000)
      })
      state.timer = setTimeout(push, 300)
    }
    if (state.timer === undefined) push()
  }

  async function create(title: string): Promise<Room> {
    const room = await $fetch<Room>('/api/rooms', { method: 'POST', body: { title } })
    if (!rooms.value.some((r) => r.id === room.id)) rooms.value = [...rooms.value, room]
    follow(room.id)
    return room
  }

  return { rooms, loaded, error, unread, openRoom, unreadCount, start, refresh, markRead, create }
}
