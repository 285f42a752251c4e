// The Botpress Webhook integration in JavaScript: every request sent to the
// installation's webhook URL becomes a `webhook:event` whose payload holds the request.
// It behaves exactly like guest-examples/webhook (Rust) and guest-examples/webhook-python.
//
// Configuration (the `[configuration]` table of the sidecar `webhook.toml`):
// - `secret` (optional): when set, requests must carry it in the `x-bp-secret` header.
// - `allowedOrigins` (optional, default empty): origins allowed to call from a browser.
//   With an empty list every request that carries an `Origin` header is refused.
//
// Build (see docs/plugins.md): npm ci && npm run build

import { createEvent } from 'sluice:integration/client@0.1.0';
import { log } from 'sluice:integration/logger@0.1.0';

const SECRET_HEADER = 'x-bp-secret';

const CONFIGURATION_SCHEMA = JSON.stringify({
  type: 'object',
  properties: {
    secret: { type: 'string', description: 'Requests must carry this value in the x-bp-secret header. Leave empty to accept every request.' },
    allowedOrigins: { type: 'array', items: { type: 'string' }, description: 'Origins allowed to call from a browser (CORS). Empty blocks every browser.' },
  },
  additionalProperties: false,
});

const EVENT_SCHEMA = JSON.stringify({
  type: 'object',
  properties: {
    body: { description: 'The body: parsed JSON when it parses, else the text' },
    query: { type: 'object' },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    method: { type: 'string' },
    path: { type: 'string' },
  },
  required: ['body', 'query', 'headers', 'method', 'path'],
  additionalProperties: false,
});

function settings(ctx) {
  let config = {};
  try {
    config = JSON.parse(ctx.configuration) ?? {};
  } catch {
    // A configuration that is not JSON means defaults.
  }
  const secret = typeof config.secret === 'string' && config.secret !== '' ? config.secret : null;
  const allowedOrigins = Array.isArray(config.allowedOrigins)
    ? config.allowedOrigins.filter((origin) => typeof origin === 'string')
    : [];
  return { secret, allowedOrigins };
}

function header(request, name) {
  const found = request.headers.find(([key]) => key.toLowerCase() === name);
  return found ? found[1] : null;
}

const encoder = new TextEncoder();

function response(status, headers, body) {
  return {
    status,
    headers: [...headers, ['content-type', 'application/json']],
    body: encoder.encode(JSON.stringify(body)),
  };
}

function refusal(status, message) {
  return response(status, [], { error: message });
}

// Compares without stopping at the first difference, so timing tells nothing but the length.
function constantTimeEqual(given, expected) {
  const a = encoder.encode(given);
  const b = encoder.encode(expected);
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) {
    difference |= a[i] ^ b[i];
  }
  return difference === 0;
}

function queryObject(query) {
  const result = {};
  for (const [key, value] of new URLSearchParams(query)) {
    if (!Object.hasOwn(result, key)) {
      result[key] = value;
    } else if (Array.isArray(result[key])) {
      result[key].push(value);
    } else {
      result[key] = [result[key], value];
    }
  }
  return result;
}

function headersObject(request) {
  const result = {};
  for (const [rawName, value] of request.headers) {
    const name = rawName.toLowerCase();
    if (name === SECRET_HEADER) continue;
    result[name] = Object.hasOwn(result, name) ? `${result[name]}, ${value}` : value;
  }
  return result;
}

function bodyValue(body) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return new TextDecoder('utf-8').decode(body);
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export const plugin = {
  definition() {
    return {
      name: 'webhook',
      version: '0.1.0',
      title: 'Webhook',
      description: 'Receive data from any service through a personal webhook URL.',
      configurationSchema: CONFIGURATION_SCHEMA,
      events: [{ name: 'event', title: 'Event', description: 'The webhook received a request.', schema: EVENT_SCHEMA }],
      actions: [],
      channels: [],
      states: [],
      userTags: [],
    };
  },

  register(ctx) {
    log('info', `webhook ready at ${ctx.webhookUrl}`);
  },

  unregister(_ctx) {},

  handler(ctx, request) {
    const { secret, allowedOrigins } = settings(ctx);
    let corsHeaders = [];
    const origin = header(request, 'origin');
    if (origin !== null) {
      if (!allowedOrigins.some((allowed) => allowed === origin || allowed === '*')) {
        return refusal(403, `origin ${origin} is not in allowedOrigins`);
      }
      corsHeaders = [['access-control-allow-origin', origin], ['vary', 'origin']];
    }

    if (request.method === 'OPTIONS' && header(request, 'access-control-request-method') !== null) {
      const requested = header(request, 'access-control-request-headers') ?? 'content-type, x-bp-secret';
      return {
        status: 204,
        headers: [
          ...corsHeaders,
          ['access-control-allow-methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS'],
          ['access-control-allow-headers', requested],
          ['access-control-max-age', '600'],
        ],
        body: new Uint8Array(),
      };
    }

    if (secret !== null) {
      const given = header(request, SECRET_HEADER);
      if (given === null || !constantTimeEqual(given, secret)) {
        log('warn', 'refused a request without the right x-bp-secret');
        return refusal(401, 'missing or wrong x-bp-secret header');
      }
    }

    const payload = {
      body: bodyValue(request.body),
      query: queryObject(request.query),
      headers: headersObject(request),
      method: request.method,
      path: request.path,
    };
    // createEvent throws the host's error; it goes back to the host as this call's error.
    let event;
    try {
      event = createEvent('event', JSON.stringify(payload), undefined, undefined, undefined);
    } catch (error) {
      throw error.payload ?? { kind: 'internal', message: String(error) };
    }
    return response(200, corsHeaders, { ok: true, eventId: event.id });
  },

  callAction(_ctx, name, _input) {
    throw { kind: 'not-found', message: `the webhook integration has no action ${name}` };
  },

  handleMessage(_ctx, channel, _conversation, _message, _user) {
    throw { kind: 'not-found', message: `the webhook integration has no channel ${channel}` };
  },
};
