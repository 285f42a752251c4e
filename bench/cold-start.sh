#!/usr/bin/env bash
# Cold start of an interpreted plugin: how soon the webhook example in Python and in
# JavaScript answers its first request after `sluice serve` starts with it in the plugins
# folder, and how many requests per second it serves then and once its optimised code is
# ready. One row per way of getting its code:
#
#   optimised first   --tiering off: Cranelift compiles the plugin before it serves (the
#                     behaviour before baseline code)
#   baseline first    --tiering auto (the default): Winch's baseline code serves at once,
#                     Cranelift's optimised code replaces it when ready
#   sluice compile    the optimised code compiled ahead with `sluice compile` (timed on its
#                     own), then a start that finds it in the cache
#   warm              a restart after the baseline-first run: the optimised code is in the
#                     cache it wrote
#   baseline only     --tiering baseline-only: Winch's code alone, nothing compiled beside
#                     it (what the baseline code itself serves)
#
#   bench/cold-start.sh                      # both languages, 10 s of load per measurement
#   DURATION=5 LANGUAGES=python bench/cold-start.sh
#   PROFILE=debug bench/cold-start.sh        # the dev build (its dependencies, wasmtime
#                                            # among them, are optimised there too)
#   SLUICE=path/to/sluice bench/cold-start.sh    # a binary built before, as it is
#
# "First request" is from launching sluice to the first 200 answer of the webhook;
# "req/s" is wrk with 4 connections on one thread for DURATION seconds, right after the
# first request ("at first") and once the optimised code serves ("optimised").
set -Eeuo pipefail
trap 'echo "bench/cold-start.sh: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
duration="${DURATION:-10}"
languages="${LANGUAGES:-python js}"
profile="${PROFILE:-release}"
target="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v wrk >/dev/null; then
    echo "bench: installing wrk" >&2
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null
fi
if [ -n "${SLUICE:-}" ]; then
    sluice="$SLUICE"
else
    echo "building sluice ($profile)..." >&2
    if [ "$profile" = release ]; then cargo build --release -p sluice -q; else cargo build -p sluice -q; fi
    sluice="$target/$profile/sluice"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/python" "$work/js"
(cd guest-examples/webhook-python && ../../guest-tools/.venv/bin/componentize-py -d ../../wit -w integration \
    componentize app -o "$work/python/webhook.wasm" >/dev/null)
(cd guest-examples/webhook-js && ../../guest-tools/node_modules/.bin/componentize-js webhook.js --wit ../../wit \
    --world-name integration -d http fetch-event -o "$work/js/webhook.wasm" >/dev/null)
ls -l "$work"/*/webhook.wasm >&2
cat >"$work/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"example":"cold start"}'
wrk.headers["Content-Type"] = "application/json"
EOF

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start LANGUAGE DATA [ARGS...]: starts sluice on the language's plugin folder; sets pid,
# t0 (launch, ms) and url (the webhook's URL) once it listens.
start() {
    local language="$1" data="$2"
    shift 2
    log="$work/log"
    t0=$(now_ms)
    "$sluice" serve --plugins "$work/$language" --data "$data" --listen 127.0.0.1:0 --api-token bench "$@" \
        >"$log" 2>&1 &
    pid=$!
    until grep -q '"event":"ready"' "$log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.005
    done
    url=$(grep -m1 -o 'http://127.0.0.1:[0-9]*/webhooks/[0-9a-f]*' "$log")
}

stop() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    pid=""
}

# Milliseconds from launch to the first 200 answer.
first_request_ms() {
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
        -d '{"example":"first"}' "$url")
    [ "$status" = 200 ] || { echo "the first request answered $status" >&2; cat "$log" >&2; exit 1; }
    echo $(($(now_ms) - t0))
}

requests_per_second() {
    wrk -t1 -c4 -d"${duration}s" -s "$work/post.lua" "$url" | awk '/Requests\/sec/ {printf "%.0f", $2}'
}

# Seconds from launch until the optimised code serves (the log says so).
wait_for_optimised() {
    until grep -q "optimised code ready" "$log"; do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    awk -v t="$(($(now_ms) - t0))" 'BEGIN {printf "%.1f", t / 1000}'
}

rows=()
# Each row is also printed as soon as it is measured, so a run cut short keeps its figures.
row() {
    rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |")
    echo "${rows[-1]}" >&2
}

for language in $languages; do
    data="$work/data-$language"
    echo "$language: optimised first..." >&2
    rm -rf "$data"
    start "$language" "$data" --tiering off
    first=$(first_request_ms)
    rate=$(requests_per_second)
    stop
    row "$language" "optimised first (\`--tiering off\`)" "$first" "$rate" "$(awk -v t="$first" 'BEGIN {printf "%.1f", t / 1000}')" "$rate"

    echo "$language: baseline first..." >&2
    rm -rf "$data"
    start "$language" "$data" --tiering auto
    first=$(first_request_ms)
    early=$(requests_per_second)
    ready=$(wait_for_optimised)
    steady=$(requests_per_second)
    stop
    row "$language" "baseline first (\`--tiering auto\`, the default)" "$first" "$early" "$ready" "$steady"

    echo "$language: warm..." >&2
    start "$language" "$data"
    first=$(first_request_ms)
    rate=$(requests_per_second)
    stop
    row "$language" "warm (restart, optimised code from the cache)" "$first" "$rate" "–" "$rate"

    echo "$language: sluice compile..." >&2
    rm -rf "$data"
    compile_started=$(now_ms)
    "$sluice" compile --data "$data" "$work/$language/webhook.wasm" >/dev/null
    compile_s=$(awk -v t="$(($(now_ms) - compile_started))" 'BEGIN {printf "%.1f", t / 1000}')
    start "$language" "$data"
    first=$(first_request_ms)
    rate=$(requests_per_second)
    stop
    row "$language" "\`sluice compile\` ahead (${compile_s} s), then start" "$first" "$rate" "–" "$rate"

    echo "$language: baseline only..." >&2
    rm -rf "$data"
    start "$language" "$data" --tiering baseline-only
    first=$(first_request_ms)
    rate=$(requests_per_second)
    stop
    row "$language" "baseline code only (\`--tiering baseline-only\`)" "$first" "$rate" "never" "–"
done

echo
echo "cold start of the webhook example ($profile build, $(nproc) cores, ${duration} s of wrk -c4 per figure):"
echo
echo "| plugin | code | first request, ms from launch | req/s at first | optimised code serving, s from launch | req/s optimised |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
