// One Ably connection for the whole app, authenticated through our authUrl.
// The token, signed by ably_pg inside Postgres, makes the session's random id
// the clientId and allows subscribe (room list, rooms) and presence (rooms).
import * as Ably from 'ably'

let client: Ably.Realtime | null = null

function createClient(): Ably.Realtime {
  const { ablyEndpoint, ablyPort, ablyTls } = useRuntimeConfig().public
  const options: Ably.ClientOptions = {
    authUrl: new URL('/api/ably-token', window.location.origin).href,
  }
  if (ablyEndpoint) {
    // A local Ably-compatible server: no fallback hosts, no comet transport.
    // "same-host" means the host this page was loaded from.
    const endpoint = ablyEndpoint === 'same-host' ? window.location.hostname : String(ablyEndpoint)
    Object.assign(options, {
      endpoint,
      tls: Boolean(ablyTls),
      transports: ['web_socket'],
      disableConnectivityCheck: true,
    })
    if (Number(ablyPort) > 0) Object.assign(options, { port: Number(ablyPort), tlsPort: Number(ablyPort) })
  }
  const realtime = new Ably.Realtime(options)
  const { state, problem } = useConnection()
  realtime.connection.on((change) => {
    state.value = change.current
    problem.value = change.current === 'connected' ? null : (change.reason?.message ?? null)
  })
  return realtime
}

/** The app's Ably client (created on first use, in the browser only). */
export function realtime(): Ably.Realtime {
  client ??= createClient()
  return client
}

export function closeRealtime() {
  client?.close()
  client = null
}

/** The Ably connection state and whether the browser thinks it is online. */
export function useConnection() {
  const state = useState<Ably.ConnectionState>('ably-connection', () => 'initialized')
  const problem = useState<string | null>('ably-problem', () => null)
  const online = useState<boolean>('browser-online', () => (typeof navigator === 'undefined' ? true : navigator.onLine))
  return { state, problem, online }
}
