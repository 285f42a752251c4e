# Shared by the script rows (bench/rows/*): reading wrk's report and the server's
# resident size. See bench/driver/src/script.rs for the contract with the driver.

# wrk_result FILE: "per_s=... p50_ms=... p99_ms=..." from a `wrk --latency` report;
# fails when an answer was not 2xx or a socket failed.
wrk_result() {
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$1"; then
        echo "bench: the run had failed answers:" >&2
        cat "$1" >&2
        return 1
    fi
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END {
            if (rps == "" || p50 == "" || p99 == "") exit 1
            printf "per_s=%s p50_ms=%.3f p99_ms=%.3f", rps, p50, p99
        }' "$1"
}

# rss_kib PID: the process's resident size in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# peak_rss_kib PID SECONDS: the largest resident size seen over SECONDS (sampled).
peak_rss_kib() {
    local pid="$1" until=$((SECONDS + $2)) peak=0 now
    while [ "$SECONDS" -lt "$until" ]; do
        now="$(rss_kib "$pid" 2>/dev/null || echo 0)"
        [ "${now:-0}" -gt "$peak" ] && peak="$now"
        sleep 0.1
    done
    echo "$peak"
}
