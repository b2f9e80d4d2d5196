#!/bin/sh
# Instructions redis-server executes per job of the queue's cycle, counted
# by valgrind's callgrind (the same count whatever the machine's load, where
# a timing on a shared VM moves by 10 % or more between runs): for each
# queue/lua directory given, one cycle of JOBS jobs one call at a time and
# batched (32), without and with a service. The count includes reading the
# requests and writing the replies, and the FUNCTION LOAD of each run. The
# server runs with --hz 1: its cron's share grows with the wall time, which
# valgrind and the machine's load stretch (with the default 10 the same
# library's count moved by 3 % between runs; with 1, by 0.2 %).
#   sh bench/lua_instr/run.sh [-n JOBS] LUA_DIR...
# e.g. the library of a commit against the working tree's:
#   mkdir /tmp/old && git archive HEAD~3 queue/lua | tar -x -C /tmp/old
#   sh bench/lua_instr/run.sh /tmp/old/queue/lua queue/lua
# LUA_INSTR_ACK_RESERVE=1 makes the reserves and acks corral_ack_reserve
# calls (cycle.py). LUA_INSTR_TENANTS=1 gives each job of a round a tenant of its own
# (cycle.py), for the full cycle with tenants against without.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
jobs=1024
if [ "${1:-}" = -n ]; then jobs=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: run.sh [-n JOBS] LUA_DIR..." >&2; exit 2; }
command -v valgrind >/dev/null 2>&1 || { echo "lua_instr: valgrind is not installed" >&2; exit 1; }
tmp=$(mktemp -d /tmp/corral-lua-instr.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf '%-40s %-8s %-8s %12s\n' library service calls "instr/job"
for mode in "0 0" "0 1" "1 0" "1 1"; do
    svc=${mode% *} batch=${mode#* }
    for d in "$@"; do
        w=$(mktemp -d "$tmp/run.XXXXXX")
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$w/cg.out" \
            redis-server --hz 1 --port 0 --unixsocket "$w/s" --save '' --appendonly no --dir "$w" \
            --logfile "$w/log" >"$w/vg.log" 2>&1 &
        vp=$!
        until redis-cli -s "$w/s" ping 2>/dev/null | grep -q PONG; do sleep 0.2; done
        /usr/bin/python3 "$here/cycle.py" "$w/s" "$d" "$svc" "$batch" "$jobs" "$vp"
        redis-cli -s "$w/s" shutdown nosave >/dev/null 2>&1 || true
        wait "$vp" || true
        tot=$(callgrind_annotate "$w/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
        printf '%-40s %-8s %-8s %12d\n' "$d" "$([ "$svc" = 1 ] && echo yes || echo no)" \
            "$([ "$batch" = 1 ] && echo "32" || echo "1 each")" $((tot / jobs))
    done
done
