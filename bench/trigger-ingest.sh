#!/usr/bin/env bash
# Trigger event ingest benchmark: how many events per second sluice accepts, where
# accepting means the event is durably written to the queue (group commit, fsync) before
# `{"ok":true}` is answered. wrk drives the real release binary over HTTP.
#
#   bench/trigger-ingest.sh [duration] [connections] [wrk-threads]
#   (defaults: 20s, 64 connections, 2 threads)
#
# Runs, one after the other, on one fresh host each:
#   1. ingest only         (triggers.workers = 0: events are queued, nothing runs them)
#   2. ingest + processing (the default 8 workers run the example order plugin meanwhile)
#   3. reference: the same load on a synchronous webhook URL (the Botpress Webhook
#      example plugin: runs the plugin and stores its event, one commit per request)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-20s}"
connections="${2:-64}"
threads="${3:-2}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench: installing wrk"
    apt-get update -qq && apt-get install -y -qq wrk
fi
scripts/build-plugins >/dev/null
cargo build --release -p sluice
sluice="${CARGO_TARGET_DIR:-$PWD/target}/release/sluice"

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# start_host NAME WORKERS: serves plugins/trigger.wasm and plugins/webhook.wasm from a
# fresh data folder; sets $base.
start_host() {
    local dir="$work/$1"
    mkdir -p "$dir/plugins"
    cp plugins/trigger.wasm plugins/webhook.wasm "$dir/plugins/"
    printf '[triggers]\nworkers = %s\n' "$2" >"$dir/sluice.toml"
    "$sluice" serve --plugins "$dir/plugins" --data "$dir/data" --listen 127.0.0.1:0 \
        --api-token bench --config "$dir/sluice.toml" >"$dir/log" 2>&1 &
    server=$!
    for _ in $(seq 600); do
        base="$(sed -n 's/^listening on //p' "$dir/log")"
        [ -n "$base" ] && return 0
        sleep 0.1
    done
    echo "bench: sluice did not start:" >&2
    cat "$dir/log" >&2
    exit 1
}

stop_host() {
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
}

json_field() {
    python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"
}

# run_trigger LABEL WORKERS
run_trigger() {
    start_host "$1" "$2"
    local created id secret
    created="$(curl -sf -X POST "$base/api/v1/integration/trigger/create" \
        -H 'authorization: Bearer bench' -H 'content-type: application/json' \
        -d '{"name":"bench","botId":"trigger","authenticate":true,"sessionDuration":3600000}')"
    id="$(json_field id <<<"$created")"
    secret="$(json_field secret <<<"$created")"
    echo "== $1: POST $base/api/v1/integration/trigger/$id/event ($connections connections, $duration)"
    TRIGGER_SECRET="$secret" wrk -t"$threads" -c"$connections" -d"$duration" --latency \
        -s bench/trigger-ingest.lua "$base/api/v1/integration/trigger/$id/event"
    stop_host
}

run_trigger "ingest only (workers = 0)" 0
run_trigger "ingest while 8 workers process" 8

start_host reference 8
webhook="$(curl -sf -H 'authorization: Bearer bench' "$base/v1/admin/installations" |
    python3 -c "import json,sys; print([i['webhookUrl'] for i in json.load(sys.stdin)['installations'] if i['name']=='webhook'][0])")"
echo "== reference: synchronous webhook $webhook ($connections connections, $duration)"
TRIGGER_SECRET="" wrk -t"$threads" -c"$connections" -d"$duration" --latency -s bench/trigger-ingest.lua "$webhook"
stop_host
