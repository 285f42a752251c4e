// Small helpers for sluice plugins in C, next to the contract's bindings (sluice.h) and
// cJSON. They follow the bindings' ownership rules, so that a plugin's code need not
// spell them out each time:
// - everything an export returns is freed by the bindings after the call, so returned
//   strings must come from malloc: sluice_string_copy, sluice_string_take,
//   sluice_json_print, never a literal stored with sluice_string_set;
// - an import only borrows its arguments; sluice_string_set (no copy) is fine there.
#ifndef SLUICE_HELPERS_H
#define SLUICE_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cJSON.h"
#include "sluice.h"

// malloc that never returns NULL: running out of memory (the installation's memory cap)
// traps, and the host answers 500 naming the limit. Checking for NULL matters more than
// usual here: in WebAssembly, address 0 is ordinary memory and writing there does not fault.
void *sluice_alloc(size_t size);

// A malloc'ed copy of `text`, fit to be returned.
sluice_string_t sluice_string_copy(const char *text);

// Takes over `text`, a malloc'ed NUL-terminated string (from sluice_format, or cJSON's
// printers), without copying. Traps on NULL (a printer out of memory).
sluice_string_t sluice_string_take(char *text);

// A malloc'ed, NUL-terminated string, printf's way.
char *sluice_format(const char *format, ...) __attribute__((format(printf, 1, 2)));

// Whether `string` holds exactly the bytes of `text`.
bool sluice_string_equals(sluice_string_t string, const char *text);

// A malloc'ed, NUL-terminated copy of `string`, for C's string functions. A string that
// holds a NUL byte is cut there.
char *sluice_string_c(sluice_string_t string);

// The JSON value that is the whole of `bytes` (whitespace around it allowed), or NULL when
// they are not one JSON value. Free it with cJSON_Delete.
cJSON *sluice_json_parse(const uint8_t *bytes, size_t length);

// A JSON string holding `bytes` as UTF-8 text, each ill-formed part replaced by U+FFFD (as
// Rust's String::from_utf8_lossy does). Unlike cJSON_CreateString it keeps NUL bytes (as
// \u0000), so any text, even a binary body, is kept whole.
cJSON *sluice_json_text(const uint8_t *bytes, size_t length);

// `value` printed as compact JSON, fit to be returned or passed to an import (free it with
// sluice_string_free when it is not returned).
sluice_string_t sluice_json_print(const cJSON *value);

// `bytes` as UTF-8, each ill-formed part replaced by U+FFFD; malloc'ed and NUL-terminated,
// its length (without the NUL) in `*text_length`.
char *sluice_utf8_lossy(const uint8_t *bytes, size_t length, size_t *text_length);

// Writes one line to the host's log (LOGGER_LEVEL_DEBUG, _INFO, _WARN or _ERROR).
void sluice_log(logger_level_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#endif
