// Choosing or changing the display name. The first call creates the session's
// identity (a random id); later calls only rename, so messages written before
// stay this session's own. There are no passwords: the identity is the sealed
// cookie, which the browser cannot read or forge.
export default defineEventHandler(async (event) => {
  const { name } = (await readBody<{ name?: unknown }>(event)) ?? {}
  const valid = validDisplayName(name)
  const session = await chatSession(event)
  await session.update({
    uid: session.data.uid ?? newUserId(),
    name: valid,
    joined: session.data.joined ?? Date.now(),
  })
  return { id: session.data.uid, name: session.data.name }
})
