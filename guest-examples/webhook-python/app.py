"""The Botpress Webhook integration in Python: every request sent to the installation's
webhook URL becomes a `webhook:event` whose payload holds the request. It behaves exactly
like guest-examples/webhook (Rust) and guest-examples/webhook-js.

Configuration (the `[configuration]` table of the sidecar `webhook.toml`):
- `secret` (optional): when set, requests must carry it in the `x-bp-secret` header.
- `allowedOrigins` (optional, default empty): origins allowed to call from a browser.
  With an empty list every request that carries an `Origin` header is refused.

Build (see docs/plugins.md): componentize-py -d ../../wit -w integration componentize app -o webhook.wasm
"""

import hmac
import json
from urllib.parse import parse_qsl

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import client, logger, types

SECRET_HEADER = "x-bp-secret"

CONFIGURATION_SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "secret": {"type": "string", "description": "Requests must carry this value in the x-bp-secret header. Leave empty to accept every request."},
        "allowedOrigins": {"type": "array", "items": {"type": "string"}, "description": "Origins allowed to call from a browser (CORS). Empty blocks every browser."},
    },
    "additionalProperties": False,
})

EVENT_SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "body": {"description": "The body: parsed JSON when it parses, else the text"},
        "query": {"type": "object"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "method": {"type": "string"},
        "path": {"type": "string"},
    },
    "required": ["body", "query", "headers", "method", "path"],
    "additionalProperties": False,
})


def settings(ctx: types.Context) -> tuple[str | None, list[str]]:
    """The secret (None when unset or empty) and the allowed origins."""
    try:
        config = json.loads(ctx.configuration)
    except ValueError:
        config = {}
    if not isinstance(config, dict):
        config = {}
    secret = config.get("secret")
    secret = secret if isinstance(secret, str) and secret else None
    origins = config.get("allowedOrigins")
    origins = [o for o in origins if isinstance(o, str)] if isinstance(origins, list) else []
    return secret, origins


def header(request: types.HttpRequest, name: str) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value
    return None


def response(status: int, headers: list[tuple[str, str]], body: object) -> types.HttpResponse:
    headers = headers + [("content-type", "application/json")]
    return types.HttpResponse(status, headers, json.dumps(body, separators=(",", ":")).encode())


def refusal(status: int, message: str) -> types.HttpResponse:
    return response(status, [], {"error": message})


def query_object(query: str) -> dict:
    result: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if key not in result:
            result[key] = value
        elif isinstance(result[key], list):
            result[key].append(value)
        else:
            result[key] = [result[key], value]
    return result


def headers_object(request: types.HttpRequest) -> dict:
    result: dict = {}
    for name, value in request.headers:
        name = name.lower()
        if name == SECRET_HEADER:
            continue
        if name in result:
            result[name] += ", " + value
        else:
            result[name] = value
    return result


def reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def drop(_pairs: object) -> None:
    return None


def body_json(body: bytes) -> str:
    """The body as JSON text: the body itself when it is JSON, else its text as a JSON
    string. The JSON is checked with its objects dropped as they are read, never kept as a
    tree of Python objects, so that a body of many small records costs a few times its
    size in memory, not dozens."""
    try:
        text = body.decode("utf-8")
        json.loads(text, parse_constant=reject_constant, object_pairs_hook=drop)
        return text
    except ValueError:
        return json.dumps(body.decode("utf-8", errors="replace"))


class Plugin(exports.Plugin):
    def definition(self) -> types.Definition:
        return types.Definition(
            name="webhook",
            version="0.1.0",
            title="Webhook",
            description="Receive data from any service through a personal webhook URL.",
            configuration_schema=CONFIGURATION_SCHEMA,
            events=[types.EventDefinition("event", "Event", "The webhook received a request.", EVENT_SCHEMA)],
            actions=[],
            channels=[],
            states=[],
            user_tags=[],
        )

    def register(self, ctx: types.Context) -> None:
        logger.log(logger.Level.INFO, f"webhook ready at {ctx.webhook_url}")

    def unregister(self, ctx: types.Context) -> None:
        pass

    def handler(self, ctx: types.Context, request: types.HttpRequest) -> types.HttpResponse:
        secret, allowed_origins = settings(ctx)
        cors_headers: list[tuple[str, str]] = []
        origin = header(request, "origin")
        if origin is not None:
            if not any(allowed == origin or allowed == "*" for allowed in allowed_origins):
                return refusal(403, f"origin {origin} is not in allowedOrigins")
            cors_headers = [("access-control-allow-origin", origin), ("vary", "origin")]

        if request.method == "OPTIONS" and header(request, "access-control-request-method") is not None:
            requested = header(request, "access-control-request-headers") or "content-type, x-bp-secret"
            headers = cors_headers + [
                ("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
                ("access-control-allow-headers", requested),
                ("access-control-max-age", "600"),
            ]
            return types.HttpResponse(204, headers, b"")

        if secret is not None:
            given = header(request, SECRET_HEADER)
            if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
                logger.log(logger.Level.WARN, "refused a request without the right x-bp-secret")
                return refusal(401, "missing or wrong x-bp-secret header")

        rest = json.dumps({
            "query": query_object(request.query),
            "headers": headers_object(request),
            "method": request.method,
            "path": request.path,
        })
        payload = '{"body":' + body_json(request.body) + "," + rest[1:]
        # create-event answers an error as an exception carrying it: pass it on.
        event = client.create_event("event", payload, None, None, None)
        return response(200, cors_headers, {"ok": True, "eventId": event.id})

    def call_action(self, ctx: types.Context, name: str, input: str) -> types.ActionResult:
        raise Err(types.Error(types.ErrorKind.NOT_FOUND, f"the webhook integration has no action {name}"))

    def handle_message(self, ctx: types.Context, channel: str, conversation: types.Conversation,
                       message: types.Message, user: types.User) -> types.Ack:
        raise Err(types.Error(types.ErrorKind.NOT_FOUND, f"the webhook integration has no channel {channel}"))
