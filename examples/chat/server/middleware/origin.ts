// Cross-site request forgery guard for every state-changing request: the
// browser must say where the request comes from (Origin, which browsers send
// on every non-GET request and scripts cannot change) and it must be this
// site. A page on another origin — another port of the same host included,
// which the SameSite cookie rule does not separate — gets 403 and changes
// nothing. GET routes change nothing, so they are not checked.
//
// CHAT_TRUSTED_ORIGINS (comma-separated, e.g. https://chat.example.com) adds
// origins to accept, for a proxy that rewrites the Host header.
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
const trusted = new Set(
  (process.env.CHAT_TRUSTED_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim().replace(/\/+$/, ''))
    .filter(Boolean),
)

export default defineEventHandler((event) => {
  if (SAFE_METHODS.has(event.method)) return
  const origin = getRequestHeader(event, 'origin')
  if (origin && trusted.has(origin)) return
  const host = getRequestHeader(event, 'host')
  let originHost: string | null = null
  try {
    originHost = origin ? new URL(origin).host : null
  } catch {
    originHost = null
  }
  const fetchSite = getRequestHeader(event, 'sec-fetch-site')
  const crossSiteFetch = fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none'
  if (!originHost || !host || originHost !== host || crossSiteFetch) {
    throw createError({ statusCode: 403, statusMessage: 'Cross-origin request refused' })
  }
})
