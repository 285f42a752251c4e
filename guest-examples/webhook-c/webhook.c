// The Botpress Webhook integration in C: every request sent to the installation's webhook
// URL becomes a `webhook:event` whose payload holds the request. It behaves exactly like
// guest-examples/webhook (Rust), webhook-python and webhook-js.
//
// Configuration (the `[configuration]` table of the sidecar `webhook.toml`):
// - `secret` (optional): when set, requests must carry it in the `x-bp-secret` header.
// - `allowedOrigins` (optional, default empty): origins allowed to call from a browser.
//   With an empty list every request that carries an `Origin` header is refused.
//
// Build: ./build.sh (docs/plugins/c.md explains the toolchain and the bindings).
//
// Who frees what (the bindings, guest-tools/c/bindings/sluice.h, work this way):
// - everything an export returns (strings, lists, records, the error) is freed by the
//   bindings once the host has read it, so it must come from malloc (sluice_string_copy,
//   sluice_json_print, ...), never a string literal;
// - an export owns its arguments and frees them (exports_plugin_context_free, ...);
// - an import (client_create_event) only borrows its arguments, and what it returns is
//   the caller's to free (client_event_free).

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cJSON.h"
#include "sluice.h"
#include "sluice_helpers.h"

#define SECRET_HEADER "x-bp-secret"

static const char CONFIGURATION_SCHEMA[] =
    "{\n"
    "  \"type\": \"object\",\n"
    "  \"properties\": {\n"
    "    \"secret\": { \"type\": \"string\", \"description\": \"Requests must carry this value in the x-bp-secret "
    "header. Leave empty to accept every request.\" },\n"
    "    \"allowedOrigins\": { \"type\": \"array\", \"items\": { \"type\": \"string\" }, \"description\": \"Origins "
    "allowed to call from a browser (CORS). Empty blocks every browser.\" }\n"
    "  },\n"
    "  \"additionalProperties\": false\n"
    "}";

static const char EVENT_SCHEMA[] =
    "{\n"
    "  \"type\": \"object\",\n"
    "  \"properties\": {\n"
    "    \"body\": { \"description\": \"The body: parsed JSON when it parses, else the text\" },\n"
    "    \"query\": { \"type\": \"object\" },\n"
    "    \"headers\": { \"type\": \"object\", \"additionalProperties\": { \"type\": \"string\" } },\n"
    "    \"method\": { \"type\": \"string\" },\n"
    "    \"path\": { \"type\": \"string\" }\n"
    "  },\n"
    "  \"required\": [\"body\", \"query\", \"headers\", \"method\", \"path\"],\n"
    "  \"additionalProperties\": false\n"
    "}";

// ---- the request ----

static const sluice_string_t *header(const types_http_request_t *request, const char *name) {
    size_t length = strlen(name);
    for (size_t i = 0; i < request->headers.len; i++) {
        const sluice_string_t *key = &request->headers.ptr[i].f0;
        if (key->len == length && strncasecmp((const char *)key->ptr, name, length) == 0) {
            return &request->headers.ptr[i].f1;
        }
    }
    return NULL;
}

typedef struct {
    cJSON *configuration;
    const char *secret;            // NULL when unset or empty
    const cJSON *allowed_origins;  // an array, or NULL
} settings_t;

static settings_t settings_of(const types_context_t *ctx) {
    settings_t settings = {0};
    settings.configuration = sluice_json_parse(ctx->configuration.ptr, ctx->configuration.len);
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(settings.configuration, "secret");
    if (cJSON_IsString(secret) && secret->valuestring[0] != '\0') settings.secret = secret->valuestring;
    const cJSON *origins = cJSON_GetObjectItemCaseSensitive(settings.configuration, "allowedOrigins");
    if (cJSON_IsArray(origins)) settings.allowed_origins = origins;
    return settings;
}

static bool origin_allowed(const settings_t *settings, sluice_string_t origin) {
    const cJSON *allowed;
    cJSON_ArrayForEach(allowed, settings->allowed_origins) {
        if (cJSON_IsString(allowed) &&
            (sluice_string_equals(origin, allowed->valuestring) || strcmp(allowed->valuestring, "*") == 0)) {
            return true;
        }
    }
    return false;
}

// Compares without stopping at the first difference, so timing tells nothing but the length.
static bool same_secret(sluice_string_t given, const char *expected) {
    size_t length = strlen(expected);
    if (given.len != length) return false;
    uint8_t difference = 0;
    for (size_t i = 0; i < length; i++) difference |= given.ptr[i] ^ (uint8_t)expected[i];
    return difference == 0;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One name or value of a query string, decoded as forms are (`+` is a space, `%XX` a
// byte, a `%` without two hex digits stays), then read as UTF-8 (lossily): malloc'ed,
// NUL-terminated, its length in `*length`.
static char *form_decode(const uint8_t *text, size_t count, size_t *length) {
    uint8_t *bytes = sluice_alloc(count);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t c = text[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < count && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
            c = (uint8_t)(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
            i += 2;
        }
        bytes[used++] = c;
    }
    char *decoded = sluice_utf8_lossy(bytes, used, length);
    free(bytes);
    return decoded;
}

// The query string as an object; a name given more than once maps to the array of its values.
static cJSON *query_object(sluice_string_t query) {
    cJSON *object = cJSON_CreateObject();
    const uint8_t *cursor = query.ptr, *end = query.ptr + query.len;
    while (cursor < end) {
        const uint8_t *pair_end = memchr(cursor, '&', (size_t)(end - cursor));
        if (pair_end == NULL) pair_end = end;
        if (pair_end > cursor) {
            const uint8_t *equals_sign = memchr(cursor, '=', (size_t)(pair_end - cursor));
            const uint8_t *name_end = equals_sign ? equals_sign : pair_end;
            const uint8_t *value_start = equals_sign ? equals_sign + 1 : pair_end;
            size_t name_length, value_length;
            // cJSON's keys are C strings: a name with a NUL byte (%00) is cut there.
            char *name = form_decode(cursor, (size_t)(name_end - cursor), &name_length);
            char *value = form_decode(value_start, (size_t)(pair_end - value_start), &value_length);
            cJSON *item = sluice_json_text((const uint8_t *)value, value_length);
            cJSON *first = cJSON_GetObjectItemCaseSensitive(object, name);
            if (first == NULL) {
                cJSON_AddItemToObject(object, name, item);
            } else if (cJSON_IsArray(first)) {
                cJSON_AddItemToArray(first, item);
            } else {
                cJSON *values = cJSON_CreateArray();
                cJSON_AddItemToArray(values, cJSON_DetachItemViaPointer(object, first));
                cJSON_AddItemToArray(values, item);
                cJSON_AddItemToObject(object, name, values);
            }
            free(name);
            free(value);
        }
        cursor = pair_end + 1;
    }
    return object;
}

// The headers as an object of lower-case names, a repeated header's values joined with
// ", ", without the secret.
static cJSON *headers_object(const types_http_request_t *request) {
    cJSON *object = cJSON_CreateObject();
    for (size_t i = 0; i < request->headers.len; i++) {
        const sluice_string_t name = request->headers.ptr[i].f0;
        char *lower = sluice_string_c(name);
        for (char *c = lower; *c; c++) *c = (char)tolower((unsigned char)*c);
        if (strcmp(lower, SECRET_HEADER) == 0 || cJSON_GetObjectItemCaseSensitive(object, lower) != NULL) {
            free(lower);
            continue;
        }
        // This header's values, from here on, joined.
        size_t size = 0;
        for (size_t j = i; j < request->headers.len; j++) size += request->headers.ptr[j].f1.len + 2;
        uint8_t *joined = sluice_alloc(size);
        size_t length = 0;
        for (size_t j = i; j < request->headers.len; j++) {
            const sluice_string_t other = request->headers.ptr[j].f0;
            if (other.len != name.len || strncasecmp((const char *)other.ptr, lower, name.len) != 0) continue;
            if (length > 0) {
                memcpy(joined + length, ", ", 2);
                length += 2;
            }
            memcpy(joined + length, request->headers.ptr[j].f1.ptr, request->headers.ptr[j].f1.len);
            length += request->headers.ptr[j].f1.len;
        }
        cJSON_AddItemToObject(object, lower, sluice_json_text(joined, length));
        free(joined);
        free(lower);
    }
    return object;
}

// The body: its JSON when it is valid JSON, else its text.
static cJSON *body_value(const sluice_list_u8_t *body) {
    cJSON *parsed = sluice_json_parse(body->ptr, body->len);
    return parsed != NULL ? parsed : sluice_json_text(body->ptr, body->len);
}

// ---- the response ----

// Adds a header; both strings are copied, as the bindings free what the export returns.
static void add_header(types_headers_t *headers, const char *name, sluice_string_t value) {
    headers->ptr = realloc(headers->ptr, (headers->len + 1) * sizeof *headers->ptr);
    if (headers->ptr == NULL) abort();
    headers->ptr[headers->len].f0 = sluice_string_copy(name);
    sluice_string_dup_n(&headers->ptr[headers->len].f1, (const char *)value.ptr, value.len);
    headers->len++;
}

static void add_header_text(types_headers_t *headers, const char *name, const char *value) {
    add_header(headers, name, (sluice_string_t){(uint8_t *)value, strlen(value)});
}

// Answers `status` with `body` as JSON, and frees `body`.
static void respond(types_http_response_t *response, uint16_t status, types_headers_t headers, cJSON *body) {
    add_header_text(&headers, "content-type", "application/json");
    sluice_string_t text = sluice_json_print(body);
    cJSON_Delete(body);
    *response = (types_http_response_t){status, headers, {text.ptr, text.len}};
}

// Answers `status` with {"error": message}, and frees `message`.
static void refuse(types_http_response_t *response, uint16_t status, char *message) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "error", message);
    free(message);
    respond(response, status, (types_headers_t){0}, body);
}

// ---- the exports ----

void exports_plugin_definition(exports_plugin_integration_definition_t *ret) {
    types_event_definition_t *events = sluice_alloc(sizeof *events);
    events[0] = (types_event_definition_t){
        .name = sluice_string_copy("event"),
        .title = sluice_string_copy("Event"),
        .description = sluice_string_copy("The webhook received a request."),
        .schema = sluice_string_copy(EVENT_SCHEMA),
    };
    *ret = (types_definition_t){
        .name = sluice_string_copy("webhook"),
        .version = sluice_string_copy("0.1.0"),
        .title = sluice_string_copy("Webhook"),
        .description = sluice_string_copy("Receive data from any service through a personal webhook URL."),
        // An option inside a record is {is_some, val}.
        .configuration_schema = {.is_some = true, .val = sluice_string_copy(CONFIGURATION_SCHEMA)},
        .events = {events, 1},
        // The other lists stay empty: {NULL, 0}.
    };
}

bool exports_plugin_register(exports_plugin_context_t *ctx, exports_plugin_error_t *err) {
    (void)err;
    sluice_log(LOGGER_LEVEL_INFO, "webhook ready at %.*s", (int)ctx->webhook_url.len, (const char *)ctx->webhook_url.ptr);
    exports_plugin_context_free(ctx);
    return true;
}

bool exports_plugin_unregister(exports_plugin_context_t *ctx, exports_plugin_error_t *err) {
    (void)err;
    exports_plugin_context_free(ctx);
    return true;
}

static bool handle(const types_context_t *ctx, const types_http_request_t *request, types_http_response_t *ret,
                   types_error_t *err) {
    settings_t settings = settings_of(ctx);
    bool answered = true;

    types_headers_t cors_headers = {0};
    const sluice_string_t *origin = header(request, "origin");
    if (origin != NULL) {
        if (!origin_allowed(&settings, *origin)) {
            refuse(ret, 403,
                   sluice_format("origin %.*s is not in allowedOrigins", (int)origin->len, (const char *)origin->ptr));
            goto done;
        }
        add_header(&cors_headers, "access-control-allow-origin", *origin);
        add_header_text(&cors_headers, "vary", "origin");
    }

    if (sluice_string_equals(request->method, "OPTIONS") && header(request, "access-control-request-method")) {
        const sluice_string_t *requested = header(request, "access-control-request-headers");
        types_headers_t headers = cors_headers;
        add_header_text(&headers, "access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        if (requested != NULL) {
            add_header(&headers, "access-control-allow-headers", *requested);
        } else {
            add_header_text(&headers, "access-control-allow-headers", "content-type, x-bp-secret");
        }
        add_header_text(&headers, "access-control-max-age", "600");
        *ret = (types_http_response_t){204, headers, {NULL, 0}};
        goto done;
    }

    if (settings.secret != NULL) {
        const sluice_string_t *given = header(request, SECRET_HEADER);
        if (given == NULL || !same_secret(*given, settings.secret)) {
            sluice_log(LOGGER_LEVEL_WARN, "refused a request without the right x-bp-secret");
            types_headers_free(&cors_headers);
            refuse(ret, 401, sluice_format("missing or wrong x-bp-secret header"));
            goto done;
        }
    }

    cJSON *payload = cJSON_CreateObject();
    cJSON_AddItemToObject(payload, "body", body_value(&request->body));
    cJSON_AddItemToObject(payload, "query", query_object(request->query));
    cJSON_AddItemToObject(payload, "headers", headers_object(request));
    cJSON_AddItemToObject(payload, "method", sluice_json_text(request->method.ptr, request->method.len));
    cJSON_AddItemToObject(payload, "path", sluice_json_text(request->path.ptr, request->path.len));
    sluice_string_t payload_text = sluice_json_print(payload);
    cJSON_Delete(payload);

    // Imports borrow their arguments: a literal is fine here, and the payload stays ours.
    // No conversation, user or message to link: the optional arguments are NULL.
    sluice_string_t type;
    sluice_string_set(&type, "event");
    client_event_t event;
    client_error_t error;
    bool created = client_create_event(&type, &payload_text, NULL, NULL, NULL, &event, &error);
    sluice_string_free(&payload_text);
    if (!created) {
        // The host's error becomes this call's error (the bindings free it after the call).
        types_headers_free(&cors_headers);
        *err = error;
        answered = false;
        goto done;
    }
    cJSON *answer = cJSON_CreateObject();
    cJSON_AddTrueToObject(answer, "ok");
    cJSON_AddItemToObject(answer, "eventId", sluice_json_text(event.id.ptr, event.id.len));
    client_event_free(&event);
    respond(ret, 200, cors_headers, answer);

done:
    cJSON_Delete(settings.configuration);
    return answered;
}

bool exports_plugin_handler(exports_plugin_context_t *ctx, exports_plugin_http_request_t *request,
                            exports_plugin_http_response_t *ret, exports_plugin_error_t *err) {
    bool answered = handle(ctx, request, ret, err);
    exports_plugin_context_free(ctx);
    exports_plugin_http_request_free(request);
    return answered;
}

bool exports_plugin_call_action(exports_plugin_context_t *ctx, sluice_string_t *name, exports_plugin_json_t *input,
                                exports_plugin_action_result_t *ret, exports_plugin_error_t *err) {
    (void)ret;
    *err = (types_error_t){
        TYPES_ERROR_KIND_NOT_FOUND,
        sluice_string_take(
            sluice_format("the webhook integration has no action %.*s", (int)name->len, (const char *)name->ptr)),
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
        sluice_string_take(
            sluice_format("the webhook integration has no channel %.*s", (int)channel->len, (const char *)channel->ptr)),
    };
    exports_plugin_context_free(ctx);
    sluice_string_free(channel);
    exports_plugin_conversation_free(conversation);
    exports_plugin_message_free(message);
    exports_plugin_user_free(user);
    return false;
}
