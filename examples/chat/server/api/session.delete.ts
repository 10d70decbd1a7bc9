// Signing out forgets the identity: messages written so far can no longer be
// changed from this browser.
export default defineEventHandler(async (event) => {
  const session = await chatSession(event)
  await session.clear()
  return { id: null, name: null }
})
