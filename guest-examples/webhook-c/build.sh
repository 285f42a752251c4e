#!/usr/bin/env bash
# Builds the C webhook example into a component: ./build.sh [OUT.wasm] (default
# webhook.wasm here). Needs what scripts/setup installs: Debian's clang, lld, wasi-libc
# and libclang-rt-dev-wasm32, and jco in guest-tools/node_modules.
#
# 1. clang compiles the plugin, the contract's bindings (guest-tools/c/bindings), cJSON and
#    the helpers (guest-tools/c/helpers) into a core module. Debian 12's clang 14 has no wasm32-wasip2 target, so the module
#    is wasm32-wasi (preview 1) and a reactor: no main; the host calls its exports.
# 2. jco makes it a component: the type information the bindings' object file carries
#    becomes the component's imports and exports, and the WASI preview 1 adapter turns
#    libc's preview 1 calls (cJSON's printf-family number formatting) into WASI 0.2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
c="$here/../../guest-tools/c"
out="$(realpath -m "${1:-$here/webhook.wasm}")"
jco="${JCO:-$here/../../guest-tools/node_modules/.bin/jco}"
if [ ! -x "$jco" ]; then
    echo "build.sh: $jco is missing: run scripts/setup (or set JCO to a jco 1.35 binary)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"${CLANG:-clang}" --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os \
    -Wall -Wextra -Werror -I "$c/bindings" -I "$c/cjson" -I "$c/helpers" -DCJSON_NESTING_LIMIT=128 \
    "$here/webhook.c" "$c/helpers/sluice_helpers.c" "$c/bindings/sluice.c" "$c/cjson/cJSON.c" \
    "$c/bindings/sluice_component_type.o" \
    -Wl,--strip-debug -o "$work/core.wasm"
"$jco" new "$work/core.wasm" --wasi-reactor -o "$out" >/dev/null
echo "build.sh: $out ($(stat -c %s "$out") bytes)"
