// A room: its messages and reactions (a snapshot from the database plus
// ably_pg row events), the messages this browser is sending, who is online
// and typing (Ably presence), and a log of every Ably message the room's
// channel delivered (the "How it works" panel).
//
// Invariants: events are held back while a snapshot is being loaded and
// applied after it, so nothing between the two is lost; a message is only ever
// replaced by a higher version, so a stale event or a duplicate is harmless;
// after any attachment that is not a resume (the first one included) the
// snapshot is loaded again, because events may have been missed. A resumed
// attachment lost nothing, so it loads nothing.
import type * as Ably from 'ably'
import type { AnyRowEvent, ChatMessage, Reaction } from '~/utils/rowEvent'


interface Page {
  messages: ChatMessage[]
  reactions: Reaction[]
  hasOlder: boolean
}

/** A message this browser is sending: shown at once, replaced by the stored row. */
export interface PendingMessage {
  key: string
  body: string
  /** sending: posted, no answer yet; queued: waits for the network; failed: refused or unreachable. */
  status: 'sending' | 'queued' | 'failed'
  error: string | null
  created_at: string
}

export interface Member {
  clientId: string
  name: string
  typing: boolean
}

export interface LogEntry {
  seq: number
  at: number
  name: string | undefined
  data: unknown
  /** Why the room ignored it, if it did. */
  ignored: string | null
}

export interface ReactionGroup {
  emoji: string
  count: number
  mine: boolean
  names: string[]
}

const PAGE_SIZE = 50
const MAX_RESYNC = 500
const MAX_LOG = 60
/** A typing flag older than this (a browser that vanished mid-sentence) is ignored. */
const TYPING_STALE_MS = 12_000
/** Typing stops counting this long after the last keystroke. */
const TYPING_IDLE_MS = 4_000

const reactionKey = (r: Pick<Reaction, 'message_id' | 'user_id' | 'emoji'>) => `${r.message_id}\u0000${r.user_id}\u0000${r.emoji}`

export function useRoomFeed(roomId: string) {
  const { id: myId, name: myName } = useMe()
  const { online } = useConnection()

  const byId = ref(new Map<number, ChatMessage>())
  const reactionRows = ref(new Map<string, Reaction>())
  const pending = ref<PendingMessage[]>([])
  /** Client keys of messages this page sent, to show "sent" on them. */
  const sentKeys = ref(new Set<string>())
  const messages = computed(() => [...byId.value.values()].sort((a, b) => a.id - b.id))
  const hasOlder = ref(false)
  const loadingOlder = ref(false)
  /** True once the first snapshot is in. */
  const loaded = ref(false)
  /** True while attached with a snapshot taken since the attachment: events apply on top. */
  const live = ref(false)
  const channelState = ref<Ably.ChannelState>('initialized')
  const memberMap = ref(new Map<string, Member & { since: number }>())
  const error = ref<string | null>(null)
  const log = ref<LogEntry[]>([])
  const now = ref(Date.now())

  const members = computed(() =>
    [...memberMap.value.values()].sort((a, b) => a.name.localeCompare(b.name) || a.clientId.localeCompare(b.clientId)),
  )
  const typing = computed(() =>
    members.value.filter((m) => m.typing && m.clientId !== myId.value && now.value - m.since < TYPING_STALE_MS).map((m) => m.name),
  )

  const reactions = computed(() => {
    const out = new Map<number, ReactionGroup[]>()
    for (const r of reactionRows.value.values()) {
      let groups = out.get(r.message_id)
      if (!groups) out.set(r.message_id, (groups = []))
      let g = groups.find((x) => x.emoji === r.emoji)
      if (!g) groups.push((g = { emoji: r.emoji, count: 0, mine: false, names: [] }))
      g.count++
      g.names.push(r.user_name)
      if (r.user_id === myId.value) g.mine = true
    }
    return out
  })

  // Ids removed by a DELETE, so that no late copy of an older event brings them back.
  const removed = new Set<number>()
  // Messages older than this are not shown until "load older" fetches them.
  let oldestLoaded = Number.POSITIVE_INFINITY
  let holds = 0
  let held: AnyRowEvent[] = []
  let channel: Ably.RealtimeChannel | undefined
  let syncing: Promise<void> | undefined
  let syncAgain = false
  let closed = false
  let logSeq = 0
  const cleanups: (() => void)[] = []

  function merge(target: Map<number, ChatMessage>, m: ChatMessage) {
    if (removed.has(m.id)) return
    const current = target.get(m.id)
    if (current ? current.version >= m.version : hasOlder.value && m.id < oldestLoaded) return
    target.set(m.id, m)
    // The stored row of a message this page is sending: it is sent.
    if (m.client_key && pending.value.some((p) => p.key === m.client_key)) {
      pending.value = pending.value.filter((p) => p.key !== m.client_key)
      sentKeys.value.add(m.client_key)
    }
  }

  function setReaction(r: Reaction | null, on: boolean) {
    if (!r) return
    if (on && !byId.value.has(r.message_id)) return
    const key = reactionKey(r)
    if (on) reactionRows.value.set(key, r)
    else reactionRows.value.delete(key)
  }

  function apply(ev: AnyRowEvent) {
    if (ev.table === 'messages') {
      if (ev.event === 'delete') {
        if (!ev.old) return
        removed.add(ev.old.id)
        byId.value.delete(ev.old.id)
      } else if (ev.new) {
        merge(byId.value, ev.new)
      }
    } else if (ev.table === 'reactions') {
      if (ev.event !== 'insert') setReaction(ev.old, false)
      if (ev.event !== 'delete') setReaction(ev.new, true)
    }
  }

  function onMessage(msg: Ably.InboundMessage) {
    const parsed = parseRowEvent(msg, ['messages', 'reactions'], roomId)
    log.value = [
      { seq: ++logSeq, at: msg.timestamp ?? Date.now(), name: msg.name, data: msg.data, ignored: 'ignored' in parsed ? parsed.ignored : null },
      ...log.value,
    ].slice(0, MAX_LOG)
    if (!('event' in parsed)) return
    if (holds > 0) held.push(parsed.event)
    else apply(parsed.event)
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
    return $fetch<Page>(`/api/rooms/${encodeURIComponent(roomId)}/messages`, { query })
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
        reactionRows.value = new Map(page.reactions.filter((r) => fresh.has(r.message_id)).map((r) => [reactionKey(r), r]))
      } while (syncAgain && !closed)
      error.value = null
      loaded.value = true
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
        for (const r of page.reactions) setReaction(r, true)
      })
    } catch (err) {
      error.value = apiError(err)
    } finally {
      loadingOlder.value = false
    }
  }

  // --- presence: who is online, who is typing -------------------------------

  let typingSent = false
  let typingTimer: ReturnType<typeof setTimeout> | undefined
  let ticker: ReturnType<typeof setInterval> | undefined

  function presenceData() {
    return { name: myName.value ?? '', typing: typingSent }
  }

  async function refreshMembers() {
    if (!channel) return
    const present = await channel.presence.get()
    const next = new Map<string, Member & { since: number }>()
    for (const p of present) {
      const data = (p.data ?? {}) as { name?: unknown; typing?: unknown }
      const name = typeof data.name === 'string' && data.name ? data.name : 'someone'
      const prev = next.get(p.clientId)
      const typingNow = data.typing === true
      // One person in several tabs is one member, typing if any tab is.
      next.set(p.clientId, {
        clientId: p.clientId,
        name,
        typing: typingNow || (prev?.typing ?? false),
        since: Math.max(p.timestamp ?? Date.now(), prev?.since ?? 0),
      })
    }
    memberMap.value = next
    clearInterval(ticker)
    if ([...next.values()].some((m) => m.typing)) {
      ticker = setInterval(() => (now.value = Date.now()), 1000)
    }
    now.value = Date.now()
  }

  function sendPresence() {
    if (!channel || closed) return
    channel.presence.update(presenceData()).catch(() => {})
  }

  /** Called on every keystroke in the composer with the draft's emptiness. */
  function noteTyping(hasText: boolean) {
    clearTimeout(typingTimer)
    if (hasText) typingTimer = setTimeout(() => noteTyping(false), TYPING_IDLE_MS)
    if (hasText !== typingSent) {
      typingSent = hasText
      sendPresence()
    }
  }

  // --- sending ---------------------------------------------------------------

  async function post(p: PendingMessage) {
    p.status = 'sending'
    p.error = null
    try {
      const stored = await $fetch<ChatMessage>(`/api/rooms/${encodeURIComponent(roomId)}/messages`, {
        method: 'POST',
        body: { body: p.body, clientKey: p.key },
      })
      merge(byId.value, stored)
    } catch (err) {
      const current = pending.value.find((x) => x.key === p.key)
      if (!current) return
      if (!navigator.onLine) {
        current.status = 'queued'
      } else {
        current.status = 'failed'
        current.error = apiError(err)
      }
    }
  }

  /** Shows the message at once and sends it now, or when back online. */
  function send(body: string) {
    const text = body.trim()
    if (!text) return
    const p = reactive<PendingMessage>({
      key: uuid4(),
      body: text,
      status: online.value ? 'sending' : 'queued',
      error: null,
      created_at: new Date().toISOString(),
    })
    pending.value = [...pending.value, p]
    noteTyping(false)
    if (p.status === 'sending') void post(p)
  }

  function retry(key: string) {
    const p = pending.value.find((x) => x.key === key)
    if (p) void post(p)
  }

  function discard(key: string) {
    pending.value = pending.value.filter((x) => x.key !== key)
  }

  async function flushQueue() {
    for (const p of pending.value.filter((x) => x.status === 'queued')) {
      if (!navigator.onLine) return
      await post(p)
    }
  }

  async function edit(id: number, body: string) {
    merge(byId.value, await $fetch<ChatMessage>(`/api/messages/${id}`, { method: 'PATCH', body: { body } }))
  }
  async function remove(id: number) {
    merge(byId.value, await $fetch<ChatMessage>(`/api/messages/${id}`, { method: 'DELETE' }))
  }
  /** The change reaches this page (like every other) as an ably_pg event. */
  async function react(messageId: number, emoji: string, on: boolean) {
    await $fetch(`/api/messages/${messageId}/reactions`, { method: 'POST', body: { emoji, on } })
  }

  // --- lifecycle ---------------------------------------------------------------

  function start() {
    const showProblem = (err: unknown) => {
      error.value = `Realtime: ${apiError(err)}`
    }
    channel = realtime().channels.get(`chat:${roomId}`)
    const ch = channel
    channelState.value = ch.state
    const onState = (change: Ably.ChannelStateChange) => {
      channelState.value = change.current
      if (change.current !== 'attached') live.value = false
    }
    // Any attachment that is not a resume, the first included, may follow
    // events this page never saw. UPDATE is the in-place form of ATTACHED.
    const onAttached = (change: Ably.ChannelStateChange) => {
      if (change.resumed) {
        // Nothing was missed: what is shown is still current.
        if (loaded.value && !syncing) live.value = true
        return
      }
      live.value = false
      void resync()
    }
    ch.on(onState)
    ch.on(['attached', 'update'], onAttached)
    const onPresence = () => void refreshMembers().catch(() => {})
    cleanups.push(() => {
      ch.off(onState)
      ch.off(onAttached)
      ch.unsubscribe(onMessage)
      ch.presence.unsubscribe(onPresence)
      ch.presence.leave().catch(() => {})
    })

    // History shows at once, even before (or without) a realtime connection;
    // when the channel is already attached (the room list follows it for
    // unread counts) this snapshot is the one that makes the room live.
    void resync()
    ch.subscribe(onMessage).catch(showProblem)
    ch.presence
      .subscribe(onPresence)
      .then(() => ch.presence.enter(presenceData()))
      .then(refreshMembers)
      .catch(showProblem)

    const onOnline = () => void flushQueue()
    window.addEventListener('online', onOnline)
    cleanups.push(() => window.removeEventListener('online', onOnline))
    // A rename shows in the online list at once.
    cleanups.push(watch(myName, () => sendPresence()))
  }

  onMounted(start)
  onBeforeUnmount(() => {
    closed = true
    clearTimeout(typingTimer)
    clearInterval(ticker)
    cleanups.forEach((c) => c())
  })

  return {
    messages, pending, sentKeys, reactions, hasOlder, loadingOlder, loaded, live, channelState, members, typing, error, log,
    loadOlder, send, retry, discard, edit, remove, react, noteTyping,
  }
}
