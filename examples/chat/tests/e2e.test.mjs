// Two people chatting in real Chromium against the running stack: Postgres
// with ably_pg, an Ably(-compatible) server, and the built Nuxt server. Every
// live change a browser sees here travelled row trigger -> ably_pg queue ->
// worker -> Ably -> ably-js; the app's server routes never publish.
//
// Needs CHAT_URL and DATABASE_URL; screenshots go to ARTIFACTS_DIR. The psql
// command shown in "How it works" is run as shown, so `psql` must be on PATH
// (scripts/chat.mjs puts the private installation's first).
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import pg from 'pg'

const CHAT_URL = process.env.CHAT_URL ?? 'http://127.0.0.1:3000'
const DATABASE_URL = process.env.DATABASE_URL
const ARTIFACTS_DIR = process.env.ARTIFACTS_DIR ?? fileURLToPath(new URL('../test-artifacts/', import.meta.url))
// Live delivery takes tens of milliseconds; the margin is for a busy 2-core CI.
const TIMEOUT = 15_000
/** The local server's default, as Ably's: how long a dropped connection's members stay. */
const PRESENCE_LEAVE_DELAY = 15_000
const DESKTOP = { width: 1280, height: 800 }
const MOBILE = { width: 390, height: 844 }
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

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

describe('chat on ably_pg', { timeout: 600_000 }, () => {
  assert.ok(DATABASE_URL, 'DATABASE_URL must point at the chat database')
  const db = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
  const stamp = Date.now().toString(36)
  const roomTitle = `E2E ${stamp}`
  let browser
  let room
  /** @type {{ alice: import('playwright-core').Page, bob: import('playwright-core').Page }} */
  const page = {}

  // --- helpers -----------------------------------------------------------------

  const stored = '[data-testid="message"][data-message-id]'
  const messageByText = (p, text) => p.locator(stored).filter({ hasText: text })
  const messageById = (p, id) => p.locator(`[data-testid="message"][data-message-id="${id}"]`)
  const bodyOf = (p, id) => messageById(p, id).getByTestId('message-body').textContent({ timeout: 1000 })
  const dbMessage = async (id) => (await db.query('SELECT * FROM chat.messages WHERE id = $1', [id])).rows[0]
  const live = (p) => p.locator('[data-testid="connection-state"][data-live="true"]')
  const roomUrl = (id) => `${CHAT_URL}/rooms/${encodeURIComponent(id)}`

  async function signIn(name, viewport = DESKTOP) {
    const context = await browser.newContext({ viewport })
    const p = await context.newPage()
    p.on('pageerror', (err) => console.error(`[${name}] page error:`, err.message))
    await p.goto(CHAT_URL)
    await p.getByTestId('name-input').fill(name)
    await p.getByTestId('name-submit').click()
    await p.getByTestId('whoami').filter({ hasText: name }).waitFor()
    return p
  }

  async function openRoom(p, id = room.id) {
    await p.goto(roomUrl(id))
    await live(p).waitFor({ timeout: TIMEOUT })
  }

  async function send(p, text) {
    await p.getByTestId('composer-input').fill(text)
    await p.getByTestId('composer-send').click()
    const item = messageByText(p, text).last()
    await item.waitFor({ timeout: TIMEOUT })
    return Number(await item.getAttribute('data-message-id'))
  }

  /** Opens a message's "⋯" menu and clicks one of its items. */
  async function menuAction(p, id, testId) {
    await messageById(p, id).getByTestId('message-actions').click()
    await messageById(p, id).getByTestId(testId).click()
  }

  /** A request with this browser's cookies, from this site unless `origin` says otherwise. */
  function api(p, method, path, data, origin = CHAT_URL) {
    const headers = origin === null ? {} : { origin }
    return p.context().request.fetch(`${CHAT_URL}${path}`, { method, data, headers, failOnStatusCode: false })
  }

  async function messagesShown(p) {
    return p.locator(stored).evaluateAll((items) =>
      items.map((li) => ({
        id: Number(li.dataset.messageId),
        body: li.querySelector('[data-testid="message-body"]')?.textContent ?? null,
        deleted: li.querySelector('[data-testid="message-deleted"]') !== null,
      })),
    )
  }

  /**
   * Runs `fn(scroller)` in the page on the element that scrolls the message
   * list: the nearest scrollable ancestor, else the document. (Found rather
   * than named, so the same tests measure any layout.)
   */
  function onScroller(p, fn, arg) {
    return p.getByTestId('message-list').evaluate(
      (list, [source, a]) => {
        let el = list.parentElement
        while (el && el !== document.body) {
          const { overflowY } = getComputedStyle(el)
          if ((overflowY === 'auto' || overflowY === 'scroll') && el.scrollHeight > el.clientHeight) break
          el = el.parentElement
        }
        const scroller = el && el !== document.body ? el : document.scrollingElement
        return new Function('scroller', 'arg', `return (${source})(scroller, arg)`)(scroller, a)
      },
      [fn.toString(), arg],
    )
  }

  /** Whether the element is wholly visible inside the message pane and the window. */
  async function inView(p, locator) {
    const box = await locator.boundingBox()
    const pane = await onScroller(p, (el) => {
      const r = el === document.scrollingElement ? { y: 0, height: innerHeight } : el.getBoundingClientRect()
      return { y: r.y, height: r.height }
    })
    const vp = p.viewportSize()
    if (!box || !pane) return false
    const inside = (outer) => box.y >= outer.y - 1 && box.y + box.height <= outer.y + outer.height + 1
    return inside(pane) && inside({ y: 0, height: vp.height }) && box.x >= 0 && box.x + box.width <= vp.width + 1
  }

  async function activeTestId(p) {
    return p.evaluate(() => document.activeElement?.getAttribute('data-testid') ?? document.activeElement?.tagName)
  }

  /** Presses `key` until the focused element has `testId` (menus are navigated with arrows). */
  async function pressUntilFocused(p, key, testId, max = 12) {
    for (let i = 0; i < max; i++) {
      if ((await activeTestId(p)) === testId) return
      await p.keyboard.press(key)
    }
    assert.equal(await activeTestId(p), testId, `focus reaches ${testId} with ${key}`)
  }

  async function screenshot(p, name) {
    await p.screenshot({ path: join(ARTIFACTS_DIR, `${name}.png`) })
  }

  async function seriousAxeViolations(p) {
    await p.addScriptTag({ content: AXE_SOURCE })
    const results = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }))
    return results.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`)
  }

  // --- setup ---------------------------------------------------------------------

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

  // --- the basics ------------------------------------------------------------------

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
    await menuAction(page.alice, id, 'edit-button')
    await mine.getByTestId('edit-input').fill('Meeting at 11')
    await mine.getByTestId('edit-save').click()

    for (const p of [page.alice, page.bob]) {
      await waitFor('the edited body', async () => (await bodyOf(p, id)) === 'Meeting at 11')
      const marker = messageById(p, id).getByTestId('message-edited')
      await marker.waitFor()
      assert.equal((await marker.textContent()).trim(), 'edited', 'an edit by the author is not a moderator edit')
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

    await menuAction(page.alice, id, 'delete-button')
    await messageById(page.alice, id).getByTestId('delete-confirm').click()

    for (const p of [page.alice, page.bob]) {
      await messageById(p, id).getByTestId('message-deleted').waitFor({ timeout: TIMEOUT })
      assert.equal(await messageById(p, id).getByTestId('message-body').count(), 0)
    }
    const row = await dbMessage(id)
    assert.ok(row.deleted_at, 'the row is a tombstone')
    assert.equal(row.body, '')
  })

  test('an UPDATE made directly in the database appears in both browsers as a moderator edit', async () => {
    const id = await send(page.bob, 'Something a moderator will rewrite')
    await messageById(page.alice, id).waitFor({ timeout: TIMEOUT })

    await db.query(`UPDATE chat.messages SET body = '[removed by moderator]' WHERE id = $1`, [id])

    for (const p of [page.alice, page.bob]) {
      await waitFor('the moderated body', async () => (await bodyOf(p, id)) === '[removed by moderator]')
      await waitFor('the moderator marker', async () =>
        (await messageById(p, id).getByTestId('message-edited').textContent({ timeout: 1000 })).trim() === 'edited by moderator',
      )
    }
    await screenshot(page.alice, 'room-alice')
    await screenshot(page.bob, 'room-bob')
  })

  test("the second user cannot edit or delete the first user's message", async () => {
    const id = await send(page.alice, 'Only Alice may change this')
    const theirs = messageById(page.bob, id)
    await theirs.waitFor({ timeout: TIMEOUT })
    await theirs.getByTestId('message-actions').click()
    await theirs.getByTestId('message-menu').waitFor()
    assert.equal(await theirs.getByTestId('edit-button').count(), 0)
    assert.equal(await theirs.getByTestId('delete-button').count(), 0)
    await page.bob.keyboard.press('Escape')

    // The browser hides the controls; the server is what actually refuses.
    assert.equal((await api(page.bob, 'PATCH', `/api/messages/${id}`, { body: 'Bob was here' })).status(), 403)
    assert.equal((await api(page.bob, 'DELETE', `/api/messages/${id}`)).status(), 403)

    const row = await dbMessage(id)
    assert.equal(row.body, 'Only Alice may change this')
    assert.equal(row.version, 1)
    assert.equal(row.deleted_at, null)
  })

  test("the Ably token names bob's session, not his display name, and cannot publish", async () => {
    const session = await (await api(page.bob, 'GET', '/api/session')).json()
    assert.equal(session.name, 'bob')
    assert.match(session.id, /^[A-Za-z0-9_-]{16}$/)

    const res = await api(page.bob, 'GET', '/api/ably-token')
    assert.equal(res.status(), 200)
    const tokenRequest = await res.json()
    assert.equal(tokenRequest.clientId, session.id)
    const capability = Object.fromEntries(Object.entries(JSON.parse(tokenRequest.capability)).map(([ch, ops]) => [ch, [...ops].sort()]))
    assert.deepEqual(capability, { 'chat-rooms': ['subscribe'], 'chat:*': ['presence', 'subscribe'] })
    assert.match(tokenRequest.keyName, /^[^.:]+\.[^.:]+$/, 'the key name, never the secret')
    assert.equal(typeof tokenRequest.mac, 'string')

    const anonymous = await fetch(`${CHAT_URL}/api/ably-token`)
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

  test('links in messages are clickable and safe', async () => {
    const text = 'Docs at https://example.com/a?b=1, not javascript:alert(1) or <a href="javascript:alert(2)">this</a>'
    const id = await send(page.alice, text)
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })
    for (const p of [page.alice, page.bob]) {
      assert.equal(await bodyOf(p, id), text, 'the text is unchanged')
      const links = messageById(p, id).locator('a')
      assert.equal(await links.count(), 1)
      assert.equal(await links.getAttribute('href'), 'https://example.com/a?b=1')
      assert.equal(await links.textContent(), 'https://example.com/a?b=1')
      assert.equal(await links.getAttribute('target'), '_blank')
      const rel = (await links.getAttribute('rel')).split(/\s+/)
      assert.ok(rel.includes('noopener') && rel.includes('noreferrer'), `rel="${rel.join(' ')}"`)
    }
  })

  test('Send is disabled over the length limit, and the server refuses such a message too', async () => {
    const before = await messagesShown(page.alice)
    const input = page.alice.getByTestId('composer-input')
    await input.fill('x'.repeat(4001))
    assert.equal(await page.alice.getByTestId('composer-send').isDisabled(), true)
    assert.match(await page.alice.getByTestId('composer-counter').textContent(), /4001 \/ 4000.*1 too many/)
    await input.press('Enter')
    assert.equal((await messagesShown(page.alice)).length, before.length)
    assert.equal(await page.alice.locator('[data-testid="message"][data-status]').filter({ hasText: 'xxxxxxxxxx' }).count(), 0)
    await input.fill('x'.repeat(4000))
    assert.equal(await page.alice.getByTestId('composer-send').isDisabled(), false)
    await input.fill('')
    assert.equal(await page.alice.getByTestId('composer-send').isDisabled(), true, 'nothing to send')

    const res = await api(page.alice, 'POST', `/api/rooms/${room.id}/messages`, { body: 'x'.repeat(4001) })
    assert.equal(res.status(), 400)
    assert.match((await res.json()).statusMessage, /at most 4000 characters/)
  })

  // --- identity and forgery (issue 9, item 12) -----------------------------------------

  test('another browser that picks the same display name cannot edit or delete her messages', async () => {
    const id = await send(page.alice, 'Written by the first alice')
    const impostor = await signIn('alice')
    try {
      await openRoom(impostor)
      const theirs = messageById(impostor, id)
      await theirs.waitFor({ timeout: TIMEOUT })
      assert.equal(await theirs.getByTestId('message-author').textContent(), 'alice')

      assert.equal((await api(impostor, 'PATCH', `/api/messages/${id}`, { body: 'Edited by the other alice' })).status(), 403)
      assert.equal((await api(impostor, 'DELETE', `/api/messages/${id}`)).status(), 403)
      const row = await dbMessage(id)
      assert.equal(row.body, 'Written by the first alice')
      assert.equal(row.deleted_at, null)

      await theirs.getByTestId('message-actions').click()
      await theirs.getByTestId('message-menu').waitFor()
      assert.equal(await theirs.getByTestId('edit-button').count(), 0, 'no edit for a same-named stranger')
      assert.equal(await theirs.getByTestId('delete-button').count(), 0)

      // Two people called alice are two people online.
      await waitFor('two alices in bob’s online list', async () =>
        (await page.bob.getByTestId('presence-member').allTextContents()).filter((n) => n.startsWith('alice')).length === 2,
      )
    } finally {
      // Closing the tab as a person does (beforeunload runs, and ably-js
      // closes its connection then). Should the socket simply drop instead,
      // Ably keeps her present for the 15 s leave delay; the wait allows
      // for that too.
      const closed = new Promise((resolve) => impostor.once('close', resolve))
      await impostor.close({ runBeforeUnload: true })
      await closed
      await impostor.context().close()
    }
    await waitFor(
      'one alice again',
      async () =>
        (await page.bob.getByTestId('presence-member').allTextContents()).filter((n) => n.startsWith('alice')).length === 1,
      PRESENCE_LEAVE_DELAY + TIMEOUT,
    )
  })

  test('state-changing requests from another origin, or without one, are refused with 403', async () => {
    const mine = await send(page.alice, 'Cross-origin target')
    const evil = 'http://evil.example'
    const attempts = [
      ['POST', `/api/rooms/${room.id}/messages`, { body: 'forged cross-origin post' }],
      ['PATCH', `/api/messages/${mine}`, { body: 'forged cross-origin edit' }],
      ['DELETE', `/api/messages/${mine}`, undefined],
      ['POST', `/api/messages/${mine}/reactions`, { emoji: '👍', on: true }],
      ['PUT', '/api/session', { name: 'renamed by evil' }],
      ['POST', '/api/rooms', { title: `forged room ${stamp}` }],
      ['PUT', `/api/rooms/${room.id}/read`, { upTo: mine }],
    ]
    for (const [method, path, data] of attempts) {
      for (const origin of [evil, 'null', null]) {
        const res = await api(page.alice, method, path, data, origin)
        assert.equal(res.status(), 403, `${method} ${path} with Origin ${origin}`)
      }
    }
    const row = await dbMessage(mine)
    assert.equal(row.body, 'Cross-origin target')
    assert.equal(row.deleted_at, null)
    const forged = await db.query(
      `SELECT (SELECT count(*) FROM chat.messages WHERE body LIKE 'forged%')::int AS messages,
              (SELECT count(*) FROM chat.reactions WHERE message_id = $1)::int AS reactions,
              (SELECT count(*) FROM chat.rooms WHERE title LIKE 'forged room%')::int AS rooms`,
      [mine],
    )
    assert.deepEqual(forged.rows[0], { messages: 0, reactions: 0, rooms: 0 })
    assert.equal((await (await api(page.alice, 'GET', '/api/session')).json()).name, 'alice')
    // The same request from the app's own origin is accepted.
    const ok = await api(page.alice, 'PATCH', `/api/messages/${mine}`, { body: 'Cross-origin target, edited here' })
    assert.equal(ok.status(), 200)
  })

  test("a page on another origin of the same host cannot post with the user's cookie", async () => {
    // Another port of 127.0.0.1 is the same site, so SameSite=Lax still sends
    // the session cookie: only the Origin check stands between this page and
    // a message posted in bob's name.
    const target = `${CHAT_URL}/api/rooms/${room.id}/messages`
    const html = `<!doctype html><title>attack</title><script>
      fetch(${JSON.stringify(target)}, { method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'body=forged+by+another+site' })
        .then(() => { document.title = 'sent' }, () => { document.title = 'failed' })
    </script>`
    const attacker = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html))
    await new Promise((resolve) => attacker.listen(0, '127.0.0.1', resolve))
    const tab = await page.bob.context().newPage()
    try {
      await tab.goto(`http://127.0.0.1:${attacker.address().port}/`)
      await waitFor('the forged request to complete', async () => (await tab.title()) === 'sent')
    } finally {
      await tab.close()
      attacker.close()
    }
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM chat.messages WHERE body = 'forged by another site'`)
    assert.equal(rows[0].n, 0, 'nothing was posted')
  })

  test('the browser ignores Ably messages for tables it does not expect', async () => {
    const fake = (schema, table, roomId) => ({
      event: 'insert', schema, table,
      new: { id: 990000001, room_id: roomId, author: 'mallory', author_id: null, body: `forged ${schema}.${table}`, created_at: new Date().toISOString(),
        edited_at: null, edited_by: null, deleted_at: null, deleted_by: null, client_key: null, version: 1 },
      old: null,
    })
    for (const [schema, table] of [['public', 'messages'], ['pg_temp_3', 'messages'], ['chat', 'rooms'], ['chat', 'message_edits']]) {
      await db.query(`SELECT ably.publish($1, 'messages.insert', $2::jsonb)`, [`chat:${room.id}`, JSON.stringify(fake(schema, table, room.id))])
    }
    // A real change published after the forged ones: once it is shown, the
    // forged ones (delivered before it, in order) have been processed.
    const { rows } = await db.query(
      `INSERT INTO chat.messages (room_id, author, body) VALUES ($1, 'carol', 'genuine after forged') RETURNING id`,
      [room.id],
    )
    for (const p of [page.alice, page.bob]) {
      await messageById(p, rows[0].id).waitFor({ timeout: TIMEOUT })
      assert.equal(await messageById(p, 990000001).count(), 0, 'no forged message shown')
      assert.equal(await p.locator('[data-testid="message"]').filter({ hasText: /forged (public|pg_temp_3|chat)\./ }).count(), 0)
    }
  })

  // --- sending, status, offline ---------------------------------------------------------

  test('a sent message shows "sending", then "sent"; a failed one offers retry, and retrying posts it once', async () => {
    let release
    const gate = new Promise((resolve) => (release = resolve))
    const postsOnly = async (route) => {
      if (route.request().method() !== 'POST') return route.fallback()
      await gate
      await route.fallback()
    }
    await page.alice.route('**/api/rooms/*/messages', postsOnly)
    await page.alice.getByTestId('composer-input').fill('Status check')
    await page.alice.getByTestId('composer-send').click()
    const pendingItem = page.alice.locator('[data-testid="message"][data-status="sending"]').filter({ hasText: 'Status check' })
    await pendingItem.waitFor({ timeout: TIMEOUT })
    assert.match(await pendingItem.getByTestId('message-status').textContent(), /Sending/)
    await screenshot(page.alice, 'status-sending')
    release()
    const sent = page.alice.locator('[data-testid="message"][data-status="sent"]').filter({ hasText: 'Status check' })
    await sent.waitFor({ timeout: TIMEOUT })
    assert.equal((await sent.getByTestId('message-status').textContent()).trim(), 'Sent')
    await page.alice.unroute('**/api/rooms/*/messages', postsOnly)

    const abort = (route) => (route.request().method() === 'POST' ? route.abort('connectionrefused') : route.fallback())
    await page.alice.route('**/api/rooms/*/messages', abort)
    await page.alice.getByTestId('composer-input').fill(`This one fails first ${stamp}`)
    await page.alice.getByTestId('composer-send').click()
    const failed = page.alice.locator('[data-testid="message"][data-status="failed"]').filter({ hasText: `This one fails first ${stamp}` })
    await failed.waitFor({ timeout: TIMEOUT })
    assert.match(await failed.getByTestId('message-status').textContent(), /Not sent: Could not reach the chat server/)
    await screenshot(page.alice, 'status-failed')
    await page.alice.unroute('**/api/rooms/*/messages', abort)
    await failed.getByTestId('retry-button').click()
    await page.alice.locator('[data-testid="message"][data-status="sent"]').filter({ hasText: `This one fails first ${stamp}` }).waitFor({ timeout: TIMEOUT })
    await messageByText(page.bob, `This one fails first ${stamp}`).waitFor({ timeout: TIMEOUT })
    const { rows } = await db.query('SELECT count(*)::int AS n FROM chat.messages WHERE body = $1', [`This one fails first ${stamp}`])
    assert.equal(rows[0].n, 1)
  })

  test('offline: explained, sends wait and go out on reconnect, missed changes are re-synced', async () => {
    const id = await send(page.alice, 'Written before the outage')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })

    const bobContext = page.bob.context()
    await bobContext.setOffline(true)
    try {
      await page.bob.locator('[data-testid="connection-state"][data-live="false"]').waitFor({ timeout: TIMEOUT })
      const banner = page.bob.getByTestId('offline-banner')
      await banner.waitFor({ timeout: TIMEOUT })
      assert.match(await banner.textContent(), /offline/i)
      await db.query(`UPDATE chat.messages SET body = 'Rewritten during the outage' WHERE id = $1`, [id])
      await send(page.alice, 'Sent during the outage')
      await page.bob.getByTestId('composer-input').fill(`Queued while offline ${stamp}`)
      await page.bob.getByTestId('composer-send').click()
      const queued = page.bob.locator('[data-testid="message"][data-status="queued"]').filter({ hasText: `Queued while offline ${stamp}` })
      await queued.waitFor({ timeout: TIMEOUT })
      assert.match(await queued.getByTestId('message-status').textContent(), /back online/)
      await screenshot(page.bob, 'offline-bob')
    } finally {
      await bobContext.setOffline(false)
    }

    await live(page.bob).waitFor({ timeout: 30_000 })
    assert.equal(await page.bob.getByTestId('offline-banner').count(), 0)
    await waitFor('the missed edit', async () => (await bodyOf(page.bob, id)) === 'Rewritten during the outage')
    await messageByText(page.bob, 'Sent during the outage').waitFor({ timeout: TIMEOUT })
    await messageByText(page.alice, `Queued while offline ${stamp}`).waitFor({ timeout: TIMEOUT })
    const { rows } = await db.query('SELECT count(*)::int AS n FROM chat.messages WHERE body = $1', [`Queued while offline ${stamp}`])
    assert.equal(rows[0].n, 1)
  })

  // --- keyboard ---------------------------------------------------------------------------

  test('edit and delete work with the keyboard only; the edit box grows; an error clears on cancel', async () => {
    const p = page.alice
    const id = await send(p, 'Typed with a keyboard')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })
    const mine = messageById(p, id)

    // From the composer, Shift+Tab reaches the newest message's "⋯" button.
    await p.getByTestId('composer-input').focus()
    await p.keyboard.press('Shift+Tab')
    assert.equal(await activeTestId(p), 'message-actions')
    assert.equal(await p.evaluate(() => document.activeElement.closest('[data-message-id]')?.dataset.messageId), String(id))
    await p.keyboard.press('Enter')
    await pressUntilFocused(p, 'ArrowDown', 'edit-button')
    await p.keyboard.press('Enter')
    assert.equal(await activeTestId(p), 'edit-input')
    const box = mine.getByTestId('edit-input')
    const oneLine = (await box.boundingBox()).height
    await p.keyboard.press('ControlOrMeta+a')
    await p.keyboard.type('Edited')
    for (const line of ['with', 'the', 'keyboard', 'over', 'six lines']) {
      await p.keyboard.press('Shift+Enter')
      await p.keyboard.type(line)
    }
    const grown = await box.evaluate((el) => ({ height: el.getBoundingClientRect().height, scroll: el.scrollHeight, client: el.clientHeight }))
    assert.ok(grown.height > oneLine * 2.5, `the edit box grew (${oneLine} -> ${grown.height} px)`)
    assert.ok(grown.scroll <= grown.client + 2, 'all six lines are visible without scrolling inside the box')
    await screenshot(p, 'keyboard-edit')
    await p.keyboard.press('Enter')
    const expected = 'Edited\nwith\nthe\nkeyboard\nover\nsix lines'
    for (const q of [page.alice, page.bob]) {
      await waitFor('the keyboard edit', async () => (await bodyOf(q, id)) === expected)
    }
    assert.equal(await activeTestId(p), 'message-actions', 'focus returns to the message')

    // A failed save shows an error; Escape cancels and clears it.
    const abort = (route) => (route.request().method() === 'PATCH' ? route.abort('connectionrefused') : route.fallback())
    await p.route('**/api/messages/*', abort)
    await p.keyboard.press('Enter')
    await pressUntilFocused(p, 'ArrowDown', 'edit-button')
    await p.keyboard.press('Enter')
    await p.keyboard.type(' again')
    await p.keyboard.press('Enter')
    await mine.getByTestId('message-error').waitFor({ timeout: TIMEOUT })
    await p.keyboard.press('Escape')
    await waitFor('the error to clear', async () => (await mine.getByTestId('message-error').count()) === 0)
    assert.equal(await mine.getByTestId('edit-input').count(), 0)
    assert.equal(await bodyOf(p, id), expected)
    await p.unroute('**/api/messages/*', abort)

    // Delete: ⋯, Delete, confirm — all keys.
    await p.getByTestId('composer-input').focus()
    await p.keyboard.press('Shift+Tab')
    await p.keyboard.press('Enter')
    await pressUntilFocused(p, 'ArrowDown', 'delete-button')
    await p.keyboard.press('Enter')
    assert.equal(await activeTestId(p), 'delete-confirm')
    await p.keyboard.press('Enter')
    for (const q of [page.alice, page.bob]) {
      await messageById(q, id).getByTestId('message-deleted').waitFor({ timeout: TIMEOUT })
    }
  })

  // --- reactions, typing, unread ---------------------------------------------------------------

  test('reactions: one added in psql appears in both browsers, and toggles in a browser reach the other', async () => {
    const id = await send(page.bob, 'React to this')
    await messageById(page.alice, id).waitFor({ timeout: TIMEOUT })
    const chip = (p, emoji) => messageById(p, id).locator(`[data-testid="reaction"][data-emoji="${emoji}"]`)
    const count = async (p, emoji) => chip(p, emoji).evaluateAll((els) => Number(els[0]?.dataset.count ?? 0))

    await db.query(`INSERT INTO chat.reactions (message_id, emoji) VALUES ($1, '🎉')`, [id])
    for (const p of [page.alice, page.bob]) await waitFor('🎉 from psql', async () => (await count(p, '🎉')) === 1)

    await messageById(page.alice, id).getByTestId('message-actions').click()
    await messageById(page.alice, id).locator('[data-testid="react-option"][data-emoji="👍"]').click()
    for (const p of [page.alice, page.bob]) await waitFor('alice’s 👍', async () => (await count(p, '👍')) === 1)
    assert.equal(await chip(page.alice, '👍').getAttribute('aria-pressed'), 'true')
    assert.equal(await chip(page.bob, '👍').getAttribute('aria-pressed'), 'false')

    await chip(page.bob, '👍').click()
    for (const p of [page.alice, page.bob]) await waitFor('two 👍', async () => (await count(p, '👍')) === 2)
    await screenshot(page.alice, 'reactions-alice')

    await chip(page.alice, '👍').click()
    for (const p of [page.alice, page.bob]) await waitFor('one 👍 again', async () => (await count(p, '👍')) === 1)
    await db.query(`DELETE FROM chat.reactions WHERE message_id = $1 AND emoji = '🎉'`, [id])
    for (const p of [page.alice, page.bob]) await waitFor('🎉 gone', async () => (await count(p, '🎉')) === 0)

    const { rows } = await db.query('SELECT user_name, emoji FROM chat.reactions WHERE message_id = $1', [id])
    assert.deepEqual(rows, [{ user_name: 'bob', emoji: '👍' }])
  })

  test('typing shows in the other browser and clears', async () => {
    const indicator = page.bob.getByTestId('typing-indicator')
    const input = page.alice.getByTestId('composer-input')
    await input.focus()
    await page.alice.keyboard.type('I am writ')
    await waitFor('alice typing', async () => (await indicator.textContent()).trim() === 'alice is typing…')
    await screenshot(page.bob, 'typing-bob')
    await page.alice.keyboard.press('ControlOrMeta+a')
    await page.alice.keyboard.press('Backspace')
    await waitFor('typing cleared by emptying the box', async () => (await indicator.textContent()).trim() === '')

    await page.alice.keyboard.type('Now sending')
    await waitFor('alice typing again', async () => (await indicator.textContent()).trim() === 'alice is typing…')
    await page.alice.keyboard.press('Enter')
    await waitFor('typing cleared by sending', async () => (await indicator.textContent()).trim() === '')
    await messageByText(page.bob, 'Now sending').waitFor({ timeout: TIMEOUT })
    assert.equal(await page.alice.getByTestId('typing-indicator').textContent(), '', 'nobody sees their own typing')
  })

  test('unread counts rise in the room list and clear on opening the room', async () => {
    const otherRoom = await (await api(page.bob, 'POST', '/api/rooms', { title: `Unread ${stamp}` })).json()
    const badge = page.alice.getByTestId(`unread-${otherRoom.id}`)
    await page.alice.getByTestId(`room-link-${otherRoom.id}`).waitFor({ timeout: TIMEOUT })
    assert.equal(await badge.count(), 0)

    await openRoom(page.bob, otherRoom.id)
    await send(page.bob, 'Unread one')
    await send(page.bob, 'Unread two')
    await waitFor('2 unread', async () => (await badge.getAttribute('data-count', { timeout: 1000 })) === '2')
    await waitFor('the tab title counts them', async () => (await page.alice.title()).startsWith('(2) '))
    await screenshot(page.alice, 'unread-alice')

    // The count is stored: a reload shows it again.
    await openRoom(page.alice)
    await waitFor('2 unread after reload', async () => (await badge.getAttribute('data-count', { timeout: 1000 })) === '2')

    await page.alice.getByTestId(`room-link-${otherRoom.id}`).click()
    await live(page.alice).waitFor({ timeout: TIMEOUT })
    const two = await messageByText(page.alice, 'Unread two').getAttribute('data-message-id')
    assert.equal(await badge.count(), 0, 'no badge on the open room')
    const alice = (await (await api(page.alice, 'GET', '/api/session')).json()).id
    await waitFor('the read marker stored', async () =>
      (await db.query('SELECT 1 FROM chat.room_reads WHERE user_id = $1 AND room_id = $2 AND last_read_id >= $3', [alice, otherRoom.id, two])).rowCount === 1,
    )
    await openRoom(page.alice)
    await page.alice.getByTestId(`room-link-${otherRoom.id}`).waitFor()
    await waitFor('the room list loaded', async () => (await page.alice.getByTestId('room-list').locator('a').count()) >= 2)
    assert.equal(await badge.count(), 0, 'still read after a reload')

    await send(page.bob, 'Unread three')
    await waitFor('1 unread', async () => (await badge.getAttribute('data-count', { timeout: 1000 })) === '1')
    await page.bob.goto(roomUrl(room.id))
    await live(page.bob).waitFor({ timeout: TIMEOUT })
  })

  // --- rename, how it works, addresses, accessibility -----------------------------------------------

  test('renaming keeps authorship: earlier messages stay editable, the new name shows', async () => {
    const id = await send(page.alice, 'Written before the rename')
    await page.alice.getByTestId('rename-button').click()
    await page.alice.getByTestId('rename-input').fill('changed my mind')
    await page.alice.keyboard.press('Escape')
    assert.equal(await page.alice.getByTestId('whoami').textContent(), 'alice', 'Escape keeps the old name')

    await page.alice.getByTestId('rename-button').click()
    assert.equal(await page.alice.getByTestId('rename-input').inputValue(), 'alice', 'the form starts from the current name')
    await page.alice.getByTestId('rename-input').fill('Alice Liddell')
    await page.alice.getByTestId('rename-save').click()
    await page.alice.getByTestId('whoami').filter({ hasText: 'Alice Liddell' }).waitFor()
    await waitFor('the new name online', async () => (await page.bob.getByTestId('presence-member').allTextContents()).some((n) => n.startsWith('Alice Liddell')))

    await menuAction(page.alice, id, 'edit-button')
    await messageById(page.alice, id).getByTestId('edit-input').fill('Edited after the rename')
    await messageById(page.alice, id).getByTestId('edit-save').click()
    await waitFor('the edit after the rename', async () => (await bodyOf(page.bob, id)) === 'Edited after the rename')
    const next = await send(page.alice, 'Written after the rename')
    await messageById(page.bob, next).waitFor({ timeout: TIMEOUT })
    assert.equal(await messageById(page.bob, next).getByTestId('message-author').textContent(), 'Alice Liddell')
    const rows = (await db.query('SELECT author_id FROM chat.messages WHERE id = ANY($1) ', [[id, next]])).rows
    assert.equal(new Set(rows.map((r) => r.author_id)).size, 1, 'one author id before and after')

    await page.alice.getByTestId('rename-button').click()
    await page.alice.getByTestId('rename-input').fill('alice')
    await page.alice.getByTestId('rename-input').press('Enter')
    await page.alice.getByTestId('whoami').filter({ hasText: /^alice$/ }).waitFor()
  })

  test('"How it works" shows the Ably messages as ably_pg sent them, and its psql command works', async () => {
    await page.alice.getByTestId('how-toggle').click()
    const panel = page.alice.getByTestId('how-panel')
    await panel.waitFor()
    const id = await send(page.bob, 'Watch me in the panel')
    await messageById(page.alice, id).waitFor({ timeout: TIMEOUT })
    const entry = panel.locator('[data-testid="how-log-entry"][data-name="messages.insert"]').filter({ hasText: `insert on chat.messages (id ${id})` })
    await entry.waitFor({ timeout: TIMEOUT })

    const command = (await panel.getByTestId('psql-command').textContent()).trim()
    assert.match(command, new RegExp(`^psql '[^']+' -c "UPDATE chat\\.messages SET body = 'Changed in psql' WHERE id = ${id}"$`))
    execFileSync('/bin/sh', ['-c', command], { stdio: 'pipe' })
    for (const p of [page.alice, page.bob]) {
      await waitFor('the psql change', async () => (await bodyOf(p, id)) === 'Changed in psql')
    }
    const update = panel.locator('[data-testid="how-log-entry"][data-name="messages.update"]').filter({ hasText: `(id ${id})` }).first()
    await update.waitFor({ timeout: TIMEOUT })
    await update.locator('summary').click()
    const data = JSON.parse(await update.getByTestId('how-log-data').textContent())
    assert.equal(data.event, 'update')
    assert.equal(data.schema, 'chat')
    assert.equal(data.table, 'messages')
    assert.equal(data.new.id, id)
    assert.equal(data.new.body, 'Changed in psql')
    assert.equal(data.old.body, 'Watch me in the panel')
    await screenshot(page.alice, 'how-it-works-desktop')
    await page.alice.getByTestId('how-toggle').click()
    await panel.waitFor({ state: 'detached' })
  })

  test('a room titled in any script gets a readable address, and the tab title names the room', async () => {
    const titled = (t) => new RegExp(`^(\\(\\d+\\) )?${t} · ably_pg chat$`)
    assert.match(await page.alice.title(), titled(roomTitle))
    const title = `日本語 チャット ${stamp}`
    await page.alice.getByTestId('new-room-input').fill(title)
    await page.alice.getByTestId('new-room-submit').click()
    await waitFor('the new room', async () => decodeURIComponent(new URL(page.alice.url()).pathname) === `/rooms/日本語-チャット-${stamp}`)
    await live(page.alice).waitFor({ timeout: TIMEOUT })
    await waitFor('the tab title', async () => titled(title).test(await page.alice.title()))
    const unicodeRoom = decodeURIComponent(new URL(page.alice.url()).pathname).split('/').pop()
    await openRoom(page.bob, unicodeRoom)
    const id = await send(page.alice, 'こんにちは')
    await messageById(page.bob, id).waitFor({ timeout: TIMEOUT })
    await page.bob.goto(roomUrl(room.id))
    await openRoom(page.alice)
    await live(page.bob).waitFor({ timeout: TIMEOUT })
  })

  test('accessibility basics: language, landmarks, labelled inputs, new messages announced', async () => {
    const p = page.alice
    assert.equal(await p.getAttribute('html', 'lang'), 'en')
    assert.equal(await p.locator('main').count(), 1)
    assert.equal(await p.getByRole('navigation', { name: 'Rooms' }).count(), 1)
    assert.equal(await p.getByRole('complementary').count(), 1)
    assert.equal(await p.getByRole('banner').count(), 1)
    assert.equal(await p.getByLabel('Message', { exact: true }).getAttribute('data-testid'), 'composer-input')
    const announcer = p.getByTestId('live-announcer')
    assert.equal(await announcer.getAttribute('aria-live'), 'polite')
    await send(page.bob, 'Announce me')
    await waitFor('the announcement', async () => (await announcer.textContent()).trim() === 'bob: Announce me')
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
    await live(page.bob).waitFor({ timeout: TIMEOUT })
    await waitFor('the newest page', async () => (await messagesShown(page.bob)).length === 50)
    assert.deepEqual(await messagesShown(page.bob), expected.slice(-50))

    while (await page.bob.getByTestId('load-older').count()) {
      const shown = (await messagesShown(page.bob)).length
      await page.bob.getByTestId('load-older').click()
      await waitFor('an older page', async () => (await messagesShown(page.bob)).length > shown)
    }
    assert.deepEqual(await messagesShown(page.bob), expected)
    await screenshot(page.bob, 'room-bob-reloaded')
  })

  // --- layout, at a laptop and at a phone size, with 100 messages -------------------------

  describe('a room with 100 messages', () => {
    const busy = { id: `busy-${stamp}`, title: `Busy room ${stamp}` }

    before(async () => {
      await db.query(`INSERT INTO chat.rooms (id, title, created_by) VALUES ($1, $2, 'carol')`, [busy.id, busy.title])
      // Four days of history, newest now, so the pane shows day separators.
      await db.query(
        `INSERT INTO chat.messages (room_id, author, body, created_at)
         SELECT $1, CASE WHEN n % 3 = 0 THEN 'dave' ELSE 'carol' END,
                'history ' || n || CASE WHEN n % 7 = 0 THEN E'\\na second line' ELSE '' END,
                now() - (100 - n) * interval '45 minutes'
           FROM generate_series(1, 100) n`,
        [busy.id],
      )
    })

    // CHAT_E2E_SIZES=mobile runs the layout tests at one size only.
    const sizes = (process.env.CHAT_E2E_SIZES ?? 'desktop,mobile').split(',')
    for (const [size, viewport] of [['desktop', DESKTOP], ['mobile', MOBILE]].filter(([s]) => sizes.includes(s))) {
      describe(`at ${viewport.width}×${viewport.height}`, () => {
        before(async () => {
          await page.alice.setViewportSize(viewport)
          await openRoom(page.alice, busy.id)
          await openRoom(page.bob, busy.id)
        })

        test('opens at the newest message with the composer in view, and dates the days', async () => {
          const p = page.alice
          const composer = await p.getByTestId('composer-input').boundingBox()
          const send = await p.getByTestId('composer-send').boundingBox()
          for (const box of [composer, send]) {
            assert.ok(box.y >= 0 && box.y + box.height <= viewport.height, `composer inside the viewport: ${JSON.stringify(box)}`)
            assert.ok(box.x >= 0 && box.x + box.width <= viewport.width, `composer inside the viewport: ${JSON.stringify(box)}`)
          }
          const newest = p.locator(stored).last()
          const { rows } = await db.query('SELECT max(id)::int AS id FROM chat.messages WHERE room_id = $1', [busy.id])
          assert.equal(await newest.getAttribute('data-message-id'), String(rows[0].id))
          await waitFor('the newest message in view', async () => inView(p, newest))
          assert.equal(await p.evaluate(() => document.scrollingElement.scrollTop), 0, 'the page itself does not scroll')
          const days = await p.getByTestId('day-separator').allTextContents()
          assert.equal(days.at(-1).trim(), 'Today')
          assert.ok(days.length >= 2, `day separators: ${days.join(', ')}`)
          assert.ok(days.slice(0, -1).every((d) => d.trim() !== 'Today'))
          await screenshot(p, `busy-${size}-open`)
        })

        test("another user's message arrives into view when at the bottom", async () => {
          const id = await send(page.bob, `Arrives in view (${size})`)
          const theirs = messageById(page.alice, id)
          await theirs.waitFor({ timeout: TIMEOUT })
          await waitFor('the new message in view', async () => inView(page.alice, theirs))
          assert.equal(await page.alice.getByTestId('new-pill').count(), 0)
        })

        test('scrolled up, a new message raises the "N new" pill, which goes to it', async () => {
          const p = page.alice
          await onScroller(p, (el) => el.scrollTo({ top: el.scrollHeight / 3, behavior: 'instant' }))
          const id1 = await send(page.bob, `While scrolled up 1 (${size})`)
          await messageById(p, id1).waitFor({ timeout: TIMEOUT })
          const pill = p.getByTestId('new-pill')
          await waitFor('the pill', async () => (await pill.textContent({ timeout: 1000 })).trim() === '↓ 1 new')
          await send(page.bob, `While scrolled up 2 (${size})`)
          await waitFor('the pill counts 2', async () => (await pill.textContent({ timeout: 1000 })).trim() === '↓ 2 new')
          assert.equal(await inView(p, messageById(p, id1)), false, 'the reader stays where they were')
          await screenshot(p, `busy-${size}-new-pill`)
          await pill.click()
          await waitFor('the newest message in view', async () => inView(p, p.locator(stored).last()))
          await waitFor('the pill gone', async () => (await pill.count()) === 0)
        })

        test('"load older" keeps the first message where it was', async () => {
          const p = page.alice
          await p.reload()
          await live(p).waitFor({ timeout: TIMEOUT })
          await waitFor('the newest page', async () => (await p.locator(stored).count()) === 50)
          await onScroller(p, (el) => el.scrollTo({ top: 0, behavior: 'instant' }))
          const first = p.locator(stored).first()
          const firstId = await first.getAttribute('data-message-id')
          const before = (await first.boundingBox()).y
          await p.getByTestId('load-older').click()
          await waitFor('older messages', async () => (await p.locator(stored).count()) > 50)
          const after = (await messageById(p, firstId).boundingBox()).y
          assert.ok(Math.abs(after - before) <= 20, `message ${firstId} moved from y=${before} to y=${after}`)
          assert.ok(await inView(p, messageById(p, firstId)))
          await screenshot(p, `busy-${size}-load-older`)
        })

        test('edit and delete work with the keyboard only', async () => {
          const p = page.alice
          const id = await send(p, `Keyboard at ${size}`)
          await p.getByTestId('composer-input').focus()
          await p.keyboard.press('Shift+Tab')
          assert.equal(await p.evaluate(() => document.activeElement.closest('[data-message-id]')?.dataset.messageId), String(id))
          await p.keyboard.press('Enter')
          await pressUntilFocused(p, 'ArrowDown', 'edit-button')
          await p.keyboard.press('Enter')
          await p.keyboard.type(' (edited)')
          await p.keyboard.press('Enter')
          for (const q of [page.alice, page.bob]) {
            await waitFor('the keyboard edit', async () => (await bodyOf(q, id)) === `Keyboard at ${size} (edited)`)
          }
          await p.keyboard.press('Enter')
          await pressUntilFocused(p, 'ArrowDown', 'delete-button')
          await p.keyboard.press('Enter')
          await p.keyboard.press('Enter')
          for (const q of [page.alice, page.bob]) await messageById(q, id).getByTestId('message-deleted').waitFor({ timeout: TIMEOUT })
        })

        test('a reaction added in psql appears in both browsers', async () => {
          const { rows } = await db.query('SELECT max(id)::int AS id FROM chat.messages WHERE room_id = $1 AND deleted_at IS NULL', [busy.id])
          await db.query(`INSERT INTO chat.reactions (message_id, emoji) VALUES ($1, '❤️')`, [rows[0].id])
          for (const p of [page.alice, page.bob]) {
            const chip = messageById(p, rows[0].id).locator('[data-testid="reaction"][data-emoji="❤️"]')
            await waitFor('the reaction', async () => (await chip.evaluateAll((els) => els[0]?.dataset.count)) === '1')
            assert.ok(await inView(p, chip), 'the reaction is in view')
          }
          await screenshot(page.alice, `busy-${size}-reaction`)
        })

        test('typing shows in the other browser and clears', async () => {
          const indicator = page.alice.getByTestId('typing-indicator')
          await page.bob.getByTestId('composer-input').focus()
          await page.bob.keyboard.type('typing at ' + size)
          await waitFor('bob typing', async () => (await indicator.textContent()).trim() === 'bob is typing…')
          assert.ok((await indicator.boundingBox()).y + 10 < viewport.height, 'the indicator is on screen')
          await screenshot(page.alice, `busy-${size}-typing`)
          await page.bob.getByTestId('composer-input').fill('')
          await waitFor('typing cleared', async () => (await indicator.textContent()).trim() === '')
        })

        if (size === 'mobile') {
          test('message actions are 44 px touch targets', async () => {
            const p = page.alice
            await onScroller(p, (el) => el.scrollTo({ top: el.scrollHeight, behavior: 'instant' }))
            const last = p.locator(stored).filter({ has: p.getByTestId('message-actions') }).last()
            const button = last.getByTestId('message-actions')
            const box = await button.boundingBox()
            assert.ok(box.width >= 44 && box.height >= 44, `⋯ is ${box.width}×${box.height}`)
            await button.click()
            const items = last.locator('[role^="menuitem"]')
            for (const item of await items.all()) {
              const b = await item.boundingBox()
              assert.ok(b.height >= 44 && b.width >= 44, `menu item ${b.width}×${b.height}`)
              assert.ok(b.y >= 0 && b.y + b.height <= viewport.height, 'the menu is on screen')
            }
            await screenshot(p, `busy-${size}-menu`)
            await p.keyboard.press('Escape')
          })

          test('the "N online" chip opens a drawer with who is online', async () => {
            const p = page.alice
            const chip = p.getByTestId('online-chip')
            await waitFor('2 online', async () => (await chip.textContent()).trim() === '2 online')
            await chip.click()
            const drawer = p.getByTestId('drawer')
            await drawer.waitFor({ state: 'visible' })
            const names = await drawer.getByTestId('presence-member').allTextContents()
            assert.ok(names.some((n) => n.startsWith('alice')) && names.some((n) => n.startsWith('bob')), names.join(', '))
            await screenshot(p, `busy-${size}-online`)
            await p.keyboard.press('Escape')
            await drawer.waitFor({ state: 'hidden' })
          })

          test('the room list on a phone shows unread counts, cleared on opening the room', async () => {
            const p = page.alice
            const phoneRoom = await (await api(page.bob, 'POST', '/api/rooms', { title: `Phone ${stamp}` })).json()
            await p.goto(CHAT_URL)
            await p.getByTestId(`room-link-${phoneRoom.id}`).waitFor({ timeout: TIMEOUT })
            const badge = p.getByTestId(`unread-${phoneRoom.id}`)
            await openRoom(page.bob, phoneRoom.id)
            await send(page.bob, `Unread on a phone (${size})`)
            await waitFor('unread on the phone', async () => Number(await badge.getAttribute('data-count', { timeout: 1000 })) >= 1)
            await screenshot(p, `rooms-${size}`)
            await p.getByTestId(`room-link-${phoneRoom.id}`).click()
            await messageByText(p, `Unread on a phone (${size})`).waitFor({ timeout: TIMEOUT })
            await p.getByTestId('back-to-rooms').click()
            await p.getByTestId(`room-link-${phoneRoom.id}`).waitFor()
            assert.equal(await badge.count(), 0)
            await openRoom(page.bob, busy.id)
            await openRoom(p, busy.id)
          })

          test('"How it works" opens full screen', async () => {
            const p = page.alice
            await p.getByTestId('how-toggle').click()
            await p.getByTestId('how-panel').waitFor({ state: 'visible' })
            const box = await p.getByTestId('drawer').boundingBox()
            assert.ok(box.width >= viewport.width - 1, 'full width')
            await send(page.bob, `Shown in the panel (${size})`)
            await p.locator('[data-testid="how-log-entry"][data-name="messages.insert"]').first().waitFor({ timeout: TIMEOUT })
            await screenshot(p, `how-it-works-${size}`)
            await p.getByTestId('drawer-close').click()
            await p.getByTestId('drawer').waitFor({ state: 'hidden' })
          })
        }

        test('axe-core finds no serious or critical accessibility violations', async () => {
          const p = page.alice
          await openRoom(p, busy.id)
          await p.locator(stored).first().waitFor()
          assert.deepEqual(await seriousAxeViolations(p), [], 'room')
          await p.getByTestId('message-actions').last().click()
          assert.deepEqual(await seriousAxeViolations(p), [], 'room with a message menu open')
          await p.keyboard.press('Escape')
          await p.getByTestId('how-toggle').click()
          await p.getByTestId('how-panel').waitFor({ state: 'visible' })
          assert.deepEqual(await seriousAxeViolations(p), [], 'How it works')
          await p.goto(CHAT_URL)
          await p.getByTestId('room-list').locator('a').first().waitFor()
          assert.deepEqual(await seriousAxeViolations(p), [], 'room list')
          await screenshot(p, `home-${size}`)

          const stranger = await browser.newContext({ viewport })
          try {
            const s = await stranger.newPage()
            await s.goto(CHAT_URL)
            await s.getByTestId('name-input').waitFor()
            assert.deepEqual(await seriousAxeViolations(s), [], 'name picker')
            await screenshot(s, `name-picker-${size}`)
          } finally {
            await stranger.close()
          }
          await openRoom(p, busy.id)
        })
      })
    }
  })
})
