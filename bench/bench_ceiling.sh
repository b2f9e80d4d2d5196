#!/bin/sh
# The ceiling of one Redis (issue 21): the full cycle (enqueue, reserve, the
# call, ack) through the http handler against a stand-in that answers at
# once (tests/aistub.py), from 1, 2 and 4 worker processes of 64 slots each.
# Reports jobs/s, the Redis CPU each job cost (INFO cpu, user + sys, over the
# enqueue and the drain), how busy that kept the Redis core, and what it
# means: at 100 % of one core Redis carries 1 / (CPU per job) jobs/s, and
# with 2-second AI calls that many jobs/s are that rate x 2 s calls in
# flight at once (Little's law). Called by bench/run.sh (part "ceiling"),
# or alone:
#   CORRAL_BUILD=build sh bench/bench_ceiling.sh
# BENCH_CEILING_JOBS: jobs per run (default 20000); BENCH_CEILING_WORKERS:
# the worker counts (default "1 2 4").
set -eu
B=${CORRAL_BUILD:-build}
JOBS=${BENCH_CEILING_JOBS:-20000}
WORKERS=${BENCH_CEILING_WORKERS:-1 2 4}
PY=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/corral-bench-ceiling.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
sock="$tmp/redis.sock"
redis-server --port 0 --unixsocket "$sock" --dir "$tmp" --save '' --appendonly no \
    --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
until redis-cli -s "$sock" ping >/dev/null 2>&1; do sleep 0.05; done
"$PY" "$here/../tests/aistub.py" --port-file "$tmp/stub.port" 2>/dev/null &
stub=$!
pids="$stub"
until [ -s "$tmp/stub.port" ]; do sleep 0.05; done
url="http://127.0.0.1:$(cat "$tmp/stub.port")/v1/chat/completions"
{
    printf '[redis]\nurl = unix://%s\n[pool]\nconcurrency = 64\n' "$sock"
    printf '[queue ceil]\nhandler = http\nmax_payload = 1M\nservice = ai\n'
    printf '[service ai]\nurl = %s\nmax_inflight = 1000\n' "$url"
} >"$tmp/ceil.conf"
# Redis's CPU seconds so far (user + sys of the whole server).
redis_cpu() {
    redis-cli -s "$sock" info cpu | tr -d '\r' |
        awk -F: '$1 == "used_cpu_user" || $1 == "used_cpu_sys" { s += $2 } END { printf "%.6f", s }'
}

echo "corral: the ceiling of one Redis, full cycle through the http handler (stand-in answers at once)"
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), unix socket, $JOBS jobs per run, 64 slots per worker"
printf '%-8s %9s %14s %11s %16s %22s\n' workers "jobs/s" "redis us/job" "redis busy" "1 core: jobs/s" "2 s calls in flight"
for w in $WORKERS; do
    redis-cli -s "$sock" flushall >/dev/null
    # A first worker declares the queue (and loads the library), then stops.
    "$B/corral-worker" -c "$tmp/ceil.conf" 2>>"$tmp/worker.log" &
    first=$!
    until [ "$(redis-cli -s "$sock" exists "corral:{ceil}:conf")" = 1 ]; do sleep 0.05; done
    kill "$first"
    wait "$first" 2>/dev/null || true
    c0=$(redis_cpu)
    "$B/bench/bench_worker" enqueue "$sock" ceil "$JOBS"
    c1=$(redis_cpu)
    run=""
    n=0
    while [ $n -lt "$w" ]; do
        "$B/corral-worker" -c "$tmp/ceil.conf" 2>>"$tmp/worker.log" &
        run="$run $!"
        n=$((n + 1))
    done
    pids="$stub $run"
    ms=$("$B/bench/bench_worker" drain "$sock" ceil "$JOBS")
    c2=$(redis_cpu)
    for p in $run; do kill "$p" 2>/dev/null || true; done
    for p in $run; do wait "$p" 2>/dev/null || true; done
    pids="$stub"
    awk -v w="$w" -v n="$JOBS" -v ms="$ms" -v c0="$c0" -v c1="$c1" -v c2="$c2" 'BEGIN {
        rate = n / (ms / 1000)
        us = (c2 - c0) * 1e6 / n          # enqueue + drain, per job
        busy = (c2 - c1) / (ms / 1000)    # during the drain
        core = 1e6 / us
        printf "%-8d %9.0f %14.1f %10.0f%% %16.0f %22.0f\n", w, rate, us, busy * 100, core, core * 2
    }'
done
echo "(redis us/job: Redis CPU for the enqueue and the drain over the jobs; 1 core: the rate at which"
echo " that CPU fills one core; 2 s calls in flight: that rate x 2 s, the concurrent AI calls of 2 s"
echo " one Redis core carries. jobs/s is bounded by this machine (2 cores for Redis, the workers and"
echo " the Python stand-in) well before Redis is)"
