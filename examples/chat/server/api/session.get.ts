export default defineEventHandler(async (event) => {
  const user = await currentUser(event)
  return user ? { id: user.id, name: user.name } : { id: null, name: null }
})
