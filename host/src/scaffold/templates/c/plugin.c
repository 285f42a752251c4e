// {{name}}: a sluice integration plugin. Every request sent to the installation's webhook
// URL becomes a `{{name}}:received` event; change exports_plugin_handler to do what your
// integration needs, and declare its events, actions and channels in
// exports_plugin_definition.
//
// Who frees what (bindings/sluice.h works this way):
// - everything an export returns (strings, lists, records, the error) is freed by the
//   bindings after the call, so it must come from malloc: sluice_string_copy,
//   sluice_string_take, sluice_json_print; never sluice_string_set on a literal;
// - an export owns its arguments and frees them (exports_plugin_context_free, ...);
// - an import (client_create_event, logger_log) only borrows its arguments, and what it
//   returns is yours to free (client_event_free).

#include <stdlib.h>

#include "cJSON.h"
#include "sluice.h"
#include "sluice_helpers.h"

static const char RECEIVED_SCHEMA[] =
    "{\n"
    "  \"type\": \"object\",\n"
    "  \"properties\": {\n"
    "    \"method\": { \"type\": \"string\" },\n"
    "    \"path\": { \"type\": \"string\" },\n"
    "    \"body\": { \"description\": \"The body: parsed JSON when it parses, else the text\" }\n"
    "  },\n"
    "  \"required\": [\"method\", \"path\", \"body\"]\n"
    "}";

void exports_plugin_definition(exports_plugin_integration_definition_t *ret) {
    types_event_definition_t *events = sluice_alloc(sizeof *events);
    events[0] = (types_event_definition_t){
        .name = sluice_string_copy("received"),
        .title = sluice_string_copy("Received"),
        .description = sluice_string_copy("The webhook received a request."),
        .schema = sluice_string_copy(RECEIVED_SCHEMA),
    };
    *ret = (types_definition_t){
        .name = sluice_string_copy("{{name}}"),
        .version = sluice_string_copy("0.1.0"),
        .title = sluice_string_copy("{{name}}"),
        .description = sluice_string_copy("Records every request sent to its webhook URL."),
        // No configuration: an option inside a record is {is_some, val}.
        .configuration_schema = {.is_some = false},
        .events = {events, 1},
        // No actions, channels, states or user tags: empty lists are {NULL, 0}.
    };
}

bool exports_plugin_register(exports_plugin_context_t *ctx, exports_plugin_error_t *err) {
    (void)err;
    sluice_log(LOGGER_LEVEL_INFO, "{{name}} ready at %.*s", (int)ctx->webhook_url.len, (const char *)ctx->webhook_url.ptr);
    exports_plugin_context_free(ctx);
    return true;
}

bool exports_plugin_unregister(exports_plugin_context_t *ctx, exports_plugin_error_t *err) {
    (void)err;
    exports_plugin_context_free(ctx);
    return true;
}

bool exports_plugin_handler(exports_plugin_context_t *ctx, exports_plugin_http_request_t *request,
                            exports_plugin_http_response_t *ret, exports_plugin_error_t *err) {
    // The body: its JSON when it is JSON, else its text. cJSON escapes what it prints.
    cJSON *body = sluice_json_parse(request->body.ptr, request->body.len);
    if (body == NULL) body = sluice_json_text(request->body.ptr, request->body.len);
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddItemToObject(payload, "method", sluice_json_text(request->method.ptr, request->method.len));
    cJSON_AddItemToObject(payload, "path", sluice_json_text(request->path.ptr, request->path.len));
    cJSON_AddItemToObject(payload, "body", body);
    sluice_string_t payload_text = sluice_json_print(payload);
    cJSON_Delete(payload);
    exports_plugin_context_free(ctx);
    exports_plugin_http_request_free(request);

    // Imports borrow: a literal is fine for `type`. The optional ids (conversation, user,
    // message) are pointers, NULL for none.
    sluice_string_t type;
    sluice_string_set(&type, "received");
    client_event_t event;
    client_error_t error;
    bool created = client_create_event(&type, &payload_text, NULL, NULL, NULL, &event, &error);
    sluice_string_free(&payload_text);
    if (!created) {
        *err = error;  // the host's error becomes this call's error
        return false;
    }

    cJSON *answer = cJSON_CreateObject();
    cJSON_AddTrueToObject(answer, "ok");
    cJSON_AddItemToObject(answer, "eventId", sluice_json_text(event.id.ptr, event.id.len));
    client_event_free(&event);
    sluice_string_t answer_text = sluice_json_print(answer);
    cJSON_Delete(answer);

    sluice_tuple2_string_string_t *headers = sluice_alloc(sizeof *headers);
    headers[0].f0 = sluice_string_copy("content-type");
    headers[0].f1 = sluice_string_copy("application/json");
    *ret = (types_http_response_t){
        .status = 200,
        .headers = {headers, 1},
        .body = {answer_text.ptr, answer_text.len},
    };
    return true;
}

bool exports_plugin_call_action(exports_plugin_context_t *ctx, sluice_string_t *name, exports_plugin_json_t *input,
                                exports_plugin_action_result_t *ret, exports_plugin_error_t *err) {
    (void)ret;
    *err = (types_error_t){
        TYPES_ERROR_KIND_NOT_FOUND,
        sluice_string_take(sluice_format("{{name}} has no action %.*s", (int)name->len, (const char *)name->ptr)),
    };
    exports_plugin_context_free(ctx);
    sluice_string_free(name);
    exports_plugin_json_free(input);
    return false;
}

bool exports_plugin_handle_message(exports_plugin_context_t *ctx, sluice_string_t *channel,
                                   exports_plugin_conversation_t *conversation, exports_plugin_message_t *message,
                                   exports_plugin_user_t *user, exports_plugin_ack_t *ret, exports_plugin_error_t *err) {
    (void)ret;
    *err = (types_error_t){
        TYPES_ERROR_KIND_NOT_FOUND,
        sluice_string_take(sluice_format("{{name}} has no channel %.*s", (int)channel->len, (const char *)channel->ptr)),
    };
    exports_plugin_context_free(ctx);
    sluice_string_free(channel);
    exports_plugin_conversation_free(conversation);
    exports_plugin_message_free(message);
    exports_plugin_user_free(user);
    return false;
}
