// A room's messages: a snapshot from the database plus ably_pg row events.
//
// Invariants: events are held back while a snapshot is being loaded and
// applied after it, so nothing between the two is lost; a message is only ever
// replaced by a higher version, so a stale event or a duplicate is harmless;
// after any break in continuity (reconnect without resume) the snapshot is
// loaded again.
import type * as Ably from 'ably'

export interface ChatMessage {
  id: number
  room_id: string
  author: string
  body: string
  created_at: string
  edited_at: string | null
  deleted_at: string | null
  version: number
}

/** The `data` of every message ably_pg publishes for a row change. */
interface RowEvent {
  event: 'insert' | 'update' | 'delete'
  new: ChatMessage | null
  old: ChatMessage | null
}

interface Page {
  messages: ChatMessage[]
  hasOlder: boolean
}

const PAGE_SIZE = 50
const MAX_RESYNC = 500

export function useRoomFeed(roomId: string) {
  const byId = ref(new Map<number, ChatMessage>())
  const messages = computed(() => [...byId.value.values()].sort((a, b) => a.id - b.id))
  const hasOlder = ref(false)
  const loadingOlder = ref(false)
  const connection = ref<Ably.ConnectionState>('initialized')
  const connectionProblem = ref<string | null>(null)
  /** True while attached with a snapshot taken since the attachment: events apply on top. */
  const live = ref(false)
  const members = ref<string[]>([])
  const error = ref<string | null>(null)

  // Ids removed by a DELETE, so that no late copy of an older event brings them back.
  const removed = new Set<number>()
  // Messages older than this are not shown until "load older" fetches them.
  let oldestLoaded = Number.POSITIVE_INFINITY
  let holds = 0
  let held: RowEvent[] = []
  let client: Ably.Realtime | undefined
  let channel: Ably.RealtimeChannel | undefined
  let syncing: Promise<void> | undefined
  let syncAgain = false
  let closed = false

  function merge(target: Map<number, ChatMessage>, m: ChatMessage) {
    if (removed.has(m.id)) return
    const current = target.get(m.id)
    if (current ? current.version >= m.version : hasOlder.value && m.id < oldestLoaded) return
    target.set(m.id, m)
  }

  function apply(ev: RowEvent) {
    if (ev.event === 'delete') {
      if (!ev.old) return
      removed.add(ev.old.id)
      byId.value.delete(ev.old.id)
    } else if (ev.new && ev.new.room_id === roomId) {
      merge(byId.value, ev.new)
    }
  }

  function onRowEvent(msg: Ably.InboundMessage) {
    const ev = msg.data as RowEvent
    if (!ev || typeof ev !== 'object' || !('event' in ev)) return
    if (holds > 0) held.push(ev)
    else apply(ev)
  }

  /** Runs `load` with live events held back, then applies them in order. */
  async function holding(load: () => Promise<void>) {
    holds++
    try {
      await load()
    } finally {
      if (--holds === 0) {
        const events = held
        held = []
        events.forEach(apply)
      }
    }
  }

  function fetchPage(query: { before?: number; limit?: number }) {
    return $fetch<Page>(`/api/rooms/${roomId}/messages`, { query })
  }

  /** Replaces what is shown with a fresh snapshot of (at least) the same span. */
  function resync(): Promise<void> {
    if (syncing) {
      syncAgain = true
      return syncing
    }
    syncing = holding(async () => {
      do {
        syncAgain = false
        const limit = Math.min(Math.max(PAGE_SIZE, byId.value.size), MAX_RESYNC)
        const page = await fetchPage({ limit })
        const fresh = new Map<number, ChatMessage>()
        hasOlder.value = page.hasOlder
        oldestLoaded = page.messages[0]?.id ?? Number.POSITIVE_INFINITY
        for (const m of page.messages) merge(fresh, m)
        byId.value = fresh
      } while (syncAgain && !closed)
      error.value = null
      live.value = channel?.state === 'attached'
    })
      .catch((err) => {
        error.value = `Could not load messages: ${apiError(err)}`
        if (!closed) setTimeout(() => void resync(), 3000)
      })
      .finally(() => {
        syncing = undefined
      })
    return syncing
  }

  async function loadOlder() {
    if (!hasOlder.value || loadingOlder.value) return
    loadingOlder.value = true
    try {
      await holding(async () => {
        const page = await fetchPage({ before: oldestLoaded, limit: PAGE_SIZE })
        oldestLoaded = Math.min(oldestLoaded, page.messages[0]?.id ?? oldestLoaded)
        hasOlder.value = page.hasOlder
        for (const m of page.messages) merge(byId.value, m)
      })
    } catch (err) {
      error.value = apiError(err)
    } finally {
      loadingOlder.value = false
    }
  }

  async function refreshMembers() {
    if (!channel) return
    const present = await channel.presence.get()
    members.value = [...new Set(present.map((p) => p.clientId))].sort((a, b) => a.localeCompare(b))
  }

  /** After a fresh attachment the room is live again once a new snapshot is in. */
  function resyncAttached() {
    live.value = false
    void resync()
  }

  function start() {
    const showProblem = (err: unknown) => {
      error.value = `Realtime: ${apiError(err)}`
    }
    client = createAblyClient(`/api/ably-token?room=${encodeURIComponent(roomId)}`)
    channel = client.channels.get(`chat:${roomId}`)
    client.connection.on((change) => {
      connection.value = change.current
      connectionProblem.value = change.current === 'connected' ? null : (change.reason?.message ?? null)
      if (change.current === 'connected' && ['disconnected', 'suspended'].includes(change.previous)) void resync()
    })
    // Any attachment that is not a resume, the first included, may follow
    // events this page never saw. UPDATE is the in-place form of ATTACHED.
    const onAttached = (change: Ably.ChannelStateChange) => {
      if (!change.resumed) resyncAttached()
    }
    channel.on('attached', onAttached)
    channel.on('update', onAttached)
    channel.on(['detached', 'suspended', 'failed'], () => {
      live.value = false
    })

    // History shows at once, even before (or without) a realtime connection.
    void resync()
    channel.subscribe(onRowEvent).catch(showProblem)
    channel.presence
      .subscribe(() => void refreshMembers().catch(() => {}))
      .then(() => channel!.presence.enter())
      .then(refreshMembers)
      .catch(showProblem)
  }

  onMounted(start)
  onBeforeUnmount(() => {
    closed = true
    client?.close()
  })

  async function send(body: string) {
    merge(byId.value, await $fetch<ChatMessage>(`/api/rooms/${roomId}/messages`, { method: 'POST', body: { body } }))
  }
  async function edit(id: number, body: string) {
    merge(byId.value, await $fetch<ChatMessage>(`/api/messages/${id}`, { method: 'PATCH', body: { body } }))
  }
  async function remove(id: number) {
    merge(byId.value, await $fetch<ChatMessage>(`/api/messages/${id}`, { method: 'DELETE' }))
  }

  return { messages, hasOlder, loadingOlder, connection, connectionProblem, live, members, error, loadOlder, send, edit, remove }
}

