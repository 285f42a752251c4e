// {{name}}: a sluice integration plugin. Every request sent to the installation's webhook
// URL becomes a `{{name}}:received` event; change `handler` to do what your integration
// needs, and declare its events, actions and channels in `definition`.

import { createEvent } from 'sluice:integration/client@0.1.0';
import { log } from 'sluice:integration/logger@0.1.0';

const RECEIVED_SCHEMA = JSON.stringify({
  type: 'object',
  properties: {
    method: { type: 'string' },
    path: { type: 'string' },
    body: { description: 'The body: parsed JSON when it parses, else the text' },
  },
  required: ['method', 'path', 'body'],
});

function bodyValue(body) {
  const text = new TextDecoder().decode(body);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const plugin = {
  definition() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      title: '{{name}}',
      description: 'Records every request sent to its webhook URL.',
      configurationSchema: undefined,
      events: [{ name: 'received', title: 'Received', description: 'The webhook received a request.', schema: RECEIVED_SCHEMA }],
      actions: [],
      channels: [],
      states: [],
      userTags: [],
    };
  },

  register(ctx) {
    log('info', `{{name}} ready at ${ctx.webhookUrl}`);
  },

  unregister(_ctx) {},

  handler(_ctx, request) {
    const payload = { method: request.method, path: request.path, body: bodyValue(request.body) };
    let event;
    try {
      event = createEvent('received', JSON.stringify(payload), undefined, undefined, undefined);
    } catch (error) {
      // The host's error ({kind, message}) becomes this call's error.
      throw error.payload ?? { kind: 'internal', message: String(error) };
    }
    return {
      status: 200,
      headers: [['content-type', 'application/json']],
      body: new TextEncoder().encode(JSON.stringify({ ok: true, eventId: event.id })),
    };
  },

  callAction(_ctx, name, _input) {
    throw { kind: 'not-found', message: `{{name}} has no action ${name}` };
  },

  handleMessage(_ctx, channel, _conversation, _message, _user) {
    throw { kind: 'not-found', message: `{{name}} has no channel ${channel}` };
  },
};
