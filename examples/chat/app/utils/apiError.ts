/** The human-readable reason from a failed $fetch to our server routes. */
export function apiError(err: unknown): string {
  const e = err as {
    data?: { statusMessage?: string; message?: string }
    statusCode?: number
    statusMessage?: string
    message?: string
    response?: unknown
  }
  // No response at all: the network or the server is down. ofetch's own
  // message ("[POST] "/api/...": <no response> Failed to fetch") means
  // nothing to a reader.
  if (e && typeof e === 'object' && 'response' in e && e.response === undefined && e.statusCode === undefined) {
    return typeof navigator !== 'undefined' && !navigator.onLine
      ? 'You are offline'
      : 'Could not reach the chat server'
  }
  return e?.data?.statusMessage || e?.data?.message || e?.statusMessage || e?.message || 'Something went wrong'
}
