#!/usr/bin/env python3
"""Redis Cluster beside one Redis (issue 20; bench/README.md, "Redis Cluster").

The same 8 queues (handler echo, no service), the same corrald (a fixed
pool of 8 workers x 16 slots), the same jobs, in one run: once on one
redis-server, once on a Redis Cluster of 3 primaries and 3 replicas
(tests/integration/clusterfixtures.py, redis-cli --cluster create), the
queues' hash tags chosen so that they spread 3/3/2 over the primaries.
Each queue is filled while paused (corralctl enqueue --many), corrald is
started and its workers come up, then every queue is resumed at once and
the clock runs until no queue has a job waiting or running. Figures: the
drain rate, and the Redis CPU per job (INFO cpu, user + sys, over the
drain) of the one Redis, of each primary and of the replicas.

On a machine with fewer cores than Redis processes the cluster cannot be
faster (its six servers and the workers share the same cores); what it
shows is how the load splits over the shards, which predicts the ceiling
of shards on machines of their own: the busiest shard saturates first.

usage: /usr/bin/python3 bench/bench_cluster.py [JOBS_PER_QUEUE]   (default 5000)
       CORRAL_BUILD names the build directory (default build/)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from clusterfixtures import Cluster  # noqa: E402
from hafixtures import Node  # noqa: E402

QUEUES, WORKERS, SLOTS = 8, 8, 16
BUILD = os.environ.get("CORRAL_BUILD", os.path.join(HERE, "..", "build"))


def cpu_s(node):
    c = node.client()
    try:
        info = c.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        c.close()


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise SystemExit(f"bench_cluster: timed out waiting for {what}")


def write_conf(path, redis_lines, queues):
    text = (f"[redis]\n{redis_lines}\n\n[pool]\nmin = {WORKERS}\nmax = {WORKERS}\n"
            f"concurrency = {SLOTS}\n\n[scale]\ntick = 250ms\ncpu_ceiling = 100%\n\n")
    for q in queues:
        text += f"[queue {q}]\nhandler = echo\n\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def ctl(conf, *args, stdin=None):
    p = subprocess.run([os.path.join(BUILD, "corralctl"), "-c", conf, *args], input=stdin,
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"bench_cluster: corralctl {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def drain(conf, queues, owner, jobs, tmp, nodes, counters=None):
    """Fill, start corrald, resume, wait until empty -> (seconds, {node: cpu s}), and with
    counters (node -> {name: number}) also {node: {name: increase over the drain}}."""
    lines = "".join(json.dumps({"n": i, "text": "x" * 64}) + "\n" for i in range(jobs))
    for q in queues:
        ctl(conf, "enqueue", q, "--many", stdin=lines)  # declares the queue from conf
        ctl(conf, "pause", q)
    log = open(os.path.join(tmp, "corrald.log"), "w")
    d = subprocess.Popen([os.path.join(BUILD, "corrald"), "-c", conf], stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        def workers_up():
            try:
                with open(f"/proc/{d.pid}/task/{d.pid}/children") as f:
                    return len(f.read().split()) >= WORKERS
            except OSError:
                return False
        wait_for(workers_up, 60, "corrald's workers")
        time.sleep(1.0)  # each worker's connections up and idle before the clock starts
        clients = {q: owner[q].client() for q in queues}
        cpu0 = {n.name: cpu_s(n) for n in nodes}
        c0 = {n.name: counters(n) for n in nodes} if counters else None
        t0 = time.monotonic()
        for q in queues:
            clients[q].fcall("corral_resume", 1, q)

        def empty():
            for q in queues:
                s = json.loads(clients[q].fcall_ro("corral_stats", 1, q, 60, "lean"))
                if s["depth"] or s["inflight"] or s["scheduled"]:
                    return False
            return True
        wait_for(empty, 600, "the queues to drain")
        took = time.monotonic() - t0
        cpu = {n.name: cpu_s(n) - cpu0[n.name] for n in nodes}
        for c in clients.values():
            c.close()
        if counters:
            return took, cpu, {n.name: {k: v - c0[n.name].get(k, 0) for k, v in counters(n).items()}
                               for n in nodes}
        return took, cpu
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(timeout=60)
        except subprocess.TimeoutExpired:
            d.kill()
        log.close()


def require_built(who):
    """Exits naming the first program of the run that is not built."""
    for prog in ("corrald", "corralctl", "corral-worker"):
        if not os.path.exists(os.path.join(BUILD, prog)):
            raise SystemExit(f"{who}: {BUILD}/{prog} not built (make)")


def main():
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    require_built("bench_cluster")
    root = tempfile.mkdtemp(prefix="corral-bench-cluster-")
    cl, single = Cluster(root), Node("single", root)
    try:
        cl.start()
        single.start()
        owners = cl.slot_owners(cl.primaries()[0])
        by_port = {n.port: n for n in cl.primaries()}
        per = {p: [] for p in by_port}
        cap = -(-QUEUES // len(by_port))
        for i in range(1000):  # names spread 3/3/2 over the primaries
            q = f"bench{i}"
            p = owners[cl.keyslot(f"corral:{{{q}}}")]
            if len(per[p]) < cap and sum(map(len, per.values())) < QUEUES:
                per[p].append(q)
        queues = sorted(q for qs in per.values() for q in qs)
        owner = {q: by_port[p] for p, qs in per.items() for q in qs}
        total = jobs * len(queues)
        print(f"bench_cluster: {len(queues)} queues x {jobs} jobs (handler echo, no service), "
              f"one corrald, {WORKERS} workers x {SLOTS} slots; {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f}")

        d1 = os.path.join(root, "one")
        os.makedirs(d1)
        conf1 = write_conf(os.path.join(d1, "c.conf"),
                           f"url = redis://127.0.0.1:{single.port}/0", queues)
        t1, cpu1 = drain(conf1, queues, {q: single for q in queues}, jobs, d1, [single])
        us1 = cpu1[single.name] / total * 1e6
        print(f"one Redis:        {total / t1:9.0f} jobs/s ({t1:.2f} s)   "
              f"Redis CPU {us1:6.1f} us/job")

        d2 = os.path.join(root, "cluster")
        os.makedirs(d2)
        conf2 = write_conf(os.path.join(d2, "c.conf"),
                           "cluster = " + cl.seeds.replace(",", ", "), queues)
        nodes = cl.primaries() + cl.replicas()
        t2, cpu2 = drain(conf2, queues, owner, jobs, d2, nodes)
        prim = {n.name: cpu2[n.name] for n in cl.primaries()}
        rep = sum(cpu2[n.name] for n in cl.replicas())
        us2 = sum(prim.values()) / total * 1e6
        print(f"3-shard cluster:  {total / t2:9.0f} jobs/s ({t2:.2f} s)   "
              f"primaries' CPU {us2:6.1f} us/job, replicas' {rep / total * 1e6:.1f} us/job")
        for n in cl.primaries():
            qs = [q for q in queues if owner[q] is n]
            share = prim[n.name] / sum(prim.values()) if sum(prim.values()) else 0
            print(f"  shard {n.port}: {len(qs)} queues ({', '.join(qs)}), "
                  f"{share * 100:4.1f} % of the primaries' CPU, "
                  f"{prim[n.name] / (jobs * len(qs)) * 1e6 if qs else 0:6.1f} us per job of its own")
        # Redis-bound ceilings: one core of Redis serves 1e6 / us1 jobs/s of
        # this cycle; shards on machines of their own saturate when the
        # busiest one does, with the jobs spread over them as here.
        worst = max(prim.values()) / total * 1e6
        print(f"prediction: one Redis core saturates at ~{1e6 / us1:,.0f} jobs/s of this "
              f"cycle; three shards on machines of their own at ~{1e6 / worst:,.0f} jobs/s "
              f"(the busiest shard spends {worst:.1f} us per job of the fleet), "
              f"{us1 / worst:.2f}x one Redis")
        return 0
    finally:
        cl.stop()
        single.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
