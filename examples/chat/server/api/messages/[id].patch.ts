export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const id = validId(getRouterParam(event, 'id'))
  const body = validBody((await readBody<{ body?: unknown }>(event))?.body)
  return updateOwnMessage(user, id, 'body = $3', [body])
})
