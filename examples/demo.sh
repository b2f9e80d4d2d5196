#!/bin/sh
# make demo: a private redis-server on a unix socket in a temp dir, corrald
# keeping house, two workers on the echo handler, a handful of jobs of every
# priority (one delayed), then each job's outcome and the queue's state.
set -eu
B=${CORRAL_BUILD:-build}
tmp=$(mktemp -d /tmp/corral-demo.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi

say "starting a private redis-server on $tmp/redis.sock"
redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --dir "$tmp" \
    --save '' --appendonly no --daemonize yes --pidfile "$tmp/redis.pid" \
    --logfile "$tmp/redis.log"
i=0
until redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "redis-server did not start" >&2; exit 1; }
    sleep 0.05
done

cat > "$tmp/corral.conf" <<CONF
[redis]
url = unix://$tmp/redis.sock

[pool]
min = 1
max = 6
concurrency = 2
drain_timeout = 10s
queues = demo

[scale]
tick = 500ms
scale_out_cooldown = 500ms
scale_in_window = 4s
target_wait = 3s

[queue demo]
; each job takes 0.3 s: a stand-in for an AI call
handler = exec
command = /bin/sh -c 'sleep 0.3; cat'
priorities = high, normal, low
max_attempts = 3
backoff = 200ms..2s
CONF
export CORRAL_CONFIG="$tmp/corral.conf"
ctl() { "$B/corralctl" "$@"; }
rc() { redis-cli -s "$tmp/redis.sock" "$@"; }
host=$(hostname)

say "corrald --check: the effective configuration"
"$B/corrald" --check

say "starting corrald (min 1, max 6 workers of 2 slots each)"
"$B/corrald" 2>"$tmp/corrald.log" &
cpid=$!
pids="$pids $cpid"
until [ "$(rc exists "corral:host:$host")" = 1 ]; do sleep 0.05; done

say "enqueueing jobs of each priority, one delayed by 1s, one unique key twice"
ids=""
for p in low normal high; do
    id=$(ctl enqueue demo "{\"prompt\": \"summarise chapter $p\"}" --priority $p)
    echo "  job $id priority $p"
    ids="$ids $id"
done
id=$(ctl enqueue demo '{"prompt": "later"}' --delay 1s); echo "  job $id delayed 1s"; ids="$ids $id"
u1=$(ctl enqueue demo '{"prompt": "once"}' --unique order-42)
u2=$(ctl enqueue demo '{"prompt": "once"}' --unique order-42)
echo "  unique key order-42 -> job $u1, again -> job $u2 (the same job)"
ids="$ids $u1"

say "bad input is refused with a clear error, and nothing else is disturbed"
ctl enqueue demo 'not json' || true
ctl enqueue nosuchqueue '{}' || true
ctl enqueue demo '{}' --priority urgent || true

say "waiting for each job (corralctl wait)"
for id in $ids; do
    printf '  job %s -> ' "$id"
    ctl wait demo "$id" --timeout 10s
done

say "one job in full (corralctl job demo $u1)"
ctl job demo "$u1"

say "a burst of 200 jobs: the pool grows, drains the backlog, then shrinks back"
i=0
while [ $i -lt 200 ]; do
    echo "FCALL corral_enqueue 1 demo '{\"n\":$i}'"
    i=$((i + 1))
done | rc > /dev/null
printf '  %5s  %5s  %8s  %s\n' time depth workers "last decision"
t=0
while [ $t -lt 24 ]; do
    depth=$(rc FCALL_RO corral_stats 1 demo | sed 's/.*"depth":\([0-9]*\).*/\1/')
    workers=$(rc hget "corral:host:$host" workers)
    decision=$(rc hget "corral:host:$host" last_decision)
    printf '  %4s s  %5s  %8s  %s\n' "$(awk "BEGIN{print $t/2}")" "$depth" "$workers" "$decision"
    sleep 0.5
    t=$((t + 1))
done

say "the queue after the run (FCALL_RO corral_stats 1 demo)"
rc FCALL_RO corral_stats 1 demo

say "stopping corrald: it drains its workers"
kill "$cpid"
wait "$cpid" 2>/dev/null || true

say "corrald's decisions (from its log)"
grep -E 'scaling|stopping an idle|ready|stopped' "$tmp/corrald.log" | cut -c1-160
