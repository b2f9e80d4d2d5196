#!/usr/bin/env python3
"""What the service gate costs (issue 20; docs/design.md, "Redis Cluster
slots"): the same queues with a service, the same corrald and jobs, on one
redis-server and on a Redis Cluster of 3 primaries and 3 replicas, in one
run (bench_cluster.py's drain). The queues' handler is http, their service
the AI stand-in (tests/aistub.py) answering at once, with a breaker and a
rate far above what the run reaches, so that every limit is looked at and
none holds anything back. On one Redis the reserve and the outcomes update
the service in the same call; on the Cluster the worker asks the service's
gate for permits before each reserve and reports its calls once per loop
turn (worker/gate.c). Figures per job, over the drain, summed over the
primaries (replicas apart): client round trips (every command a client
sent: FCALLs, BLPOPs, ...), commands Redis ran (those inside the
functions too, INFO commandstats) and Redis CPU (INFO cpu, user + sys).

usage: /usr/bin/python3 bench/bench_cluster_gate.py [JOBS_PER_QUEUE]   (default 2000)
       CORRAL_BUILD names the build directory (default build/)."""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import aistub  # noqa: E402
from bench_cluster import WORKERS, drain, require_built  # noqa: E402
from clusterfixtures import Cluster  # noqa: E402
from hafixtures import Node  # noqa: E402

QUEUES, SLOTS = 2, 4


def counters(node):
    """All commands run (those inside functions too), the FCALLs, and the
    round trips: the commands only a client sends (FCALL, FCALL_RO, BLPOP,
    PING; corrald's heartbeat, a few plain commands a tick, is left out)."""
    c = node.client()
    try:
        stats = c.info("commandstats")
        total = sum(v["calls"] for v in stats.values())
        client = sum(stats.get(f"cmdstat_{k}", {}).get("calls", 0)
                     for k in ("fcall", "fcall_ro", "blpop", "ping"))
        fcall = sum(stats.get(f"cmdstat_{k}", {}).get("calls", 0) for k in ("fcall", "fcall_ro"))
        return {"all": total, "fcall": fcall, "client": client}
    finally:
        c.close()


def write_conf(path, redis_lines, queues, url, key):
    text = (f"[redis]\n{redis_lines}\n\n[pool]\nmin = {WORKERS}\nmax = {WORKERS}\n"
            f"concurrency = {SLOTS}\n\n[scale]\ntick = 250ms\ncpu_ceiling = 100%\n\n")
    for q in queues:
        text += f"[queue {q}]\nhandler = http\nservice = ai\ntimeout = 10s\n\n"
    text += (f"[service ai]\nurl = {url}\napi_key_file = {key}\nrate = 1000000/1m\n"
             "breaker_min_calls = 1000000\nmax_inflight = 1000\n")
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    require_built("bench_cluster_gate")
    root = tempfile.mkdtemp(prefix="corral-bench-gate-")
    cl, single, stub = Cluster(root), Node("single", root), aistub.Server().start()
    key = os.path.join(root, "ai.key")
    with open(key, "w") as f:
        f.write("sk-bench-gate\n")
    try:
        cl.start()
        single.start()
        owners = cl.slot_owners(cl.primaries()[0])
        by_port = {n.port: n for n in cl.primaries()}
        svc_port = owners[cl.keyslot("corral:{svc:ai}")]
        queues, owner = [], {}
        for i in range(1000):  # two queues on two shards, neither the service's
            q = f"gate{i}"
            p = owners[cl.keyslot(f"corral:{{{q}}}")]
            if p != svc_port and p not in [owner[x].port for x in queues]:
                queues.append(q)
                owner[q] = by_port[p]
            if len(queues) == QUEUES:
                break
        total = jobs * len(queues)
        print(f"bench_cluster_gate: {len(queues)} queues x {jobs} jobs (handler http, service "
              f"ai: the stand-in, at once), one corrald, {WORKERS} workers x {SLOTS} slots; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        rows = []
        for name, lines, nodes, own in (
                ("one Redis", f"url = redis://127.0.0.1:{single.port}/0", [single],
                 {q: single for q in queues}),
                ("3-shard cluster", "cluster = " + cl.seeds.replace(",", ", "), cl.primaries(),
                 owner)):
            d = os.path.join(root, name.split()[0])
            os.makedirs(d)
            conf = write_conf(os.path.join(d, "c.conf"), lines, queues, stub.url, key)
            t, cpu, cnt = drain(conf, queues, own, jobs, d, nodes, counters)
            per = {k: sum(c[k] for c in cnt.values()) / total for k in ("all", "fcall", "client")}
            us = sum(cpu.values()) / total * 1e6
            rows.append((name, total / t, per, us))
            print(f"{name:16s} {total / t:7.0f} jobs/s  round trips {per['client']:5.2f}/job "
                  f"(FCALL {per['fcall']:4.2f})  commands run {per['all']:6.2f}/job  "
                  f"Redis CPU {us:6.1f} us/job")
            if name != "one Redis":
                svc = next(n for n in cl.primaries() if n.port == svc_port)
                print(f"  of which the service's node: round trips "
                      f"{cnt[svc.name]['client'] / total:5.2f}/job, commands run "
                      f"{cnt[svc.name]['all'] / total:6.2f}/job, "
                      f"CPU {cpu[svc.name] / total * 1e6:6.1f} us/job")
        (_, _, p1, u1), (_, _, p2, u2) = rows
        print(f"the gate: {p2['client'] - p1['client']:+.2f} round trips/job, "
              f"{p2['all'] - p1['all']:+.2f} commands/job, {u2 - u1:+.1f} us Redis CPU/job")
        return 0
    finally:
        stub.stop()
        cl.stop()
        single.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
