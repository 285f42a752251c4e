#!/usr/bin/env bash
# Plugins' outbound calls: wrk drives the bot API's `courier:fetch` action (the courier
# test plugin, tests/plugins/courier), and each action, in a fresh instance, makes one
# GET to a native hyper server on loopback (bench-native, which answers at once). Each
# sluice binary given runs in turn, in alternating rounds, so two builds compare side
# by side in one run.
#
#   bench/outbound-calls.sh [SLUICE ...]    (default: this checkout's release build)
#   environment: ROUNDS (3), DURATION (8s), CONNECTIONS (8)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${ROUNDS:-3}"
duration="${DURATION:-8s}"
connections="${CONNECTIONS:-8}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: installing wrk"
    apt-get update -qq && apt-get install -y -qq wrk
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p bench-native
cargo build --release -q --target wasm32-wasip2 -p courier --manifest-path guest-examples/Cargo.toml \
    --target-dir "$target/guests"
courier="$target/guests/wasm32-wasip2/release/courier.wasm"
if [ "$#" -eq 0 ]; then
    cargo build --release -q -p sluice
    set -- "$target/release/sluice"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_for_listening LOG: the address a server printed as `listening on URL`.
wait_for_listening() {
    for _ in $(seq 600); do
        local url
        url="$(sed -n 's/^listening on //p' "$1" | head -1)"
        if [ -n "$url" ]; then echo "$url"; return 0; fi
        sleep 0.1
    done
    echo "bench: no server started:" >&2
    cat "$1" >&2
    exit 1
}

"$target/release/bench-native" 127.0.0.1:0 >"$work/upstream.log" 2>&1 &
pids+=($!)
upstream="$(wait_for_listening "$work/upstream.log")"
cat >"$work/fetch.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
wrk.body = '{"type":"courier:fetch","input":{"url":"$upstream/ping"}}'
LUA

for round in $(seq "$rounds"); do
    for sluice in "$@"; do
        dir="$work/host"
        rm -rf "$dir" && mkdir -p "$dir/plugins"
        cp "$courier" "$dir/plugins/"
        printf 'allowed-hosts = ["http://127.0.0.1:*"]\n' >"$dir/plugins/courier.toml"
        "$sluice" serve --plugins "$dir/plugins" --data "$dir/data" --listen 127.0.0.1:0 \
            --api-token bench >"$dir/log" 2>&1 &
        host=$!
        base="$(wait_for_listening "$dir/log")"
        wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/fetch.lua" "$base/v1/chat/actions" >"$dir/wrk"
        kill "$host"; wait "$host" 2>/dev/null || true
        rate="$(awk '/^Requests\/sec/ {print $2}' "$dir/wrk")"
        p50="$(awk '$1 == "50%" {print $2}' "$dir/wrk")"
        p99="$(awk '$1 == "99%" {print $2}' "$dir/wrk")"
        failed="$(awk '/Non-2xx/ {print $5}' "$dir/wrk")"
        printf 'round %s  %-40s %9s actions/s  p50 %-8s p99 %-8s%s\n' "$round" "$sluice" "$rate" "$p50" "$p99" \
            "${failed:+  non-2xx $failed}"
    done
done
