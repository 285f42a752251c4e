// Drives a running sluice with the real @botpress/client package, the way a bot would.
// Run by tests/bot/botpress_client.rs, which starts sluice with the chat example and a fake
// platform, sends one signed reaction (so there is a chat:reactionAdded event), then
// runs: SLUICE_URL=... SLUICE_TOKEN=... SLUICE_BOT_ID=... node check.mjs
// Prints one JSON line with what it saw; exits 1 naming the first check that failed.

import assert from 'node:assert/strict'
import { Client } from '@botpress/client'

const { SLUICE_URL, SLUICE_TOKEN, SLUICE_BOT_ID } = process.env
if (!SLUICE_URL || !SLUICE_TOKEN || !SLUICE_BOT_ID) {
  console.error('set SLUICE_URL, SLUICE_TOKEN and SLUICE_BOT_ID')
  process.exit(2)
}
const client = new Client({ apiUrl: SLUICE_URL, token: SLUICE_TOKEN, botId: SLUICE_BOT_ID })
const seen = {}

async function check(name, run) {
  try {
    await run()
  } catch (error) {
    console.error(`check "${name}" failed: ${error?.stack ?? error}`)
    process.exit(1)
  }
}

let conversation
await check('getOrCreateConversation', async () => {
  const first = await client.getOrCreateConversation({
    channel: 'channel',
    tags: { channelId: 'C-node' },
    integrationName: 'chat',
  })
  conversation = first.conversation
  assert.equal(first.meta.created, true)
  assert.equal(conversation.channel, 'channel')
  assert.equal(conversation.integration, 'chat')
  assert.deepEqual(conversation.tags, { channelId: 'C-node' })
  const again = await client.getOrCreateConversation({
    channel: 'channel',
    tags: { channelId: 'C-node' },
    integrationName: 'chat',
  })
  assert.equal(again.meta.created, false)
  assert.equal(again.conversation.id, conversation.id)
  const { conversations } = await client.listConversations({ tags: { channelId: 'C-node' } })
  assert.deepEqual(conversations.map((c) => c.id), [conversation.id])
  const { conversation: fetched } = await client.getConversation({ id: conversation.id })
  assert.equal(fetched.id, conversation.id)
  seen.conversationId = conversation.id
})

await check('createMessage', async () => {
  const { message } = await client.createMessage({
    conversationId: conversation.id,
    userId: SLUICE_BOT_ID,
    type: 'text',
    payload: { text: 'hello from @botpress/client' },
    tags: {},
  })
  assert.equal(message.direction, 'outgoing')
  assert.equal(message.type, 'text')
  assert.deepEqual(message.payload, { text: 'hello from @botpress/client' })
  assert.match(message.tags.messageId, /^1700000000\.\d+$/, 'the ack brought the platform id back')
  const { message: fetched } = await client.getMessage({ id: message.id })
  assert.deepEqual(fetched, message)
  const { messages } = await client.listMessages({ tags: { messageId: message.tags.messageId } })
  assert.deepEqual(messages.map((m) => m.id), [message.id])
  seen.messageId = message.id
  seen.platformMessageId = message.tags.messageId
})

await check('createMessage refuses an undeclared type', async () => {
  const refused = await client
    .createMessage({
      conversationId: conversation.id,
      userId: SLUICE_BOT_ID,
      type: 'video',
      payload: { url: 'https://example.com/v.mp4' },
      tags: {},
    })
    .then(() => null, (error) => error)
  assert.ok(refused, 'the call failed')
  assert.equal(refused.type, 'InvalidPayload')
  assert.match(refused.message, /video/)
})

await check('callAction', async () => {
  const answer = await client.callAction({
    type: 'chat:sendMessage',
    input: { channelId: 'C-node', text: 'sent by an action' },
  })
  assert.match(answer.output.messageId, /^1700000000\.\d+$/)
  assert.equal(answer.output.timestamp, answer.output.messageId)
  assert.equal(answer.meta.cost, 1)
  const unknown = await client
    .callAction({ type: 'chat:teleport', input: {} })
    .then(() => null, (error) => error)
  assert.equal(unknown?.type, 'ResourceNotFound')
  seen.actionMessageId = answer.output.messageId
})

await check('listEvents', async () => {
  const { events } = await client.listEvents({ type: 'chat:reactionAdded' })
  assert.equal(events.length, 1)
  assert.equal(events[0].payload.reaction, 'tada')
  const { event } = await client.createEvent({ type: 'node:checked', payload: { by: 'check.mjs' } })
  const { event: fetched } = await client.getEvent({ id: event.id })
  assert.deepEqual(fetched, event)
  const mine = await client.listEvents({ type: 'node:checked' })
  assert.deepEqual(mine.events.map((e) => e.id), [event.id])
  seen.reactionEventId = events[0].id
})

await check('setState then getState', async () => {
  const key = { type: 'conversation', id: conversation.id, name: 'context' }
  const { state: set } = await client.setState({ ...key, payload: { step: 2, topic: 'groceries' } })
  assert.deepEqual(set.payload, { step: 2, topic: 'groceries' })
  const { state } = await client.getState(key)
  assert.deepEqual(state.payload, { step: 2, topic: 'groceries' })
  assert.equal(state.conversationId, conversation.id)
  const { state: patched } = await client.patchState({ ...key, payload: { step: 3 } })
  assert.deepEqual(patched.payload, { step: 3, topic: 'groceries' })
  const { state: kept } = await client.getOrSetState({ ...key, payload: { step: 0 } })
  assert.deepEqual(kept.payload, { step: 3, topic: 'groceries' })
})

await check('users', async () => {
  const { user, meta } = await client.getOrCreateUser({ tags: { userId: 'U-node' }, integrationName: 'chat', name: 'Node' })
  assert.equal(meta.created, true)
  const { user: fetched } = await client.getUser({ id: user.id })
  assert.equal(fetched.name, 'Node')
  const { users } = await client.listUsers({ tags: { userId: 'U-node' } })
  assert.deepEqual(users.map((u) => u.id), [user.id])
})

await check('createConversation, updateConversation, deleteConversation', async () => {
  const { conversation: created } = await client.createConversation({
    channel: 'channel',
    tags: { channelId: 'C-made' },
    integrationName: 'chat',
  })
  assert.deepEqual(created.tags, { channelId: 'C-made' })
  const { conversation: twin } = await client.createConversation({
    channel: 'channel',
    tags: { channelId: 'C-made' },
    integrationName: 'chat',
  })
  assert.notEqual(twin.id, created.id, 'create always creates')
  const { conversation: updated } = await client.updateConversation({ id: created.id, tags: { channelId: 'C-moved' } })
  assert.deepEqual(updated.tags, { channelId: 'C-moved' })
  const { conversations: found } = await client.listConversations({ tags: { channelId: 'C-moved' } })
  assert.deepEqual(found.map((c) => c.id), [created.id])
  const undeclared = await client
    .updateConversation({ id: created.id, tags: { colour: 'blue' } })
    .then(() => null, (error) => error)
  assert.equal(undeclared?.type, 'InvalidPayload')
  assert.deepEqual(await client.deleteConversation({ id: twin.id }), {})
  const gone = await client.getConversation({ id: twin.id }).then(() => null, (error) => error)
  assert.equal(gone?.type, 'ResourceNotFound')
  seen.updatedConversationId = created.id
  seen.deletedConversationId = twin.id
})

await check('listConversations sorts as asked and refuses what it cannot filter by', async () => {
  const newest = await client.listConversations({ sortField: 'createdAt', sortDirection: 'desc' })
  const oldest = await client.listConversations({ sortField: 'createdAt', sortDirection: 'asc' })
  assert.ok(newest.conversations.length >= 2)
  assert.deepEqual(oldest.conversations.map((c) => c.id), newest.conversations.map((c) => c.id).reverse())
  const updated = await client.listConversations({ sortField: 'updatedAt', sortDirection: 'desc' })
  assert.equal(updated.conversations[0].id, seen.updatedConversationId, 'the last updated first')
  const paged = []
  let nextToken
  do {
    const page = await client.listConversations({ sortField: 'updatedAt', sortDirection: 'asc', nextToken, pageSize: 1 })
    paged.push(...page.conversations.map((c) => c.id))
    nextToken = page.meta.nextToken
  } while (nextToken)
  assert.deepEqual(paged, updated.conversations.map((c) => c.id).reverse())
  const refused = await client
    .listConversations({ afterDate: '2024-01-01T00:00:00.000Z' })
    .then(() => null, (error) => error)
  assert.equal(refused?.type, 'InvalidQuery')
  assert.match(refused.message, /afterDate/)
})

await check('createUser, updateUser, deleteUser', async () => {
  const { user } = await client.createUser({ tags: { userId: 'U-made' }, integrationName: 'chat', name: 'Made' })
  assert.equal(user.name, 'Made')
  const { user: updated } = await client.updateUser({ id: user.id, name: 'Renamed', pictureUrl: 'https://example.com/p.png' })
  assert.equal(updated.name, 'Renamed')
  assert.equal(updated.pictureUrl, 'https://example.com/p.png')
  assert.deepEqual(updated.tags, { userId: 'U-made' })
  const refused = await client
    .updateUser({ id: user.id, tags: { colour: 'blue' } })
    .then(() => null, (error) => error)
  assert.equal(refused?.type, 'InvalidPayload')
  const { users } = await client.listUsers({ sortField: 'updatedAt', sortDirection: 'desc' })
  assert.equal(users[0].id, user.id)
  assert.deepEqual(await client.deleteUser({ id: user.id }), {})
  const gone = await client.getUser({ id: user.id }).then(() => null, (error) => error)
  assert.equal(gone?.type, 'ResourceNotFound')
  seen.deletedUserId = user.id
})

await check('participants', async () => {
  const { user } = await client.getOrCreateUser({ tags: { userId: 'U-guest' }, integrationName: 'chat' })
  const { participant } = await client.addParticipant({ id: conversation.id, userId: user.id })
  assert.equal(participant.id, user.id)
  const { participant: fetched } = await client.getParticipant({ id: conversation.id, userId: user.id })
  assert.equal(fetched.id, user.id)
  const { participants } = await client.listParticipants({ id: conversation.id })
  const ids = participants.map((p) => p.id)
  assert.ok(ids.includes(user.id), 'the added user')
  assert.ok(ids.length >= 2, 'and the bot, who wrote in it')
  assert.deepEqual(await client.removeParticipant({ id: conversation.id, userId: user.id }), {})
  const gone = await client
    .getParticipant({ id: conversation.id, userId: user.id })
    .then(() => null, (error) => error)
  assert.equal(gone?.type, 'ResourceNotFound')
})

await check('updateMessage, deleteMessage', async () => {
  const { message } = await client.createMessage({
    conversationId: conversation.id,
    userId: SLUICE_BOT_ID,
    type: 'text',
    payload: { text: 'soon gone' },
    tags: {},
  })
  const { message: updated } = await client.updateMessage({ id: message.id, tags: { threadId: 'T1' }, payload: { text: 'edited' } })
  assert.deepEqual(updated.payload, { text: 'edited' })
  assert.equal(updated.tags.threadId, 'T1')
  assert.deepEqual(await client.deleteMessage({ id: message.id }), {})
  const gone = await client.getMessage({ id: message.id }).then(() => null, (error) => error)
  assert.equal(gone?.type, 'ResourceNotFound')
  seen.deletedMessageId = message.id
})

await check('methods sluice does not serve fail with errors the client knows', async () => {
  const wrongMethod = await client
    .getOrCreateMessage({ conversationId: conversation.id, userId: SLUICE_BOT_ID, type: 'text', payload: { text: 'x' }, tags: {} })
    .then(() => null, (error) => error)
  assert.equal(wrongMethod?.type, 'MethodNotFound')
  assert.equal(wrongMethod.code, 405)
  const noRoute = await client.getWorkflow({ id: 'wfl_1' }).then(() => null, (error) => error)
  assert.equal(noRoute?.type, 'ResourceNotFound')
  assert.equal(noRoute.code, 404)
})

console.log(JSON.stringify(seen))
