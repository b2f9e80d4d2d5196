#!/bin/sh
# The worker's benchmarks (issue [worker]); each figure beside a reference
# measured in this same run. Called by bench/run.sh, or alone:
#   CORRAL_BUILD=build sh bench/bench_worker.sh
set -eu
B=${CORRAL_BUILD:-build}
JOBS=${BENCH_WORKER_JOBS:-100000}
PY=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/corral-bench-worker.XXXXXX)
pids=""
# Waits name their pids: a bare `wait` also waits for jobs nobody killed.
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
bw() { "$B/bench/bench_worker" "$@"; }
# mem PID: "RSS PSS private" in KiB. RSS counts every shared page (libc,
# libcurl and its TLS stack) in full in every process; PSS splits shared
# pages among the processes mapping them; private (Private_Clean +
# Private_Dirty of smaps_rollup) is what one more such process costs.
mem() {
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
    awk -v rss="$rss" '/^Pss:/ {p = $2} /^Private_(Clean|Dirty):/ {q += $2} END {print rss, p, q}' \
        "/proc/$1/smaps_rollup"
}
conf() { # conf NAME HANDLER CONCURRENCY [SERVICE_URL]
    {
        printf '[redis]\nurl = unix://%s\n[pool]\nconcurrency = %s\n' "$sock" "$3"
        printf '[queue %s]\nhandler = %s\nmax_payload = 1M\n' "$1" "$2"
        if [ -n "${4:-}" ]; then printf 'service = ai\n[service ai]\nurl = %s\nmax_inflight = 1000\n' "$4"; fi
    } > "$tmp/$1.conf"
}
start_workers() { # start_workers NAME COUNT
    n=0
    while [ $n -lt "$2" ]; do
        "$B/corral-worker" -c "$tmp/$1.conf" 2>>"$tmp/$1.log" &
        pids="$pids $!"; last=$!
        n=$((n + 1))
    done
    until [ "$(redis-cli -s "$sock" exists "corral:{$1}:conf")" = 1 ]; do sleep 0.05; done
}
stop_workers() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    pids=""
}

echo "corral worker benchmarks: $(nproc) cores, redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), unix socket"

# 1. drain rate of pre-enqueued echo jobs with 4 worker processes
lpush=$(redis-benchmark -s "$sock" -q -n 100000 -c 50 -P 1 -t lpush 2>/dev/null | tr '\r' '\n' | grep -i '^lpush:' | tail -n1 | sed 's/.*: \([0-9.]*\) requests.*/\1/')
rpop=$(redis-benchmark -s "$sock" -q -n 100000 -c 50 -P 1 -t rpop 2>/dev/null | tr '\r' '\n' | grep -i '^rpop:' | tail -n1 | sed 's/.*: \([0-9.]*\) requests.*/\1/')
redis-cli -s "$sock" flushall >/dev/null
conf echo echo 64
start_workers echo 1
stop_workers
bw enqueue "$sock" echo "$JOBS"
start_workers echo 4
ms=$(bw drain "$sock" echo "$JOBS")
stop_workers
awk -v n="$JOBS" -v ms="$ms" -v l="$lpush" -v r="$rpop" 'BEGIN {
    rate = n / (ms / 1000); pair = 1 / (1 / l + 1 / r)
    printf "\n1. drain of %d pre-enqueued echo jobs, 4 workers x 64 slots: %.0f jobs/s (%.0f ms)\n", n, rate, ms
    printf "   reference: redis-benchmark -c 50 LPUSH %.0f/s, RPOP %.0f/s, pair %.0f/s; ratio to pair %.2f\n", l, r, pair, rate / pair
    printf "   goal >= 30000 jobs/s: %s\n", (rate >= 30000 ? "met" : "NOT met")
}'

# 2. jobs in flight in one process against a service answering after 200 ms
"$PY" "$here/../tests/aistub.py" --port-file "$tmp/stub.port" 2>/dev/null &
pids="$pids $!"; stub_pid=$!
until [ -s "$tmp/stub.port" ]; do sleep 0.05; done
url="http://127.0.0.1:$(cat "$tmp/stub.port")/v1/chat/completions"
conf slow http 64 "$url"
start_workers slow 1
N2=3000
bw enqueue "$sock" slow "$N2" '{"stub": {"delay_ms": 200}}'
# The worker's memory with 64 calls in flight: sampled every 0.25 s while it
# drains, the sample with the most private memory kept.
slow_pid=$last
( while kill -0 "$slow_pid" 2>/dev/null; do mem "$slow_pid" 2>/dev/null || true; sleep 0.25; done ) \
    >"$tmp/slow.mem" &
sampler=$!
ms=$(bw drain "$sock" slow "$N2")
kill $sampler 2>/dev/null || true
wait $sampler 2>/dev/null || true
kill $last 2>/dev/null || true
awk -v n="$N2" -v ms="$ms" 'BEGIN {
    rate = n / (ms / 1000); ideal = 64 / 0.2
    printf "\n2. one worker, concurrency 64, service answering after 200 ms: %.0f jobs/s\n", rate
    printf "   reference: 64 slots / 0.2 s = %.0f jobs/s; ratio %.2f (goal >= 0.80, i.e. >= 250 jobs/s): %s\n", ideal, rate / ideal, (rate >= 250 ? "met" : "NOT met")
}'
awk 'NF == 3 && $3 > q { r = $1; p = $2; q = $3 } END {
    printf "   its memory with 64 calls in flight: RSS %d KiB, PSS %d KiB, private %d KiB (%.2f MiB; goal <= 4 MiB: %s)\n", r, p, q, q / 1024, (q > 0 && q <= 4096 ? "met" : "NOT met")
}' "$tmp/slow.mem"
kill $stub_pid 2>/dev/null || true

# 3. idle RSS and CPU of one worker
conf idle echo 4
"$B/corral-worker" -c "$tmp/idle.conf" 2>>"$tmp/idle.log" &
wpid=$!; pids="$pids $wpid"
until [ "$(redis-cli -s "$sock" exists "corral:{idle}:conf")" = 1 ]; do sleep 0.05; done
sleep 1
rss=$(awk '/VmRSS/ {print $2}' /proc/$wpid/status)
anon=$(awk '/RssAnon/ {print $2}' /proc/$wpid/status)
# shellcheck disable=SC2046 # three numbers, split on purpose
set -- $(mem $wpid)
pss=$2 priv=$3
cpu=$(bw cpu $wpid 10)
"$PY" -c 'import redis, time; r = redis.Redis(); time.sleep(3)' &
ppid=$!; sleep 2
prss=$(awk '/VmRSS/ {print $2}' /proc/$ppid/status); wait $ppid
rrss=$(awk '/VmRSS/ {print $2}' /proc/$(cat "$tmp/redis.pid")/status)
awk -v rss="$rss" -v anon="$anon" -v pss="$pss" -v priv="$priv" -v cpu="$cpu" -v p="$prss" -v r="$rrss" 'BEGIN {
    printf "\n3. idle echo worker: RSS %d KiB (%.1f MiB; goal <= 4 MiB: %s), CPU %d ms over 10 s idle (goal ~0)\n", rss, rss / 1024, (rss <= 4096 ? "met" : "NOT met"), cpu
    printf "   of which anonymous %d KiB; PSS %d KiB, private %d KiB (shared library pages are shared by every worker)\n", anon, pss, priv
    printf "   reference: an idle python3 with redis-py imported %d KiB (%.2fx the worker); redis-server %d KiB\n", p, p / rss, r
}'

conf idlehttp http 4 "http://127.0.0.1:9/v1"
"$B/corral-worker" -c "$tmp/idlehttp.conf" 2>>"$tmp/idlehttp.log" &
hpid=$!; pids="$pids $hpid"
until [ "$(redis-cli -s "$sock" exists "corral:{idlehttp}:conf")" = 1 ]; do sleep 0.05; done
sleep 1
hrss=$(awk '/VmRSS/ {print $2}' /proc/$hpid/status)
hanon=$(awk '/RssAnon/ {print $2}' /proc/$hpid/status)
# shellcheck disable=SC2046 # three numbers, split on purpose
set -- $(mem $hpid)
awk -v rss="$hrss" -v anon="$hanon" -v pss="$2" -v priv="$3" 'BEGIN {
    printf "   a worker serving an http queue (libcurl and its TLS stack loaded): RSS %d KiB (%.1f MiB; goal: %s), anonymous %d KiB\n", rss, rss / 1024, (rss <= 4096 ? "met" : "NOT met"), anon
    printf "   its PSS %d KiB, private %d KiB (%.2f MiB: what one more idle http worker costs; goal <= 1.5 MiB: %s)\n", pss, priv, priv / 1024, (priv <= 1536 ? "met" : "NOT met")
}'

# 4. enqueue-to-start latency with an idle worker
out=$(bw latency "$sock" idle 500 10)
set -- $out
awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN {
    printf "\n4. enqueue-to-start latency, idle worker, 500 jobs 10 ms apart: p50 %.3f ms, p99 %.3f ms (goal p50 <= 0.4, p99 <= 1: %s)\n", a / 1000, b / 1000, (a <= 400 && b <= 1000) ? "met" : "NOT met"
    printf "   reference: PING round trip p50 %.3f ms, p99 %.3f ms\n", c / 1000, d / 1000
}'
stop_workers
