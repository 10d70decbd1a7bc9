// Two people chatting in real Chromium against the running stack: Postgres
// with ably_pg, an Ably(-compatible) server, and the built Nuxt server. Every
// live change a browser sees here travelled row trigger -> ably_pg queue ->
// worker -> Ably -> ably-js; the app's server routes never publish.
//
// Needs CHAT_URL and DATABASE_URL; screenshots go to ARTIFACTS_DIR.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import pg from 'pg'

const CHAT_URL = process.env.CHAT_URL ?? 'http://127.0.0.1:3000'
const DATABASE_URL = process.env.DATABASE_URL
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR ?? fileURLToPath(new URL('../test-artifacts/', import.meta.url))
// Live delivery takes tens of milliseconds; the margin is for a busy 2-core CI.
const TIMEOUT = 15_000

/** Polls `probe` until it returns a truthy value (or stops throwing), like expect.poll. */
async function waitFor(what, probe, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      const value = await probe()
      if (value) return value
      last = new Error(`got ${JSON.stringify(value)}`)
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}: ${last?.message}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

describe('chat on ably_pg', { timeout: 180_000 }, () => {
  assert.ok(DATABASE_URL, 'DATABASE_URL must point at the chat database')
  const db = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
  const roomTitle = `E2E ${Date.now().toString(36)}`
  let browser
  let room
  /** @type {{ alice: import('playwright-core').Page, bob: import('playwright-core').Page }} */
  const page = {}

  const messageByText = (p, text) => p.getByTestId('message').filter({ hasText: text })
  const messageById = (p, id) => p.locator(`[data-testid="message"][data-message-id="${id}"]`)
  const bodyOf = (p, id) => messageById(p, id).getByTestId('message-body').textContent({ timeout: 1000 })
  const dbMessage = async (id) => (await db.query('SELECT * FROM chat.messages WHERE id = $1', [id])).rows[0]

  async function signIn(name) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 } })
    const p = await context.newPage()
    p.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message))
    await p.goto(CHAT_URL)
    await p.getByTestId('name-input').fill(name)
    await p.getByTestId('name-submit').click()
    await p.getByTestId('whoami').filter({ hasText: name }).waitFor()
    return p
  }

  async function openRoom(p) {
    await p.goto(`${CHAT_URL}/rooms/${room.id}`)
    await p.locator('[data-testid="connection-state"][data-live="true"]').waitFor({ timeout: TIMEOUT })
  }

  async function send(p, text) {
    await p.getByTestId('composer-input').fill(text)
    await p.getByTestId('composer-send').click()
    const item = messageByText(p, text).last()
    await item.waitFor({ timeout: TIMEOUT })
    return Number(await item.getAttribute('data-message-id'))
  }

  async function messagesShown(p) {
    return p.getByTestId('message').evaluateAll((items) =>
      items.map((li) => ({
        id: Number(li.dataset.messageId),
        body: li.querySelector('[data-testid="message-body"]')?.textContent ?? null,
        deleted: li.querySelector('[data-testid="message-deleted"]') !== null,
      })),
    )
  }

  async function screenshot(p, name) {
    await p.screenshot({ path: join(ARTIFACTS_DIR, `${name}.png`) })
  }

  before(async () => {
    mkdirSync(ARTIFACTS_DIR, { recursive: true })
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync',
      ],
    })
    page.alice = await signIn('alice')
    page.bob = await signIn('bob')

    // Creating the room through the UI also shows it live in bob's room list.
    await page.bob.getByTestId('room-list').waitFor()
    await page.alice.getByTestId('new-room-input').fill(roomTitle)
    await page.alice.getByTestId('new-room-submit').click()
    await page.alice.waitForURL(/\/rooms\/[a-z0-9-]+$/)
    room = { id: page.alice.url().split('/').pop() }
    await page.bob.getByTestId(`room-link-${room.id}`).waitFor({ timeout: TIMEOUT })

    await openRoom(page.alice)
    await openRoom(page.bob)
  })

  after(async () => {
    await browser?.close()
    await db.end()
  })

  test('both users see each other online', async () => {
    for (const p of [page.alice, page.bob]) {
      await waitFor('alice and bob in the presence list', async () => {
        const names = await p.getByTestId('presence-member').allTextContents()
        return names.some((n) => n.startsWith('alice')) && names.some((n) => n.startsWith('bob'))
      })
    }
  })

  test('a message from one user appears live for the other', async () => {
    const id = await send(page.alice, 'Hello Bob, this is Alice')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })
    assert.equal(await bodyOf(page.bob, id), 'Hello Bob, this is Alice')
    assert.equal(await messageById(page.bob, id).getByTestId('message-author').textContent(), 'alice')

    const reply = await send(page.bob, 'Hi Alice!')
    await messageById(page.alice, reply).waitFor({ timeout: TIMEOUT })
    assert.ok(reply > id, 'message ids follow the order of sending')
  })

  test('an edit appears for everyone with an "edited" marker and its history', async () => {
    const id = await send(page.alice, 'Meeting at 10')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })

    const mine = messageById(page.alice, id)
    await mine.hover()
    await mine.getByTestId('edit-button').click()
    await mine.getByTestId('edit-input').fill('Meeting at 11')
    await mine.getByTestId('edit-save').click()

    for (const p of [page.alice, page.bob]) {
      await waitFor('the edited body', async () => (await bodyOf(p, id)) === 'Meeting at 11')
      await messageById(p, id).getByTestId('message-edited').waitFor()
    }
    const theirs = messageById(page.bob, id)
    await theirs.getByTestId('message-edited').click()
    await waitFor('the earlier version in the edit history', async () =>
      (await theirs.getByTestId('edit-history-entry').allTextContents()).some((t) => t.includes('Meeting at 10')),
    )
    assert.equal((await dbMessage(id)).version, 2)
  })

  test('a delete leaves a tombstone for everyone', async () => {
    const id = await send(page.alice, 'Oops, wrong room')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })

    const mine = messageById(page.alice, id)
    await mine.hover()
    await mine.getByTestId('delete-button').click()
    await mine.getByTestId('delete-confirm').click()

    for (const p of [page.alice, page.bob]) {
      await messageById(p, id).getByTestId('message-deleted').waitFor({ timeout: TIMEOUT })
      assert.equal(await messageById(p, id).getByTestId('message-body').count(), 0)
    }
    const row = await dbMessage(id)
    assert.ok(row.deleted_at, 'the row is a tombstone')
    assert.equal(row.body, '')
  })

  test('an UPDATE made directly in the database appears in both browsers', async () => {
    const id = await send(page.bob, 'Something a moderator will rewrite')
    await messageById(page.alice, id).waitFor({ timeout: TIMEOUT })

    await db.query(`UPDATE chat.messages SET body = '[removed by moderator]' WHERE id = $1`, [id])

    for (const p of [page.alice, page.bob]) {
      await waitFor('the moderated body', async () => (await bodyOf(p, id)) === '[removed by moderator]')
      await messageById(p, id).getByTestId('message-edited').waitFor()
    }
    await screenshot(page.alice, 'room-alice')
    await screenshot(page.bob, 'room-bob')
  })

  test("the second user cannot edit or delete the first user's message", async () => {
    const id = await send(page.alice, 'Only Alice may change this')
    const theirs = messageById(page.bob, id)
    await theirs.waitFor({ timeout: TIMEOUT })
    await theirs.hover()
    assert.equal(await theirs.getByTestId('edit-button').count(), 0)
    assert.equal(await theirs.getByTestId('delete-button').count(), 0)

    // The browser hides the controls; the server is what actually refuses.
    const api = page.bob.context().request
    const edit = await api.patch(`${CHAT_URL}/api/messages/${id}`, { data: { body: 'Bob was here' } })
    assert.equal(edit.status(), 403)
    const del = await api.delete(`${CHAT_URL}/api/messages/${id}`)
    assert.equal(del.status(), 403)

    const row = await dbMessage(id)
    assert.equal(row.body, 'Only Alice may change this')
    assert.equal(row.version, 1)
    assert.equal(row.deleted_at, null)
  })

  test("the Ably token is bob's and reaches only this room's channel", async () => {
    const api = page.bob.context().request
    const res = await api.get(`${CHAT_URL}/api/ably-token?room=${room.id}`)
    assert.equal(res.status(), 200)
    const tokenRequest = await res.json()
    assert.equal(tokenRequest.clientId, 'bob')
    const capability = Object.entries(JSON.parse(tokenRequest.capability)).map(([ch, ops]) => [ch, [...ops].sort()])
    assert.deepEqual(capability, [[`chat:${room.id}`, ['presence', 'subscribe']]])
    assert.match(tokenRequest.keyName, /^[^.:]+\.[^.:]+$/, 'the key name, never the secret')
    assert.equal(typeof tokenRequest.mac, 'string')

    const anonymous = await fetch(`${CHAT_URL}/api/ably-token?room=${room.id}`)
    assert.equal(anonymous.status, 401)
  })

  test('HTML in a message is displayed as text', async () => {
    const html = '<script>window.__pwned = true</script><b>bold?</b> <img src=x onerror="window.__pwned = true">'
    const id = await send(page.alice, html)
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })
    for (const p of [page.alice, page.bob]) {
      assert.equal(await bodyOf(p, id), html)
      const body = messageById(p, id).getByTestId('message-body')
      assert.equal(await body.locator('script, b, img').count(), 0)
      assert.equal(await p.evaluate(() => window.__pwned), undefined)
    }
  })

  test('an over-long message is refused with a clear error', async () => {
    const before = await messagesShown(page.alice)
    await page.alice.getByTestId('composer-input').fill('x'.repeat(4001))
    await page.alice.getByTestId('composer-send').click()
    const error = page.alice.getByTestId('composer-error')
    await error.waitFor({ timeout: TIMEOUT })
    assert.match(await error.textContent(), /at most 4000 characters/)
    assert.equal((await messagesShown(page.alice)).length, before.length)
    await page.alice.getByTestId('composer-input').fill('')
  })

  test('changes missed while offline are re-synced from the database on reconnect', async () => {
    const id = await send(page.alice, 'Written before the outage')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })

    const bobContext = page.bob.context()
    await bobContext.setOffline(true)
    try {
      await page.bob.locator('[data-testid="connection-state"][data-live="false"]').waitFor({ timeout: TIMEOUT })
      await db.query(`UPDATE chat.messages SET body = 'Rewritten during the outage' WHERE id = $1`, [id])
      await send(page.alice, 'Sent during the outage')
    } finally {
      await bobContext.setOffline(false)
    }

    await page.bob.locator('[data-testid="connection-state"][data-live="true"]').waitFor({ timeout: 30_000 })
    await waitFor('the missed edit', async () => (await bodyOf(page.bob, id)) === 'Rewritten during the outage')
    await messageByText(page.bob, 'Sent during the outage').waitFor({ timeout: TIMEOUT })
  })

  test('a reload shows the full history from the database, in order, paged', async () => {
    // More than one page of history, written straight into the table.
    await db.query(
      `INSERT INTO chat.messages (room_id, author, body)
       SELECT $1, 'carol', 'backlog ' || n FROM generate_series(1, 55) n`,
      [room.id],
    )
    const { rows } = await db.query(
      'SELECT id::int, body, deleted_at IS NOT NULL AS deleted FROM chat.messages WHERE room_id = $1 ORDER BY id',
      [room.id],
    )
    const expected = rows.map((r) => ({ id: r.id, body: r.deleted ? null : r.body, deleted: r.deleted }))

    // Live delivery brought the backlog to bob already; a reload rebuilds it from the database.
    await waitFor('the backlog delivered live', async () => (await messagesShown(page.bob)).length === expected.length)
    await page.bob.reload()
    await page.bob.locator('[data-testid="connection-state"][data-live="true"]').waitFor({ timeout: TIMEOUT })
    await waitFor('the newest page', async () => (await messagesShown(page.bob)).length === 50)
    assert.deepEqual(await messagesShown(page.bob), expected.slice(-50))

    await page.bob.getByTestId('load-older').click()
    await waitFor('all history', async () => (await messagesShown(page.bob)).length === expected.length)
    assert.deepEqual(await messagesShown(page.bob), expected)
    assert.equal(await page.bob.getByTestId('load-older').count(), 0)
    await screenshot(page.bob, 'room-bob-reloaded')
  })
})
