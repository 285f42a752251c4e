#!/usr/bin/env bash
# Builds {{name}}.wasm, a sluice plugin component: ./build.sh
#
# Needs clang with wasi-libc (on Debian 12: apt-get install clang lld wasi-libc
# libclang-rt-dev-wasm32; set CLANG to use another clang) and jco, which turns the core
# module into a component: the first build installs it here from package.json (npm), or
# set JCO to a jco you already have.
set -euo pipefail
cd "$(dirname "$0")"

if [ -n "${JCO:-}" ]; then
    jco="$JCO"
else
    jco=node_modules/.bin/jco
    if [ ! -x "$jco" ]; then
        echo "build.sh: installing jco (once, as package.json pins it)"
        npm install --no-audit --no-fund --loglevel=error
    fi
fi
clang="${CLANG:-clang}"
if ! command -v "$clang" >/dev/null 2>&1; then
    echo "build.sh: $clang is missing; on Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32" >&2
    exit 1
fi

# A wasm32-wasi (WASI preview 1) reactor: no main, the host calls its exports. Debian 12's
# clang 14 has no wasm32-wasip2 target; jco's adapter bridges preview 1 to WASI 0.2.
mkdir -p target
"$clang" --target=wasm32-wasi -mexec-model=reactor -std=c11 -Os -Wall -Wextra \
    -I bindings -I cjson -I helpers \
    plugin.c helpers/sluice_helpers.c bindings/sluice.c cjson/cJSON.c bindings/sluice_component_type.o \
    -Wl,--strip-debug -o target/{{name}}.core.wasm
"$jco" new target/{{name}}.core.wasm --wasi-reactor -o {{name}}.wasm >/dev/null
echo "build.sh: built {{name}}.wasm ($(wc -c < {{name}}.wasm) bytes)"
