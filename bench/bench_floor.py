#!/usr/bin/env python3
"""make bench, the floor part: what the documented layout costs Redis per
job before any of corral's own code runs, beside what corral costs, in the
same run on the same server.

bench/floor.lua makes per job the same redis.call()s as corral_enqueue,
corral_reserve and corral_ack (one job per call, a queue without a
service), with the same keys, record fields and reply shapes, and nothing
else. The full cycle of JOBS jobs (enqueue, reserve, ack; 100 jobs a
round, each call its own FCALL, pipelined) runs with corral's library and
with the floor's, without tenants and with each job a tenant of 10,000,
the runs taken in turn ROUNDS times, the least of each kept. The figure is
Redis's time inside FCALL per job (INFO commandstats, as bench_queue.c's
and bench_tenants.py's), and the commands the functions ran per job.

It answers two questions of issues 21 and 14 (docs/benchmarks.md, "The
layout's floor"): how far corral's Lua is above the calls it must make, and
how much of the full cycle's cost with tenants the tenants' calls alone
make.

usage: bench_floor.py BUILD_DIR   (sh bench/run.sh floor)
BENCH_FLOOR_JOBS (default 20000) and BENCH_FLOOR_ROUNDS (default 3)."""
import json
import os
import shutil
import sys
import tempfile

import benchredis

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
JOBS = int(os.environ.get("BENCH_FLOOR_JOBS", 20000))
ROUNDS = int(os.environ.get("BENCH_FLOOR_ROUNDS", 3))
TENANTS = 10000
LIB = os.path.join(build, "gen", "corral.lua")
FLOOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor.lua")
Q = "bench"
K = "corral:{bench}"  # the key corral's functions derive from Q
PAYLOAD = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
RESULT = '{"ok":true}'

tmp = tempfile.mkdtemp(prefix="corral-bench-floor-")
sock = os.path.join(tmp, "redis.sock")
server = None


def start_redis():
    global server
    server, r = benchredis.start(sock, tmp)
    return r


def cleanup():
    if server is not None and server.poll() is None:
        server.terminate()
        server.wait(timeout=20)
    shutil.rmtree(tmp, ignore_errors=True)


def measured(r, rounds_of):
    """Runs rounds_of(at, pipeline factory) over JOBS jobs, 100 a round ->
    (Redis us inside FCALL, commands the functions ran) per job."""
    r.config_resetstat()
    for at in range(0, JOBS, 100):
        rounds_of(at)
    stats = r.info("commandstats")
    inner = sum(v.get("calls", 0) for k, v in stats.items()
                if k not in ("cmdstat_fcall", "cmdstat_fcall_ro", "cmdstat_config",
                             "cmdstat_info"))
    return stats.get("cmdstat_fcall", {}).get("usec", 0) / JOBS, inner / JOBS


def tenant_of(i):
    return f"t{i % TENANTS}"


def cycle_run(r, enqueue, reserve, ack, who):
    """The full cycle of JOBS jobs, 100 a round, each call its own FCALL
    (pipelined): enqueue(pipe, i) for each job, reserve(pipe) 100 times,
    ack(pipe, job) for each job reserved -> measured()'s figures."""
    def rounds(at):
        p = r.pipeline(transaction=False)
        for i in range(at, at + 100):
            enqueue(p, i)
        p.execute()
        p = r.pipeline(transaction=False)
        for _ in range(100):
            reserve(p)
        jobs = [j for js in p.execute() for j in js]
        if len(jobs) != 100:
            raise SystemExit(f"bench: {who} reserved {len(jobs)} jobs of a round of 100")
        p = r.pipeline(transaction=False)
        for j in jobs:
            ack(p, j)
        if p.execute() != [["done"]] * 100:
            raise SystemExit(f"bench: {who} did not ack every job of the round")
    return measured(r, rounds)


def corral_run(r, tenants):
    r.flushall()
    r.fcall("corral_declare", 1, Q, "{}")
    opts = (lambda i: [json.dumps({"tenant": tenant_of(i)})]) if tenants else (lambda i: [])
    return cycle_run(
        r, lambda p, i: p.fcall("corral_enqueue", 1, Q, PAYLOAD, *opts(i)),
        lambda p: p.fcall("corral_reserve", 1, Q, "bench:1", 1, 10),
        lambda p, j: p.fcall("corral_ack", 1, Q, "bench:1", j[0], j[1], RESULT), "corral")


def floor_run(r, tenants):
    r.flushall()
    opts = (lambda i: [tenant_of(i)]) if tenants else (lambda i: [])
    reserve = "floor_reserve_tenant" if tenants else "floor_reserve"
    return cycle_run(
        r, lambda p, i: p.fcall("floor_enqueue", 1, K, PAYLOAD, *opts(i)),
        lambda p: p.fcall(reserve, 1, K, "bench:1"),
        lambda p, j: p.fcall("floor_ack", 1, K, "bench:1", j[0], j[1], RESULT), "the floor")


def lean_run(r):
    """The floor without the calls a changed contract could drop (floor.lua)."""
    r.flushall()
    return cycle_run(
        r, lambda p, i: p.fcall("floor_lean_enqueue", 1, K, PAYLOAD),
        lambda p: p.fcall("floor_lean_reserve", 1, K, "bench:1"),
        lambda p, j: p.fcall("floor_lean_ack", 1, K, "bench:1", j[0], j[1], RESULT), "the lean floor")


def main():
    if not os.path.exists(LIB):
        raise SystemExit(f"bench: {LIB} is not built (make)")
    try:
        r = start_redis()
        with open(LIB) as f:
            r.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())
        with open(FLOOR) as f:
            r.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())
        runs = {k: [] for k in ("corral", "floor", "corral_t", "floor_t", "lean")}
        for _ in range(ROUNDS):  # in turn, so that a spell of load falls on all alike
            runs["corral"].append(corral_run(r, False))
            runs["floor"].append(floor_run(r, False))
            runs["corral_t"].append(corral_run(r, True))
            runs["floor_t"].append(floor_run(r, True))
            runs["lean"].append(lean_run(r))
        best = {k: min(v) for k, v in runs.items()}
        print(f"floor: the full cycle, Redis us per job inside FCALL (INFO commandstats), "
              f"{JOBS} jobs one per call, best of {ROUNDS} runs taken in turn")
        print(f"  {'':<52} {'us/job':>8} {'commands/job':>13}")
        rows = [("corral, no tenant option", "corral"),
                ("the same calls without corral's logic (floor.lua)", "floor"),
                (f"corral, each job a tenant of {TENANTS:,}", "corral_t"),
                ("the same calls without corral's logic, tenants", "floor_t"),
                ("the floor less K:ctr, wake marker, closing EXISTS", "lean")]
        for label, k in rows:
            print(f"  {label:<52} {best[k][0]:8.2f} {best[k][1]:13.2f}")
        print(f"  corral / its calls' floor: {best['corral'][0] / best['floor'][0]:.2f} without "
              f"tenants, {best['corral_t'][0] / best['floor_t'][0]:.2f} with")
        print(f"  with tenants / without: corral {best['corral_t'][0] / best['corral'][0]:.2f}, "
              f"the floor {best['floor_t'][0] / best['floor'][0]:.2f} "
              f"(issue 14's goal <= 1.10)")
        print(f"  the floor without tenants: {best['floor'][0]:.1f} us/job; without the calls a "
              f"changed contract could drop: {best['lean'][0]:.1f} "
              f"(issue 21's goal for corral: <= 40 us one call at a time)")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
