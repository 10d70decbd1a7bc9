export default defineEventHandler(async (event) => {
  const session = await chatSession(event)
  await session.clear()
  return { name: null }
})
