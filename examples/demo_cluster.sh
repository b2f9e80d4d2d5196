#!/bin/sh
# make demo, part 2: the same fleet on a Redis Cluster. Three redis-server
# primaries on loopback (cluster mode, joined with redis-cli --cluster
# create), three queues whose hash tags land on three shards, one AI
# service (the tests' stand-in) that all three call: corrald serves them
# with one worker each, corralctl status shows which node holds what, and
# when the service fails the breaker opens once for the whole fleet, across
# the shards (the service gate on the service's own slot, {svc:stub}).
set -eu
B=${CORRAL_BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/corral-demo-cluster.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    for f in "$tmp"/n*/redis.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$tmp"
}
. "$here/demo_lib.sh"
demo_traps
# until CMD... succeeds, every 0.1 s, at most $1 tenths of a second
wait_for() {
    n=$1; shift
    t=0
    until "$@" >/dev/null 2>&1; do
        t=$((t + 1)); [ $t -gt "$n" ] && { echo "demo: timed out waiting for: $*" >&2; exit 1; }
        sleep 0.1
    done
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

say "on a Redis Cluster: three primaries on loopback, joined by redis-cli --cluster create"
seeds=""
addrs=""
for i in 1 2 3; do
    port=$(free_port) bus=$(free_port)
    mkdir "$tmp/n$i"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-port "$bus" \
        --cluster-config-file nodes.conf --cluster-node-timeout 2000 --dir "$tmp/n$i" \
        --save '' --appendonly no --daemonize yes --pidfile "$tmp/n$i/redis.pid" \
        --logfile "$tmp/n$i/redis.log"
    wait_for 100 redis-cli -p "$port" ping
    seeds="$seeds${seeds:+, }127.0.0.1:$port"
    addrs="$addrs 127.0.0.1:$port"
done
# shellcheck disable=SC2086 # one argument per node
redis-cli --cluster create $addrs --cluster-yes >"$tmp/create.log" 2>&1 ||
    { cat "$tmp/create.log" >&2; exit 1; }
first=${addrs# }
first=${first%% *}
ok() { redis-cli -p "${first#127.0.0.1:}" cluster info | grep -q 'cluster_state:ok'; }
wait_for 100 ok
echo "  seeds: $seeds"

# Three queue names whose hash tags {name} land on three different primaries.
queues=$("$PY" - "${first#127.0.0.1:}" <<'PY'
import subprocess, sys
port = sys.argv[1]
def cli(*a):
    return subprocess.run(["redis-cli", "-p", port, *a], capture_output=True, text=True).stdout
slots = []  # (start, end, port)
lines = cli("cluster", "slots").split()
i = 0
while i < len(lines):  # start end host port id [replicas...]: redis-cli prints one per line
    if i + 3 < len(lines) and lines[i].isdigit() and lines[i + 1].isdigit():
        slots.append((int(lines[i]), int(lines[i + 1]), lines[i + 3]))
        i += 5
    else:
        i += 1
picked = {}
for q in ["prompts", "embeddings", "images", "audio", "batch", "chat", "eval", "rerank"]:
    s = int(cli("cluster", "keyslot", f"corral:{{{q}}}"))
    owner = next(p for a, b, p in slots if a <= s <= b)
    picked.setdefault(owner, q)
print(" ".join(sorted(picked.values())[:3]))
PY
)
[ "$(echo "$queues" | wc -w)" -eq 3 ] || { echo "demo: no three queues on three shards: $queues" >&2; exit 1; }

"$PY" "$here/../tests/aistub.py" --port-file "$tmp/stub.port" 2>"$tmp/stub.log" &
pids="$pids $!"
wait_for 100 test -s "$tmp/stub.port"
stub="http://127.0.0.1:$(cat "$tmp/stub.port")"
stubctl() { "$PY" -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], data=sys.argv[2].encode() if len(sys.argv) > 2 else None).read().decode())' "$@"; }

{
    printf '[redis]\ncluster = %s\n\n' "$seeds"
    printf '[pool]\nmin = 3\nmax = 6\nconcurrency = 2\ndrain_timeout = 10s\n\n'
    printf '[scale]\ntick = 500ms\n\n'
    for q in $queues; do
        printf '[queue %s]\nhandler = http\nservice = stub\nmax_attempts = 5\nbackoff = 200ms..1s\ntimeout = 5s\n\n' "$q"
    done
    printf '[service stub]\nurl = %s/v1/chat/completions\nmax_inflight = 8\n' "$stub"
    printf 'breaker_min_calls = 6\nbreaker_failure_rate = 50%%\nbreaker_open_for = 2s\n'
    printf 'breaker_open_max = 8s\nbreaker_half_open_calls = 2\n'
} > "$tmp/corral.conf"
export CORRAL_CONFIG="$tmp/corral.conf"
ctl() { "$B/corralctl" "$@"; }

say "corrald on the Cluster: queues $queues on three shards, one service for all three"
"$B/corrald" > "$tmp/corrald.log" 2>&1 &
cpid=$!
pids="$pids $cpid"
idle() {
    ctl status --json | "$PY" -c 'import json, sys; s = json.load(sys.stdin); sys.exit(0 if all(q["depth"] == 0 and q["inflight"] == 0 and q.get("scheduled", 0) == 0 for q in s["queues"]) else 1)'
}

say "the service fails (HTTP 503): one breaker for the three queues, on the service's own slot"
stubctl "$stub/_control" '{"default": {"status": 503}}' >/dev/null
before=$(stubctl "$stub/_stats" | sed 's/.*"requests": \([0-9]*\).*/\1/')
for q in $queues; do
    i=0
    while [ $i -lt 10 ]; do
        ctl enqueue "$q" "{\"messages\": [{\"role\": \"user\", \"content\": \"fail $q $i\"}]}" >/dev/null
        i=$((i + 1))
    done
done
open() { ctl breaker stub --json | grep -q '"state": "open"'; }
wait_for 100 open
ctl breaker
after=$(stubctl "$stub/_stats" | sed 's/.*"requests": \([0-9]*\).*/\1/')
echo "  the service got $((after - before)) calls for 30 jobs on three shards: at most min_calls (6)"
echo "  and the calls in flight, fleet-wide; the jobs wait, none is dead"

say "the service recovers: the breaker closes and every job completes, on every shard"
stubctl "$stub/_control" '{"default": {}}' >/dev/null
wait_for 300 idle
ctl status

say "stopping corrald on the Cluster"
kill "$cpid"
wait "$cpid" 2>/dev/null || true
