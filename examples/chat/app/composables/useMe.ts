// The signed-in display name, shared by every page (the server's session
// cookie is the source of truth).
export function useMe() {
  const name = useState<string | null | undefined>('me', () => undefined)

  async function load() {
    name.value = (await $fetch<{ name: string | null }>('/api/session')).name
  }
  async function choose(newName: string) {
    name.value = (await $fetch<{ name: string }>('/api/session', { method: 'PUT', body: { name: newName } })).name
  }
  async function forget() {
    await $fetch('/api/session', { method: 'DELETE' })
    name.value = null
  }
  return { name, load, choose, forget }
}
