// See sluice_helpers.h.
#include "sluice_helpers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *sluice_alloc(size_t size) {
    void *memory = malloc(size ? size : 1);
    if (memory == NULL) abort();
    return memory;
}

static void *reallocate(void *memory, size_t size) {
    memory = realloc(memory, size ? size : 1);
    if (memory == NULL) abort();
    return memory;
}

sluice_string_t sluice_string_copy(const char *text) {
    sluice_string_t string;
    sluice_string_dup(&string, text);
    return string;
}

sluice_string_t sluice_string_take(char *text) {
    if (text == NULL) abort();
    return (sluice_string_t){(uint8_t *)text, strlen(text)};
}

static char *vformat(const char *format, va_list arguments) {
    va_list measure;
    va_copy(measure, arguments);
    int length = vsnprintf(NULL, 0, format, measure);
    va_end(measure);
    if (length < 0) abort();
    char *text = sluice_alloc((size_t)length + 1);
    vsnprintf(text, (size_t)length + 1, format, arguments);
    return text;
}

char *sluice_format(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    char *text = vformat(format, arguments);
    va_end(arguments);
    return text;
}

bool sluice_string_equals(sluice_string_t string, const char *text) {
    size_t length = strlen(text);
    return string.len == length && (length == 0 || memcmp(string.ptr, text, length) == 0);
}

char *sluice_string_c(sluice_string_t string) {
    char *text = sluice_alloc(string.len + 1);
    if (string.len > 0) memcpy(text, string.ptr, string.len);
    text[string.len] = '\0';
    return text;
}

// A growable byte buffer.
typedef struct {
    uint8_t *bytes;
    size_t length;
    size_t capacity;
} buffer_t;

static void append(buffer_t *buffer, const void *bytes, size_t length) {
    if (buffer->length + length > buffer->capacity) {
        buffer->capacity = (buffer->length + length) * 2;
        buffer->bytes = reallocate(buffer->bytes, buffer->capacity);
    }
    memcpy(buffer->bytes + buffer->length, bytes, length);
    buffer->length += length;
}

// The length of the well-formed UTF-8 sequence at `bytes`, or 0 when there is none; then
// `*ill_formed` is how many bytes to replace with one U+FFFD (the maximal ill-formed part,
// as the Unicode standard recommends and Rust does).
static size_t utf8_sequence(const uint8_t *bytes, size_t available, size_t *ill_formed) {
    uint8_t lead = bytes[0], low = 0x80, high = 0xBF;
    size_t length;
    *ill_formed = 1;
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) length = 3;
    else if (lead >= 0xF0 && lead <= 0xF4) length = 4;
    else return 0;
    if (lead == 0xE0) low = 0xA0;   // no overlong forms
    if (lead == 0xED) high = 0x9F;  // no surrogates
    if (lead == 0xF0) low = 0x90;   // no overlong forms
    if (lead == 0xF4) high = 0x8F;  // nothing above U+10FFFF
    for (size_t i = 1; i < length; i++) {
        if (i >= available || bytes[i] < low || bytes[i] > high) return 0;
        low = 0x80;
        high = 0xBF;
        *ill_formed = i + 1;
    }
    return length;
}

char *sluice_utf8_lossy(const uint8_t *bytes, size_t length, size_t *text_length) {
    buffer_t text = {0};
    for (size_t i = 0; i < length;) {
        size_t ill_formed;
        size_t sequence = utf8_sequence(bytes + i, length - i, &ill_formed);
        if (sequence) {
            append(&text, bytes + i, sequence);
            i += sequence;
        } else {
            append(&text, "\xEF\xBF\xBD", 3);
            i += ill_formed;
        }
    }
    *text_length = text.length;
    append(&text, "", 1);
    return (char *)text.bytes;
}

static bool is_utf8(const uint8_t *bytes, size_t length) {
    for (size_t i = 0; i < length;) {
        size_t ill_formed;
        size_t sequence = utf8_sequence(bytes + i, length - i, &ill_formed);
        if (!sequence) return false;
        i += sequence;
    }
    return true;
}

cJSON *sluice_json_parse(const uint8_t *bytes, size_t length) {
    // The contract's strings are UTF-8, so JSON that is not would not survive the trip.
    if (length == 0 || !is_utf8(bytes, length)) return NULL;
    const char *end = NULL;
    cJSON *value = cJSON_ParseWithLengthOpts((const char *)bytes, length, &end, false);
    if (value == NULL) return NULL;
    const char *stop = (const char *)bytes + length;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end != stop) {
        cJSON_Delete(value);
        return NULL;
    }
    return value;
}

cJSON *sluice_json_text(const uint8_t *bytes, size_t length) {
    size_t text_length;
    char *text = sluice_utf8_lossy(bytes, length, &text_length);
    buffer_t json = {0};
    append(&json, "\"", 1);
    for (size_t i = 0; i < text_length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            append(&json, "\\", 1);
            append(&json, &c, 1);
        } else if (c < 0x20) {
            char escaped[7];
            snprintf(escaped, sizeof escaped, "\\u%04x", c);
            append(&json, escaped, 6);
        } else {
            append(&json, &c, 1);
        }
    }
    append(&json, "\"", 2);  // with the NUL
    free(text);
    cJSON *value = cJSON_CreateRaw((const char *)json.bytes);
    free(json.bytes);
    if (value == NULL) abort();
    return value;
}

sluice_string_t sluice_json_print(const cJSON *value) {
    return sluice_string_take(cJSON_PrintUnformatted(value));
}

void sluice_log(logger_level_t level, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    sluice_string_t line = sluice_string_take(vformat(format, arguments));
    va_end(arguments);
    logger_log(level, &line);
    sluice_string_free(&line);
}
