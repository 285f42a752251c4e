#!/usr/bin/env bash
# Delivery fan-out benchmark: the webhook example plugin driven at a fixed rate, every
# event delivered to N signed webhook subscriptions on a loopback receiver.
#
#   bench/delivery-fanout.sh [--rate 5000] [--seconds 20] [--subscriptions 4] [--slow]
#   bench/delivery-fanout.sh --saturate [--rate 2000] [--seconds 4]   # the highest rate
#                             # sustained, found in steps of --seconds from --rate
#   ... --native target/release/bench-native   # the same, sent to the native limit
#
# The store lives on tmpfs (/dev/shm) by default, so that what is measured is delivery
# rather than this machine's fsync (SQLite with synchronous=FULL commits each recorded
# event); set BENCH_TMPDIR=/tmp to measure on disk. --slow adds a subscription whose
# receiver never answers: compare the ingestion latency and per-subscription rates with
# a run without it.
# BENCH_PROFILE=dev uses the dev profile (dependencies optimised, sluice itself not)
# where a release build is not at hand.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup
profile="${BENCH_PROFILE:-release}"
profile_dir="$profile"
if [ "$profile" = dev ]; then profile_dir=debug; fi
cargo build --profile "$profile" --workspace --bins --examples
export TMPDIR="${BENCH_TMPDIR:-/dev/shm}"
exec "${CARGO_TARGET_DIR:-$PWD/target}/$profile_dir/examples/delivery-fanout" "$@"
