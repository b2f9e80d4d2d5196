#!/bin/sh
# make bench: the queue benchmark on a private redis-server (redis-benchmark
# LPUSH and RPOP as the reference, then bench_queue, which prints each corral
# figure beside the reference from this same run: enqueue one call per job,
# pipelined, and in bulk with corral_enqueue_many in batches of 1,000; the
# full cycle), then the worker,
# supervisor and scaler benchmarks, each with its own private Redis, the
# ceiling of one Redis core (bench_ceiling.sh), the full cycle over TLS
# (stunnel4) beside plain TCP (bench_tls.py), the tenants and token-budget
# benchmarks (bench_tenants.py, bench_tokens.py), and the control of a call
# in flight (bench_control.py).
#   sh bench/run.sh [queue|status|worker|ceiling|supervisor|scaler|web|tls|tenants|tokens|control|clients|cluster|gate|floor]...
#   (default: all)
# CORRAL_BUILD is the build directory (make bench sets it; build-san under
# SANITIZE=1); BENCH_JOBS the jobs per queue run (default 50000);
# BENCH_REF_RUNS the redis-benchmark runs per reference, best kept (default 3),
# of BENCH_REF_JOBS requests each (default 20000);
# BENCH_PIN=0 leaves CPU placement of the queue benchmark to the scheduler.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
B=${CORRAL_BUILD:-$here/../build}
JOBS=${BENCH_JOBS:-50000}
REF_RUNS=${BENCH_REF_RUNS:-3}
REF_JOBS=${BENCH_REF_JOBS:-20000}
parts=${*:-queue status worker ceiling supervisor scaler web tls tenants tokens control clients cluster gate floor}

for t in redis-server redis-cli redis-benchmark; do
    command -v "$t" >/dev/null 2>&1 ||
        { echo "bench: $t not found (make deps installs redis-server and redis-tools)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/corral-bench.XXXXXX)
redis_pid=
stop_redis() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        redis_pid=
    fi
}
cleanup() {
    stop_redis
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A private redis-server on unix socket $1 (no persistence), started with
# the command prefix $2 (a CPU pinning, or nothing); waits for its PONG.
start_redis() {
    # shellcheck disable=SC2086 # $2 is a command prefix or nothing
    $2 redis-server --port 0 --unixsocket "$1" --unixsocketperm 700 --dir "$tmp" \
        --save '' --appendonly no --logfile "$1.log" &
    redis_pid=$!
    deadline=$(($(date +%s) + 10))
    until redis-cli -s "$1" ping 2>/dev/null | grep -q PONG; do
        if ! kill -0 "$redis_pid" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; then
            echo "bench: redis-server did not answer PING on $1 within 10 s:" >&2
            tail -n 20 "$1.log" >&2 || true
            return 1
        fi
        sleep 0.05
    done
}

queue_bench() {
    [ -x "$B/bench/bench_queue" ] ||
        { echo "bench: $B/bench/bench_queue is not built (make bench builds it)" >&2; return 1; }
    # Where the scheduler puts a client and the server changes a one-connection
    # round trip several-fold on some machines (a cross-core wake-up can cost
    # more than the command), so pin both the same way for every figure:
    # Redis on CPU 0, every client on the others.
    ncpu=$(nproc 2>/dev/null || echo 1)
    srv_pin='' cli_pin='' placement="placement left to the scheduler"
    if [ "${BENCH_PIN:-1}" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
        clients=1-$((ncpu - 1))
        [ "$ncpu" -eq 2 ] && clients=1
        srv_pin="taskset -c 0" cli_pin="taskset -c $clients"
        placement="redis-server pinned to CPU 0, clients to CPU $clients"
    fi
    sock="$tmp/redis.sock"
    start_redis "$sock" "$srv_pin" || return 1

    # redis-benchmark -P 1: one request per round trip, as corral's calls.
    # Best of REF_RUNS per connection count: a reference that caught a busy
    # moment would flatter every ratio.
    refs=
    for c in 1 4; do
        lpush=0 rpop=0
        i=0
        while [ $i -lt "$REF_RUNS" ]; do
            i=$((i + 1))
            # shellcheck disable=SC2086
            if ! $cli_pin redis-benchmark -s "$sock" --csv -n "$REF_JOBS" -c "$c" -P 1 -t lpush,rpop \
                >"$tmp/rb.csv" 2>"$tmp/rb.err"; then
                echo "bench: redis-benchmark failed:" >&2
                cat "$tmp/rb.err" >&2
                return 1
            fi
            l=$(awk -F'"' '$2 == "LPUSH" { print $4 }' "$tmp/rb.csv")
            r=$(awk -F'"' '$2 == "RPOP" { print $4 }' "$tmp/rb.csv")
            if [ -z "$l" ] || [ -z "$r" ]; then
                echo "bench: no LPUSH/RPOP rate in redis-benchmark's output:" >&2
                cat "$tmp/rb.csv" "$tmp/rb.err" >&2
                return 1
            fi
            lpush=$(awk -v a="$l" -v b="$lpush" 'BEGIN { print (a + 0 > b + 0) ? a : b }')
            rpop=$(awk -v a="$r" -v b="$rpop" 'BEGIN { print (a + 0 > b + 0) ? a : b }')
        done
        refs="$refs -r $c:$lpush:$rpop"
    done
    echo "references: best of $REF_RUNS redis-benchmark runs (-n $REF_JOBS) per connection count;" \
        "$placement"
    # shellcheck disable=SC2086 # refs is a list of options
    $cli_pin "$B/bench/bench_queue" -n "$JOBS" $refs "$sock"
    stop_redis
}

# corralctl status over 50 queues, 20 hosts and 3 services, beside a PING
# round trip on the same connection.
status_bench() {
    [ -x "$B/bench/bench_status" ] ||
        { echo "bench: $B/bench/bench_status is not built (make bench builds it)" >&2; return 1; }
    sock="$tmp/status.sock"
    start_redis "$sock" "" || return 1
    "$B/bench/bench_status" "$sock"
    stop_redis
}

# The control benchmark twice: as any process runs, then (where the kernel
# lets us) with every process of it at SCHED_FIFO 10, so that the chain
# service -> worker -> Redis -> follower (four processes on this machine,
# four hosts in production) is not held up by unrelated work on the machine
# (bench/README.md, "Control of a call in flight").
control_bench() {
    echo
    echo "control, every process at normal priority:"
    rc=0
    "${PYTHON:-/usr/bin/python3}" "$here/bench_control.py" "$B" || rc=$?
    if chrt -f 10 true 2>/dev/null; then
        echo
        echo "control, every process at SCHED_FIFO 10 (chrt -f 10):"
        rc=0
        chrt -f 10 "${PYTHON:-/usr/bin/python3}" "$here/bench_control.py" "$B" || rc=$?
    fi
    return $rc
}

for part in $parts; do
    case $part in
    queue) queue_bench ;;
    worker) echo; CORRAL_BUILD=$B sh "$here/bench_worker.sh" ;;
    ceiling) echo; CORRAL_BUILD=$B sh "$here/bench_ceiling.sh" ;;
    supervisor) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_supervisor.py" "$B" ;;
    status) echo; status_bench ;;
    scaler) echo; "$B/bench/sim_scaler" ;;
    web) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_web.py" "$B" ;;
    tls) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_tls.py" "$B" ;;
    tenants) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_tenants.py" "$B" ;;
    tokens) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_tokens.py" "$B" ;;
    control) control_bench ;;
    clients) echo; CORRAL_BUILD=$B "${PYTHON:-/usr/bin/python3}" "$here/bench_clients.py" ;;
    cluster) echo; CORRAL_BUILD=$B "${PYTHON:-/usr/bin/python3}" "$here/bench_cluster.py" ;;
    gate) echo; CORRAL_BUILD=$B "${PYTHON:-/usr/bin/python3}" "$here/bench_cluster_gate.py" ;;
    floor) echo; "${PYTHON:-/usr/bin/python3}" "$here/bench_floor.py" "$B" ;;
    *) echo "bench: unknown part \"$part\" (queue, status, worker, ceiling, supervisor, scaler, web, tls, tenants, tokens, control, clients, cluster, gate, floor)" >&2; exit 2 ;;
    esac
done
