#!/usr/bin/env bash
# Start-up time of `sluice serve` with three plugins (the webhook example built in Rust,
# Python and JavaScript), cold (empty compiled-code cache) and warm (a restart with the
# same plugins: everything comes from the cache). Prints the median of RUNS starts each.
#
#   bench/startup.sh            # RUNS=5 by default
#   RUNS=10 bench/startup.sh
#
# "Start-up" is from launching the process to its "listening on" line: the store is
# open and every plugin is compiled (or loaded), linked, checked and registered.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
runs="${RUNS:-5}"
profile="${PROFILE:-release}"   # PROFILE=debug measures the dev build (dependencies are optimised there too)
target="${CARGO_TARGET_DIR:-$PWD/target}"

echo "building sluice ($profile) and the three plugins..." >&2
if [ "$profile" = release ]; then cargo build --release -p sluice -q; else cargo build -p sluice -q; fi
cargo build --release --target wasm32-wasip2 --manifest-path guest-examples/Cargo.toml \
    --target-dir "$target/guests" -p webhook -q
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
cp "$target/guests/wasm32-wasip2/release/webhook.wasm" "$work/plugins/webhook-rust.wasm"
(cd guest-examples/webhook-python && ../../guest-tools/.venv/bin/componentize-py -d ../../wit -w integration \
    componentize app -o "$work/plugins/webhook-python.wasm" >/dev/null)
(cd guest-examples/webhook-js && ../../guest-tools/node_modules/.bin/componentize-js webhook.js --wit ../../wit \
    --world-name integration -d http fetch-event -o "$work/plugins/webhook-js.wasm" >/dev/null)
ls -l "$work/plugins" >&2

# One start: prints milliseconds until "listening on", then stops the host.
start_ms() {
    local data="$1" log="$work/log"
    local t0 t1
    t0=$(date +%s%N)
    "$target/$profile/sluice" serve --plugins "$work/plugins" --data "$data" --listen 127.0.0.1:0 \
        --api-token bench >"$log" 2>&1 &
    local pid=$!
    until grep -q "listening on" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
        sleep 0.005
    done
    t1=$(date +%s%N)
    kill -TERM "$pid"
    wait "$pid" || true
    grep -q "code=compiled" "$log" && echo "compiled" >"$work/last" || echo "cache" >"$work/last"
    echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cold=()
warm=()
for i in $(seq "$runs"); do
    rm -rf "$work/data"
    cold+=("$(start_ms "$work/data")")
    [ "$(cat "$work/last")" = compiled ] || { echo "cold start did not compile" >&2; exit 1; }
    warm+=("$(start_ms "$work/data")")
    grep -q "code=cache" "$work/log" && ! grep -q "code=compiled" "$work/log" \
        || { echo "warm start compiled something" >&2; exit 1; }
done
echo "start-up with 3 plugins (webhook in Rust, Python, JavaScript), median of $runs:"
echo "  cold (empty compiled-code cache): $(printf '%s\n' "${cold[@]}" | median) ms   [${cold[*]}]"
echo "  warm (restart, code from cache):  $(printf '%s\n' "${warm[@]}" | median) ms   [${warm[*]}]"
