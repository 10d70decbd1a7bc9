export default defineEventHandler(async (event) => ({ name: await currentUser(event) }))
