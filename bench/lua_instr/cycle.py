"""The queue's cycle against a Function library built from a queue/lua
directory, for bench/lua_instr/run.sh: enqueue, reserve and ack of JOBS jobs
in rounds of 32 (enqueue 32 pipelined, then 32 reserves of 1 or one of 32,
then 32 acks of 1 or one of 32), on a queue with or without a service.
usage: cycle.py SOCK LUA_DIR SVC(0|1) BATCH(0|1) JOBS VALGRIND_PID
Counting (callgrind's instrumentation) is switched on for the measured run
only, after a warm-up run of 64 jobs. With LUA_INSTR_TENANTS=1 in the
environment each job of a round is a tenant's of its own (the enqueue
option tenant, t0..t31), as bench_tenants.py's full cycle. With
LUA_INSTR_ACK_RESERVE=1 the reserves and acks are corral_ack_reserve calls
(a worker's one round trip per job: each call acks the jobs of the round
before and takes the next), and the last round's jobs are acked at the end."""
import os
import subprocess
import sys

import redis

PAY = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
MAX_INFLIGHT = 64  # as a worker passes its max_inflight (make bench: 10 with 1-job rounds)
TENANTS = os.environ.get("LUA_INSTR_TENANTS") == "1"
ACK_RESERVE = os.environ.get("LUA_INSTR_ACK_RESERVE") == "1"


def library(d):
    with open(os.path.join(d, "ORDER")) as f:
        order = [x.strip() for x in f if x.strip() and not x.startswith("#")]
    with open(os.path.join(d, "VERSION")) as f:
        text = "#!lua name=corral\nlocal LIB_VERSION = %s\n" % f.read().strip()
    for name in order:
        with open(os.path.join(d, name)) as f:
            text += f.read()
    return text


def run(r, text, jobs, svc, batch):
    r.flushall()
    r.function_load(text, replace=True)
    if svc:
        r.fcall("corral_declare_service", 1, "ai", "{}")
        r.fcall("corral_declare", 1, "q", '{"service":"ai"}')
    else:
        r.fcall("corral_declare", 1, "q", "{}")
    held = []
    for _ in range(jobs // 32):
        p = r.pipeline(transaction=False)
        for i in range(32):
            p.fcall("corral_enqueue", 1, "q", PAY, *(['{"tenant":"t%d"}' % i] if TENANTS else []))
        p.execute()
        if ACK_RESERVE:
            held = ack_reserve(r, held, batch)
            continue
        p = r.pipeline(transaction=False)
        for _ in range(1 if batch else 32):
            p.fcall("corral_reserve", 1, "q", "h:1", 32 if batch else 1, MAX_INFLIGHT)
        jl = [j for x in p.execute() for j in x if isinstance(j, list)]
        assert len(jl) == 32, jl
        p = r.pipeline(transaction=False)
        if batch:
            p.fcall("corral_ack", 1, "q", "h:1", *[v for j in jl for v in (j[0], j[1], '{"ok":true}')])
        else:
            for j in jl:
                p.fcall("corral_ack", 1, "q", "h:1", j[0], j[1], '{"ok":true}')
        for out in p.execute():
            assert all(x == "done" for x in out), out
    if held:
        out = r.fcall("corral_ack", 1, "q", "h:1", *[v for j in held for v in (j[0], j[1], "{}")])
        assert all(x == "done" for x in out), out


def ack_reserve(r, held, batch):
    """One round of corral_ack_reserve: acks held (the round before's jobs),
    takes 32 -> the jobs taken."""
    def triples(js):
        return [v for j in js for v in (j[0], j[1], '{"ok":true}')]
    p = r.pipeline(transaction=False)
    if batch:
        p.fcall("corral_ack_reserve", 1, "q", "h:1", 32, MAX_INFLIGHT, *triples(held))
    else:
        for i in range(32):
            p.fcall("corral_ack_reserve", 1, "q", "h:1", 1, MAX_INFLIGHT, *triples(held[i:i + 1]))
    jl = []
    for acks, got in p.execute():
        assert all(x == "done" for x in acks), acks
        jl += [j for j in got if isinstance(j, list)]
    assert len(jl) == 32, jl
    return jl


def main():
    sock, d, svc, batch, jobs, vpid = sys.argv[1:7]
    r = redis.Redis(unix_socket_path=sock, decode_responses=True)
    text = library(d)
    run(r, text, 64, int(svc), int(batch))
    subprocess.run(["callgrind_control", "-i", "on", vpid], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    run(r, text, int(jobs), int(svc), int(batch))
    subprocess.run(["callgrind_control", "-i", "off", vpid], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)


if __name__ == "__main__":
    main()
