"""corrald on a Redis Cluster ([redis] cluster; docs/design.md "Redis
Cluster slots"), against a real cluster of three primaries and three
replicas (clusterfixtures.py): one corrald serves three queues whose hash
tags land on three shards, a worker each (`--queue`), every job done at
its queue's node; its heartbeat and decisions go to their keys' nodes and
`corralctl status` shows them; a worker killed with SIGKILL has its job
reclaimed on its queue's node and finished; a slot that moves under a
running corrald is followed, and so is a primary's failover; the stop is
clean.

The tests of this module share one corrald and run in order."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import redis

from clusterfixtures import *  # noqa: F401,F403
from conftest import Program, binary_path, children, kill_with_children, wait_until

HOST = socket.gethostname()



JOB_SH = """#!/bin/sh
# The payload is the result; a payload with "slow" takes 4 s.
p=$(cat)
case "$p" in *slow*) sleep 4 ;; *) sleep 0.1 ;; esac
printf '%s' "$p"
"""


def write_conf(path, seeds, queues, pool="min = 1\nmax = 6\n"):
    script = path.parent / "job.sh"
    script.write_text(JOB_SH)
    script.chmod(0o755)
    text = (f"[redis]\ncluster = {seeds.replace(',', ', ')}\n\n"
            f"[pool]\n{pool}concurrency = 2\n\n"
            "[scale]\ntick = 250ms\nscale_out_cooldown = 250ms\nscale_in_window = 2s\n"
            "cpu_ceiling = 100%\n\n")
    for q in queues:
        text += f"[queue {q}]\nhandler = exec\ncommand = {script}\n\n"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def conf(redis_cluster, spread, tmp_path_factory):
    return write_conf(tmp_path_factory.mktemp("cld") / "corral.conf", redis_cluster.seeds,
                      sorted(spread))


def ctl(build_dir, conf, *args, timeout=30):
    return subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, *args],
                          capture_output=True, text=True, timeout=timeout)


class Corrald(Program):
    stop_timeout = 30

    @classmethod
    def with_conf(cls, build_dir, tmp_path, text):
        """A corrald started on the config text, written to
        tmp_path/corral.conf (its path kept as .conf), logging to
        tmp_path/corrald.log."""
        conf = tmp_path / "corral.conf"
        conf.write_text(text)
        c = cls([binary_path(build_dir, "corrald"), "-c", str(conf)], str(tmp_path / "corrald.log"))
        c.conf = str(conf)
        return c

    def workers(self):
        """{pid: the queue it serves (its --queue)} of the live workers."""
        out = {}
        for pid in children(self.proc.pid):
            try:
                argv = open(f"/proc/{pid}/cmdline").read().split("\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) == "corral-worker":
                out[pid] = argv[argv.index("--queue") + 1] if "--queue" in argv else None
        return out


@pytest.fixture(scope="module")
def corrald(build_dir, conf, tmp_path_factory):
    exe = binary_path(build_dir, "corrald")
    log = str(tmp_path_factory.mktemp("cldlog") / "corrald.log")
    c = Corrald([exe, "-c", conf], log)
    yield c
    kill_with_children(c)


def on_node(node, key, field):
    c = node.client()
    try:
        return c.hget(key, field)
    except redis.ResponseError as e:
        if str(e).startswith("MOVED "):
            return None
        raise
    finally:
        c.close()


def enqueue(build_dir, conf, q, payload):
    p = ctl(build_dir, conf, "enqueue", q, payload)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_one_corrald_serves_queues_on_three_shards_a_worker_each(redis_cluster, spread,
                                                                 build_dir, conf, corrald):
    wait_until(lambda: sorted(q for q in corrald.workers().values()) == sorted(spread)
               and "ready" in corrald.logs(), timeout=30,
               what="a worker for each queue, each with --queue\n" + corrald.logs())
    jobs = [(q, enqueue(build_dir, conf, q, json.dumps({"q": q, "n": n})))
            for q in spread for n in range(5)]
    for q, jid in jobs:
        key = f"corral:{{{q}}}:job:{jid}"
        wait_until(lambda: on_node(spread[q], key, "state") == "done", timeout=30,
                   what=f"job {jid} of {q} done at its node\n" + corrald.logs())
        assert (json.loads(on_node(spread[q], key, "result"))
                == json.loads(on_node(spread[q], key, "payload")))  # the script echoes
        assert not any(on_node(o, key, "state") for o in redis_cluster.primaries()
                       if o.port != spread[q].port)
    assert "redis unavailable" not in corrald.logs()
    assert "connected to the redis cluster primaries=3 queues=3" in corrald.logs()
    # [pool] min = 1 is raised to a worker a queue, by the scaler too: it
    # does not try to go below, every tick.
    assert corrald.logs().count(" notice scaling ") <= 4, corrald.logs()


def test_status_shows_the_heartbeat_and_workers_of_corrald(redis_cluster, spread, build_dir,
                                                          conf, corrald):
    key = f"corral:host:{HOST}"
    node = redis_cluster.owner(redis_cluster.keyslot(key))
    wait_until(lambda: on_node(node, key, "workers") is not None, what="the heartbeat")

    def shown():
        p = ctl(build_dir, conf, "status", "--json")
        assert p.returncode == 0, p.stderr
        s = json.loads(p.stdout)
        hosts = [h for h in s["hosts"] if h["host"] == HOST]
        return (s, hosts[0]) if hosts and hosts[0]["workers"] >= 3 else None

    s, h = wait_until(shown, what="corrald's heartbeat with its workers in status")
    assert h["queues"].split(",") == sorted(spread)
    assert h["redis"] == "ok" and not h["stale"]
    assert {q["name"]: q["node"] for q in s["queues"]} == {
        q: f"127.0.0.1:{n.port}" for q, n in spread.items()}
    p = ctl(build_dir, conf, "status")
    assert p.returncode == 0, p.stderr
    assert HOST in p.stdout


def test_a_killed_workers_job_is_reclaimed_at_its_queues_node_and_finished(
        redis_cluster, spread, build_dir, conf, corrald):
    q = sorted(spread)[1]
    jid = enqueue(build_dir, conf, q, '{"slow": 1}')
    key = f"corral:{{{q}}}:job:{jid}"
    wait_until(lambda: on_node(spread[q], key, "state") == "active", timeout=20,
               what="the slow job running")
    worker = on_node(spread[q], key, "worker")
    pid = int(worker.rsplit(":", 1)[1])
    assert corrald.workers().get(pid) == q
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "requeued the jobs of a dead worker" in corrald.logs(), timeout=10,
               what="the reclaim\n" + corrald.logs())
    line = next(l for l in corrald.logs().splitlines()
                if "requeued the jobs of a dead worker" in l)
    assert f"worker={worker}" in line and f"queue={q}" in line
    wait_until(lambda: on_node(spread[q], key, "state") == "done", timeout=30,
               what="the reclaimed job done\n" + corrald.logs())
    assert on_node(spread[q], key, "worker") != worker
    # Its queue has a worker again.
    wait_until(lambda: q in corrald.workers().values(), what="a new worker for " + q)


def test_corrald_follows_a_queues_slot_that_moves(redis_cluster, spread, build_dir, conf,
                                                 corrald):
    q = sorted(spread)[2]
    slot = redis_cluster.keyslot(f"corral:{{{q}}}")
    src = redis_cluster.owner(slot)
    dest = next(n for n in redis_cluster.primaries() if n.port != src.port)
    redis_cluster.migrate_slot(slot, dest)
    # A job delayed 1 s is made due by corrald's promote: sent to the old
    # node, answered MOVED, read the map again and sent to the new one.
    p = ctl(build_dir, conf, "enqueue", q, '{"moved": 1}', "--delay", "1s")
    assert p.returncode == 0, p.stderr
    key = f"corral:{{{q}}}:job:{p.stdout.strip()}"
    wait_until(lambda: on_node(dest, key, "state") == "done", timeout=30,
               what="the job done at the slot's new node\n" + corrald.logs())
    assert "redis unavailable" not in corrald.logs()


def asking_calls(node):
    c = node.client()
    try:
        return c.info("commandstats").get("cmdstat_asking", {}).get("calls", 0)
    finally:
        c.close()


def test_a_reload_during_a_slot_migration_runs_nothing_at_the_importing_node(
        redis_cluster, spread, build_dir, conf, corrald):
    """A reload declares every queue again. Sent while a queue's slot is
    half moved, the declaration must not follow ASK to the importing node:
    it would make the queue's keys there and the move would fail with
    BUSYKEY, stranding the queue (make chaos-cluster, seed 9)."""
    q = sorted(spread)[1]
    slot = redis_cluster.keyslot(f"corral:{{{q}}}")
    src = redis_cluster.owner(slot)
    dest = next(n for n in redis_cluster.primaries() if n.port != src.port)
    asked = asking_calls(dest)

    def half_moved():
        logs = corrald.logs()
        corrald.proc.send_signal(signal.SIGHUP)
        # The reload's declaration of q either ran at the importing node
        # (ASKING there) or ended: declared after a wait, or refused.
        wait_until(lambda: asking_calls(dest) > asked or
                   corrald.logs().count("reloaded") > logs.count("reloaded") or
                   corrald.logs().count("cannot declare") > logs.count("cannot declare"),
                   timeout=15, what="the reload's declaration\n" + corrald.logs())
    redis_cluster.migrate_slot(slot, dest, pause=half_moved)  # BUSYKEY raises here
    assert asking_calls(dest) == asked, "a call ran at the importing node"
    jid = enqueue(build_dir, conf, q, '{"after": "migration"}')
    key = f"corral:{{{q}}}:job:{jid}"
    wait_until(lambda: on_node(dest, key, "state") == "done", timeout=30,
               what="the job done at the slot's new node\n" + corrald.logs())
    assert corrald.proc.poll() is None


def test_corrald_serves_on_after_a_primary_fails_over(redis_cluster, spread, build_dir, conf,
                                                      corrald):
    q = sorted(spread)[0]
    node = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))
    redis_cluster.fail_over(node)
    failed_over_ms = time.time() * 1000
    new = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))
    assert new.port != node.port
    jid = enqueue(build_dir, conf, q, '{"after": "failover"}')
    key = f"corral:{{{q}}}:job:{jid}"
    wait_until(lambda: on_node(new, key, "state") == "done", timeout=30,
               what="a job done at the promoted replica\n" + corrald.logs())
    # corrald connected again (from the seeds, one of them dead) and beats.
    hb = f"corral:host:{HOST}"

    def beating():
        n = redis_cluster.owner(redis_cluster.keyslot(hb))
        return (int(on_node(n, hb, "heartbeat_ms") or 0) > failed_over_ms + 1000
                and on_node(n, hb, "redis") == "ok" and int(on_node(n, hb, "workers") or 0) >= 3)

    wait_until(beating, timeout=20, what="corrald's heartbeat back\n" + corrald.logs())
    assert corrald.proc.poll() is None


def test_a_reload_it_cannot_serve_on_a_cluster_is_refused(build_dir, conf, corrald):
    text = open(conf).read()
    try:
        with open(conf, "w") as f:
            f.write(text.replace("max = 6", "max = 2"))
        corrald.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in corrald.logs(), what="the refusal")
        assert "max must be at least the number of queues (3)" in corrald.logs()
    finally:
        with open(conf, "w") as f:
            f.write(text)
    assert corrald.proc.poll() is None
    assert len(corrald.workers()) >= 3


def test_corrald_stops_cleanly_and_removes_its_heartbeat(redis_cluster, spread, corrald):
    workers = list(corrald.workers())
    assert workers
    assert corrald.stop() == 0
    assert not any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2]
                   != "Z" for w in workers)
    key = f"corral:host:{HOST}"
    assert on_node(redis_cluster.owner(redis_cluster.keyslot(key)), key, "host") is None
    index = "corral:hosts"
    c = redis_cluster.owner(redis_cluster.keyslot(index)).client()
    try:
        assert c.zscore(index, HOST) is None
    finally:
        c.close()
    text = open(corrald.log).read()
    assert "stopped" in text
    assert "Sanitizer" not in text and "runtime error" not in text, text


def test_corrald_on_a_cluster_refuses_what_it_cannot_serve(build_dir, tmp_path):
    exe = binary_path(build_dir, "corrald")
    conf = write_conf(tmp_path / "c.conf", "127.0.0.1:7000", ["prompts", "images", "audio"],
                      pool="min = 1\nmax = 2\n")
    p = subprocess.run([exe, "-c", conf], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert ("[pool] max = 2: on a Redis Cluster each worker serves one queue, so max must be "
            "at least the number of queues (3)") in p.stderr
