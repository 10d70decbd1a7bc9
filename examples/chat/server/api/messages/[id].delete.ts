// Deleting leaves a tombstone (the trigger empties the body and drops the edit
// history and the reactions), so everyone sees "message deleted" in its place.
export default defineEventHandler(async (event) => {
  const user = await requireUser(event)
  const id = validId(getRouterParam(event, 'id'))
  return updateOwnMessage(user, id, 'deleted_at = now()')
})
