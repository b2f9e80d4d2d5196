#!/bin/sh
# make demo: a private redis-server on a unix socket in a temp dir, corrald
# keeping house, a handful of jobs of every priority (one delayed), each
# job's outcome, a burst that grows and shrinks the pool, then an AI service
# (the tests' stand-in, on loopback) that fails: the fleet-wide breaker
# opens, nothing is lost, and work resumes after it recovers. Then: tenants
# (a noisy tenant's 200 jobs do not hold back a small tenant's 5), a
# streamed answer followed live with its usage and cost against a token
# budget, a running call cancelled, a job ended by its deadline; an
# error reply's code word (nothing written), a service that quotes the API
# key back (stored and logged as [REDACTED], found nowhere), the Python
# client, and corral-web (/healthz, /metrics, /api/status, the dashboard).
set -eu
B=${CORRAL_BUILD:-build}
tmp=$(mktemp -d /tmp/corral-demo.XXXXXX)
pids=""
# Every background process is stopped, then waited for by its pid: a bare
# `wait` would also wait for any job not killed yet (the AI stand-in never
# exits by itself), and the demo would never return.
cleanup() {
    [ -n "${stub_pid:-}" ] && pids="$pids $stub_pid"
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    [ -f "$tmp/redis.pid" ] && kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
    rm -rf "$tmp"
}
. "$(dirname "$0")/demo_lib.sh"
demo_traps

say "starting a private redis-server on $tmp/redis.sock"
redis-server --port 0 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 --dir "$tmp" \
    --save '' --appendonly no --daemonize yes --pidfile "$tmp/redis.pid" \
    --logfile "$tmp/redis.log"
i=0
until redis-cli -s "$tmp/redis.sock" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "redis-server did not start" >&2; exit 1; }
    sleep 0.05
done

here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
"$PY" "$here/../tests/aistub.py" --port-file "$tmp/stub.port" 2>"$tmp/stub.log" &
stub_pid=$!
i=0
until [ -s "$tmp/stub.port" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "the AI stand-in did not start" >&2; exit 1; }
    sleep 0.05
done
stub="http://127.0.0.1:$(cat "$tmp/stub.port")"
stubctl() { "$PY" -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], data=sys.argv[2].encode() if len(sys.argv) > 2 else None).read().decode())' "$@"; }

cat > "$tmp/corral.conf" <<CONF
[redis]
url = unix://$tmp/redis.sock

[pool]
min = 1
max = 6
concurrency = 2
drain_timeout = 10s
queues = demo, ai

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

[queue ai]
; calls an AI service (here the tests' stand-in, answering on loopback)
handler = http
service = stub
max_attempts = 3
backoff = 200ms..1s
timeout = 5s

[service stub]
url = $stub/v1/chat/completions
max_inflight = 8
breaker_min_calls = 6
breaker_failure_rate = 50%
breaker_open_for = 2s
breaker_open_max = 8s
breaker_half_open_calls = 2
; a fleet-wide token budget, and prices (a million input, output tokens)
tokens = 100000/1m
price_input = 2.5
price_output = 10
; a demo key (a temp file): sent as "Authorization: Bearer ...", never shown
api_key_file = $tmp/ai.key
CONF
# The demo's API key, made up for this run; it is read from its file only.
"$PY" -c 'import secrets; print("sk-demo-" + secrets.token_urlsafe(24))' > "$tmp/ai.key"
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

say "bad input: an error reply begins with a code word, and nothing is written"
seq=$(rc get 'corral:{demo}:seq')
echo "  \$ redis-cli FCALL corral_enqueue 1 demo '{nope'"
rc FCALL corral_enqueue 1 demo '{nope' | sed '/^$/d; s/^/  /'
echo "  \$ corralctl enqueue demo '{nope'    (prints the text after the word, for people)"
out=$(ctl enqueue demo '{nope' 2>&1) && st=0 || st=$?
echo "  $out  (exit status $st)"
ctl enqueue nosuchqueue '{}' 2>&1 | sed 's/^/  /'
ctl enqueue demo '{}' --priority urgent 2>&1 | sed 's/^/  /'
echo "  nothing was written: the job id counter (corral:{demo}:seq) is still $(rc get 'corral:{demo}:seq') (was $seq)"

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

say "corralctl status: queues, hosts and breakers, from Redis alone"
ctl status

say "the AI service starts failing (HTTP 503): the fleet-wide breaker opens"
stubctl "$stub/_control" '{"default": {"status": 503}}' >/dev/null
i=0
while [ $i -lt 30 ]; do
    echo "FCALL corral_enqueue 1 ai '{\"messages\": [{\"role\": \"user\", \"content\": \"q$i\"}]}'"
    i=$((i + 1))
done | rc > /dev/null
t=0
until ctl breaker stub --json | grep -q '"state": "open"'; do
    t=$((t + 1)); [ $t -gt 100 ] && break
    sleep 0.1
done
ctl breaker
calls=$(stubctl "$stub/_stats" | sed 's/.*"requests": \([0-9]*\).*/\1/')
echo "  the service got $calls calls for 30 jobs; none is dead: they wait in the queue"
ctl status | sed -n '1,4p'

say "the service recovers: half-open probes succeed, the breaker closes, every job completes"
stubctl "$stub/_control" '{"default": {}}' >/dev/null
t=0
aistat() { rc FCALL_RO corral_stats 1 ai 60 lean | sed "s/.*\"$1\":\([0-9]*\).*/\1/"; }
until [ "$(aistat depth)$(aistat inflight)$(aistat scheduled)" = 000 ]; do
    t=$((t + 1)); [ $t -gt 300 ] && break
    sleep 0.1
done
ctl breaker
rc FCALL_RO corral_stats 1 ai 60 lean

say "tenants: a noisy tenant's 200 jobs, then a small tenant's 5; each gets its turn"
i=0
while [ $i -lt 200 ]; do echo "{\"n\": $i}"; i=$((i + 1)); done |
    ctl enqueue demo --many --tenant noisy > "$tmp/noisy.ids"
small=$(printf '{"n": %s}\n' 1 2 3 4 5 | ctl enqueue demo --many --tenant small | paste -sd' ')
echo "  200 jobs of tenant noisy enqueued first (corralctl enqueue demo --many --tenant noisy),"
echo "  then 5 of tenant small (jobs $small)"
ctl status --tenants demo | sed 's/^/  /'
for id in $small; do ctl wait demo "$id" --timeout 20s >/dev/null; done
# The finish order so far, from the job records (finished_ms, then id).
"$PY" - "$tmp" $small <<'PY'
import json, sys, redis
tmp, small = sys.argv[1], sys.argv[2:]
noisy = open(tmp + "/noisy.ids").read().split()
r = redis.Redis(unix_socket_path=tmp + "/redis.sock")
p = r.pipeline(transaction=False)
for i in noisy + small:
    p.fcall_ro("corral_job", 1, "demo", i)
jobs = [json.loads(j) for j in p.execute()]
done = sorted((j for j in jobs if j["state"] == "done"), key=lambda j: (j["finished_ms"], int(j["id"])))
order = ["small" if j["id"] in small else "noisy" for j in done]
last = max(n for n, t in enumerate(order) if t == "small")
print("  finish order:", " ".join(order[:last + 1]), "...")
print(f"  tenant small: all 5 done, finished {', '.join(str(n + 1) for n, t in enumerate(order) if t == 'small')}"
      f" of {len(order)}; tenant noisy: {order.count('noisy')} of 200 done, the rest still waiting")
PY

echo "  \$ corralctl cancel demo --tenant noisy    (every job of one tenant, in calls of 1,000 at most)"
echo "  $(ctl cancel demo --tenant noisy)"
echo "  tenant noisy's jobs now: $("$PY" - "$tmp" <<'PY'
import json, sys, redis
r = redis.Redis(unix_socket_path=sys.argv[1] + "/redis.sock")
ids = open(sys.argv[1] + "/noisy.ids").read().split()
p = r.pipeline(transaction=False)
for i in ids:
    p.fcall_ro("corral_job", 1, "demo", i)
states = {}
for j in p.execute():
    s = json.loads(j)["state"]
    states[s] = states.get(s, 0) + 1
print(", ".join(f"{n} {s}" for s, n in sorted(states.items())))
PY
)"

say "a streamed answer, followed live (corralctl wait ai ID --follow), and what it cost"
id=$(ctl enqueue ai '{"model": "demo-model", "stream": true, "max_tokens": 16,
    "messages": [{"role": "user", "content": "count to sixteen"}],
    "stub": {"sse": "openai", "chunks": 8, "chunk_ms": 200, "input_tokens": 12}}')
echo "  \$ corralctl wait ai $id --follow    (the service streams 8 pieces, 0.2 s apart)"
printf '  '
ctl wait ai "$id" --follow --timeout 20s
echo "  its usage, priced at the demo's price_input 2.5 and price_output 10 a million tokens:"
ctl job ai "$id" --json | "$PY" -c 'import json, sys; print("   ", json.dumps(json.load(sys.stdin)["usage"]))'
echo "  the TOKENS table of corralctl status (the service's budget: tokens = 100000/1m):"
ctl status | sed -n '/^TOKENS/,/^$/p' | sed '/^$/d; s/^/  /'

say "cancel: a long streamed answer stopped while it runs (corralctl cancel ai ID)"
id=$(ctl enqueue ai '{"max_tokens": 300, "stub": {"sse": "openai", "chunks": 150, "chunk_ms": 100, "key": "long"}}' --timeout 60s)
# Until a few pieces have streamed: the call is running.
t=0
until [ "$(rc XLEN "corral:{ai}:stream:$id")" -ge 3 ]; do
    t=$((t + 1)); [ $t -gt 100 ] && break
    sleep 0.05
done
echo "  job $id is $(ctl job ai "$id" --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["state"])'), $(rc XLEN "corral:{ai}:stream:$id") pieces of its 15 s answer streamed; \$ corralctl cancel ai $id"
t0=$(date +%s%N)
ctl cancel ai "$id" | sed 's/^/  /'
printf '  corralctl wait ai %s -> ' "$id"
ctl wait ai "$id" --timeout 5s 2>&1 || true
stubctl "$stub/_streams" | "$PY" -c 'import json, sys
s = next(s for s in json.load(sys.stdin)["streams"] if s["key"] == "long")
print("  the service saw the worker close the connection %.0f ms after corralctl cancel started,"
      % ((s["ended_wall"] - int(sys.argv[1]) / 1e9) * 1000))
print("  after %d of its %d events (closed by the client: %s)"
      % (s["events_sent"], s["events_total"], str(s["closed_by_client"]).lower()))' "$t0"
echo "  the last entry of the job's stream: $(rc XREVRANGE "corral:{ai}:stream:$id" + - COUNT 1 | sed 1d | paste -d= - - | paste -sd' ')"

say "a deadline: a job that must end within 1s, on a service that answers in 3s"
id=$(ctl enqueue ai '{"stub": {"delay_ms": 3000}}' --deadline 1s)
printf '  corralctl enqueue ai ... --deadline 1s -> job %s; corralctl wait -> ' "$id"
ctl wait ai "$id" --timeout 10s 2>&1 || true
ctl job ai "$id" --json | "$PY" -c 'import json, sys; j = json.load(sys.stdin)
print("  the job ended %s, %s, %d ms after it was enqueued: the worker stopped the call"
      % (j["state"], j["error"], j["finished_ms"] - j["created_ms"]))'

say "the Python client (clients/python): enqueue and wait, three lines"
code=$(cat <<PYCODE
from corral_client import Client
c = Client("unix://$tmp/redis.sock"); i = c.enqueue("demo", {"prompt": "from Python"}, priority="high")
j = c.wait("demo", i, timeout=10); print("job", i, "->", j.state + ":", j.result, "in", j.timings["run_ms"], "ms")
PYCODE
)
echo "  \$ PYTHONPATH=clients/python /usr/bin/python3 -c '"
printf '%s\n' "$code" | sed 's/^/    /'
echo "  '"
printf '  -> '
PYTHONPATH="$here/../clients/python" "$PY" -c "$code"

say "corral-web: /healthz, /metrics and /api/status over HTTP, and the dashboard"
wport=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$B/corral-web" -c "$tmp/corral.conf" --listen "127.0.0.1:$wport" 2>"$tmp/web.log" &
web_pid=$!
pids="$pids $web_pid"
web="http://127.0.0.1:$wport"
# get URL [N]: the body, or its first N lines.
get() { "$PY" -c 'import sys, urllib.request as u; t = u.urlopen(sys.argv[1], timeout=5).read().decode(); print("\n".join(t.splitlines()[:int(sys.argv[2])]) if len(sys.argv) > 2 else t)' "$@"; }
i=0
until get "$web/healthz" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "corral-web did not start" >&2; cat "$tmp/web.log" >&2; exit 1; }
    sleep 0.05
done
echo "  GET /healthz: $(get "$web/healthz")"
echo "  GET /metrics, its first lines:"
get "$web/metrics" 6 | cut -c1-110 | sed 's/^/    /'
echo "  GET /api/status, summed up:"
get "$web/api/status" | "$PY" -c 'import json, sys; s = json.load(sys.stdin)
for q in s["queues"]: print("    queue %(name)s: depth %(depth)s, running %(inflight)s, dead %(dead)s, p95 %(proc_ms_p95)s ms" % q)
for h in s["hosts"]: print("    host %(host)s: %(workers)s workers, %(busy)s of %(slots)s slots busy, desired %(desired)s" % h)
for b in s["breakers"]: print("    breaker %(service)s: %(state)s" % b)'
echo "  the dashboard: $web/ (read-only: no [web] token_file; it stops with the demo)"

say "secrets never leak: the service answers 401 quoting the Authorization header it got"
id=$(ctl enqueue ai '{"stub": {"status": 401, "echo_secrets": "raw"}}' --max-attempts 1)
ctl wait ai "$id" --timeout 10s >/dev/null 2>&1 || true
echo "  job $id's error, from corralctl job ai $id --json:"
ctl job ai "$id" --json > "$tmp/job.out"
"$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print("   ", j["state"] + ":", j["error"])' "$tmp/job.out"
# What corralctl and corral-web show, every log, every key and value in Redis.
ctl status --json > "$tmp/status.out"
ctl breaker stub --json > "$tmp/breaker.out"
ctl dead ai list > "$tmp/dead.out"
get "$web/api/jobs/ai/$id" > "$tmp/web-job.out"
get "$web/api/queues/ai/dead" > "$tmp/web-dead.out"
get "$web/api/status" > "$tmp/web-status.out"
"$PY" - "$tmp" <<'PY'
import glob, sys, redis
tmp = sys.argv[1]
key = open(tmp + "/ai.key").readline().strip().lower().encode()
files = sorted(glob.glob(tmp + "/*.log") + glob.glob(tmp + "/*.out"))
places = [f for f in files if key in open(f, "rb").read().lower()]
r = redis.Redis(unix_socket_path=tmp + "/redis.sock")
read = {b"string": r.get, b"hash": r.hgetall, b"list": lambda k: r.lrange(k, 0, -1),
        b"set": r.smembers, b"zset": lambda k: r.zrange(k, 0, -1, withscores=True),
        b"stream": r.xrange}
keys = list(r.scan_iter(count=1000))
places += [k for k in keys
           if key in (k + repr(read.get(r.type(k), lambda k: b"")(k)).encode()).lower()]
print(f"  key found: {len(places)} places ({len(files)} logs and outputs of corralctl and"
      f" corral-web, {len(keys)} Redis keys searched)")
for p in places:
    print("    found in", p)
PY

say "stopping corrald: it drains its workers"
kill "$cpid"
wait "$cpid" 2>/dev/null || true

say "corrald's decisions (from its log)"
grep -E 'scaling|stopping an idle|ready|stopped|breaker' "$tmp/corrald.log" | cut -c1-160
