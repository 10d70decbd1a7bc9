// The signed-in session, shared by every page: a random id (the identity,
// also the Ably clientId) and a display name. The server's sealed session
// cookie is the source of truth.
interface Me {
  id: string | null
  name: string | null
}

export function useMe() {
  const me = useState<Me | undefined>('me', () => undefined)
  const name = computed(() => (me.value === undefined ? undefined : me.value.name))
  const id = computed(() => me.value?.id ?? null)

  async function load() {
    me.value = await $fetch<Me>('/api/session')
  }
  /** Picks the first name, or renames: the id, and so authorship, stays. */
  async function choose(newName: string) {
    me.value = await $fetch<Me>('/api/session', { method: 'PUT', body: { name: newName } })
  }
  return { me, name, id, load, choose }
}
