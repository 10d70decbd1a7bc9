// Choosing (or changing) a display name. There are no passwords: the name is
// an identity for this demo, held in a sealed cookie the browser cannot forge.
export default defineEventHandler(async (event) => {
  const { name } = (await readBody<{ name?: unknown }>(event)) ?? {}
  const session = await chatSession(event)
  await session.update({ name: validDisplayName(name) })
  return { name: session.data.name }
})
