"""{{name}}: a sluice integration plugin. Every request sent to the installation's webhook
URL becomes a `{{name}}:received` event; change `handler` to do what your integration
needs, and declare its events, actions and channels in `definition`."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import client, logger, types

RECEIVED_SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "method": {"type": "string"},
        "path": {"type": "string"},
        "body": {"description": "The body: parsed JSON when it parses, else the text"},
    },
    "required": ["method", "path", "body"],
})


def body_value(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


class Plugin(exports.Plugin):
    def definition(self) -> types.Definition:
        return types.Definition(
            name="{{name}}",
            version="0.1.0",
            title="{{name}}",
            description="Records every request sent to its webhook URL.",
            configuration_schema=None,
            events=[types.EventDefinition("received", "Received", "The webhook received a request.", RECEIVED_SCHEMA)],
            actions=[],
            channels=[],
            states=[],
            user_tags=[],
        )

    def register(self, ctx: types.Context) -> None:
        logger.log(logger.Level.INFO, f"{{name}} ready at {ctx.webhook_url}")

    def unregister(self, ctx: types.Context) -> None:
        pass

    def handler(self, ctx: types.Context, request: types.HttpRequest) -> types.HttpResponse:
        payload = {"method": request.method, "path": request.path, "body": body_value(request.body)}
        # An error from the host is raised as Err(types.Error): it becomes this call's error.
        event = client.create_event("received", json.dumps(payload), None, None, None)
        body = json.dumps({"ok": True, "eventId": event.id}).encode()
        return types.HttpResponse(200, [("content-type", "application/json")], body)

    def call_action(self, ctx: types.Context, name: str, input: str) -> types.ActionResult:
        raise Err(types.Error(types.ErrorKind.NOT_FOUND, f"{{name}} has no action {name}"))

    def handle_message(self, ctx: types.Context, channel: str, conversation: types.Conversation,
                       message: types.Message, user: types.User) -> types.Ack:
        raise Err(types.Error(types.ErrorKind.NOT_FOUND, f"{{name}} has no channel {channel}"))
