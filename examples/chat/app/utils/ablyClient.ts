// A Realtime client authenticated through our authUrl. The token, signed by
// ably_pg inside Postgres, decides the clientId and which channels it may use.
import * as Ably from 'ably'

export function createAblyClient(authPath: string): Ably.Realtime {
  const { ablyEndpoint, ablyPort, ablyTls } = useRuntimeConfig().public
  const options: Ably.ClientOptions = {
    authUrl: new URL(authPath, window.location.origin).href,
  }
  if (ablyEndpoint) {
    // A local Ably-compatible server: no fallback hosts, no comet transport.
    Object.assign(options, {
      endpoint: String(ablyEndpoint),
      tls: Boolean(ablyTls),
      transports: ['web_socket'],
      disableConnectivityCheck: true,
    })
    if (Number(ablyPort) > 0) Object.assign(options, { port: Number(ablyPort), tlsPort: Number(ablyPort) })
  }
  return new Ably.Realtime(options)
}
