// Drives sluice's trigger API with the real ChatBotKit SDK (`@chatbotkit/sdk` from npm),
// the way a ChatBotKit program would, with only the base URL changed. Run by
// tests/triggers/chatbotkit_sdk.rs against the running binary:
//
//   SLUICE_URL=http://127.0.0.1:8080 SLUICE_API_TOKEN=... SLUICE_BOT=probe node sdk-check.mjs
//
// Every step asserts what it got; at the end the script prints one JSON line with the ids
// the Rust test then checks through the bot API (the events were processed, in which
// conversations, with which contacts).

import assert from 'node:assert/strict'

import { ChatBotKit } from '@chatbotkit/sdk'

const baseUrl = process.env.SLUICE_URL
const secret = process.env.SLUICE_API_TOKEN
const botId = process.env.SLUICE_BOT
assert.ok(baseUrl && secret && botId, 'set SLUICE_URL, SLUICE_API_TOKEN and SLUICE_BOT')

const cbk = new ChatBotKit({ baseUrl, secret })
const triggers = cbk.integration.trigger

// create
const created = []
for (const n of [1, 2, 3]) {
  const trigger = await triggers.create({
    name: `SDK trigger ${n}`,
    description: 'Created through @chatbotkit/sdk',
    botId,
    authenticate: n === 1,
    sessionDuration: 3600000,
    meta: { n },
  })
  assert.match(trigger.id, /^trg_/)
  assert.match(trigger.secret, /^[0-9a-f]{64}$/, 'the secret is returned at creation')
  created.push(trigger)
}
const main = created[0]

// list across two pages
const first = await triggers.list({ take: 2 })
assert.equal(first.items.length, 2)
assert.ok(first.cursor, 'a full first page carries a cursor')
const second = await triggers.list({ take: 2, cursor: first.cursor })
assert.equal(second.items.length, 1)
assert.equal(second.cursor, undefined, 'the last page has no cursor')
assert.deepEqual(
  [...first.items, ...second.items].map((t) => t.id),
  created.map((t) => t.id).reverse(),
  'newest first, each trigger once',
)
const ascending = await triggers.list({ take: 10, order: 'asc' })
assert.deepEqual(ascending.items.map((t) => t.id), created.map((t) => t.id))
const listedMain = ascending.items.find((t) => t.id === main.id)
assert.equal(listedMain.secret, main.secret, 'list shows the secret of an authenticating trigger')
const byMeta = await triggers.list({ meta: { n: '2' } })
assert.deepEqual(byMeta.items.map((t) => t.id), [created[1].id], 'meta filters')

// list().stream(): JSON lines, every page to the end, whatever take says
const streamed = []
for await (const line of triggers.list({ take: 1 }).stream()) {
  assert.equal(line.type, 'item')
  streamed.push(line.data.id)
}
assert.deepEqual(streamed, created.map((t) => t.id).reverse(), 'the stream goes to the end')

// errors carry ChatBotKit's string codes
const missing = await triggers.fetch('trg_nope').then(() => null, (error) => error)
assert.equal(missing?.code, 'NOT_FOUND', `a missing trigger: ${missing}`)

// fetch
const fetched = await triggers.fetch(main.id)
assert.equal(fetched.id, main.id)
assert.equal(fetched.name, 'SDK trigger 1')
assert.equal(fetched.botId, botId)
assert.equal(fetched.secret, main.secret)
assert.equal(fetched.authenticate, true)
assert.equal(fetched.sessionDuration, 3600000)
assert.equal(fetched.triggerSchedule, null)
assert.deepEqual(fetched.meta, { n: 1 })

// update
const updated = await triggers.update(main.id, {
  name: 'Order Processing Trigger',
  schedule: '0 0 * * *',
  timezone: 'America/New_York',
  sessionDuration: 7200000,
})
assert.equal(updated.id, main.id)
const refetched = await triggers.fetch(main.id)
assert.equal(refetched.name, 'Order Processing Trigger')
assert.equal(refetched.description, 'Created through @chatbotkit/sdk', 'untouched fields stay')
assert.equal(refetched.triggerSchedule, '0 0 * * *')
assert.equal(refetched.schedule, '0 0 * * *')
assert.equal(refetched.timezone, 'America/New_York')
assert.equal(refetched.sessionDuration, 7200000)
assert.equal(typeof refetched.nextTriggerAt, 'number')
assert.ok(refetched.nextTriggerAt > Date.now())

// setup, twice
assert.deepEqual(await triggers.setup(main.id), { id: main.id })
assert.deepEqual(await triggers.setup(main.id), { id: main.id })

// send events: the SDK has no event call, so a program uses fetch, as the seed shows
const eventUrl = `${baseUrl}/api/v1/integration/trigger/${main.id}/event`
const post = await fetch(
  `${eventUrl}?session=order_12345&contact.email=customer@example.com&contact.name=John+Smith`,
  {
    method: 'POST',
    headers: { authorization: `Bearer ${main.secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ event: 'order_created', order_id: '12345', amount: 149.99, n: 1 }),
  },
)
assert.equal(post.status, 200)
assert.deepEqual(await post.json(), { ok: true })
const postEventId = post.headers.get('x-sluice-event-id')

const unauthenticated = await fetch(eventUrl, { method: 'POST', body: 'hello' })
assert.equal(unauthenticated.status, 401)

const get = await fetch(`${eventUrl}?session=order_12345&contact_name=System+Monitor`, {
  headers: { authorization: `Bearer ${main.secret}` },
})
assert.equal(get.status, 200)
assert.deepEqual(await get.json(), { ok: true })
const getEventId = get.headers.get('x-sluice-event-id')

// invoke
const invoked = await triggers.invoke(main.id, {})
assert.equal(invoked.id, main.id)

// Deleting a trigger cancels the events it has not run yet, so wait until the
// background processing is done (sluice's own events API; ChatBotKit shows this in the
// Conversations tab).
async function processed(eventId) {
  for (let tries = 0; tries < 600; tries++) {
    const answer = await fetch(`${baseUrl}/api/v1/integration/trigger/${main.id}/events/${eventId}`, {
      headers: { authorization: `Bearer ${secret}` },
    })
    assert.equal(answer.status, 200)
    const { event } = await answer.json()
    if (event.status === 'done') return
    assert.ok(['queued', 'running'].includes(event.status), `event ${eventId} is ${event.status}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.fail(`event ${eventId} was not processed in time`)
}
for (const eventId of [postEventId, getEventId, invoked.eventId]) await processed(eventId)

// delete, then the event URL is gone
assert.deepEqual(await triggers.delete(main.id), { id: main.id })
await assert.rejects(triggers.fetch(main.id), (error) => {
  assert.match(error.message, /does not exist/)
  return true
})
const afterDelete = await fetch(eventUrl, {
  method: 'POST',
  headers: { authorization: `Bearer ${main.secret}`, 'content-type': 'application/json' },
  body: '{}',
})
assert.equal(afterDelete.status, 404)

console.log(
  JSON.stringify({
    triggerId: main.id,
    postEventId,
    getEventId,
    invokeEventId: invoked.eventId,
    others: created.slice(1).map((t) => t.id),
  }),
)
