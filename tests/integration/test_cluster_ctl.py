"""corralctl and libcorral on a Redis Cluster ([redis] cluster = host:port,
...; docs/design.md "Redis Cluster slots"), against a real cluster of three
primaries and three replicas (clusterfixtures.py): queues whose hash tags
land on different shards are declared, enqueued to, read, cancelled and
waited on at the node that holds each; every Function call of that path
touches one slot (Redis 7 refuses a script that reaches another); the
library is loaded on every primary; status lists every queue with its node
and the Cluster's shape; a MOVED after a slot moved is followed; seeds
where no node answers are a clear error."""
import json
import os
import subprocess

import pytest
import redis

from clusterfixtures import *  # noqa: F401,F403
from conftest import LUA, binary_path, free_port, wait_until



@pytest.fixture(scope="module")
def ctl(build_dir):
    return binary_path(build_dir, "corralctl")



def write_conf(path, seeds, queues):
    text = f"[redis]\ncluster = {seeds.replace(',', ', ')}\n\n"
    for q in queues:
        text += f"[queue {q}]\nhandler = echo\npriorities = high, normal\n\n"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def conf(redis_cluster, spread, tmp_path_factory):
    return write_conf(tmp_path_factory.mktemp("cl") / "corral.conf", redis_cluster.seeds,
                      list(spread))


def run(ctl, conf, *args, timeout=30):
    return subprocess.run([ctl, "-c", conf, *args], capture_output=True, text=True,
                          timeout=timeout)


def holds(node, key):
    """Whether node has key (a node that does not serve its slot answers
    MOVED: it has not)."""
    c = node.client()
    try:
        return c.execute_command("EXISTS", key) == 1
    except redis.ResponseError as e:
        if str(e).startswith("MOVED "):
            return False
        raise
    finally:
        c.close()


def test_declare_touches_the_queues_slot_alone(redis_cluster, spread):
    # Version 6 of the library failed here: "Script attempted to access a
    # non local key in a cluster node" (the SADD to <prefix>:queues).
    lua = open(LUA).read()
    for q, node in spread.items():
        c = node.client()
        try:
            c.execute_command("FUNCTION", "LOAD", "REPLACE", lua)
            # Another prefix: the same slot, and corral's own queues are
            # left to be declared (and registered) by corralctl below.
            assert c.execute_command("FCALL", "corral_declare", 1, f"direct:{{{q}}}",
                                     json.dumps({"priorities": ["high", "normal"]})) == "OK"
        finally:
            c.close()


def test_enqueue_job_cancel_and_wait_run_on_the_node_holding_each_queue(redis_cluster, spread,
                                                                         ctl, conf):
    for q, node in spread.items():
        p = run(ctl, conf, "enqueue", q, '{"n": 1}', "--priority", "high")
        assert p.returncode == 0, p.stderr
        jid = p.stdout.strip()
        key = f"corral:{{{q}}}:job:{jid}"
        assert holds(node, key)
        assert not any(holds(o, key) for o in redis_cluster.primaries() if o.port != node.port)
        p = run(ctl, conf, "job", q, jid, "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["state"] == "queued"
        p = run(ctl, conf, "pause", q)
        assert p.returncode == 0, p.stderr
        assert holds(node, f"corral:{{{q}}}:paused")
        assert run(ctl, conf, "resume", q).returncode == 0
        p = run(ctl, conf, "cancel", q, jid)
        assert (p.returncode, p.stdout) == (0, "cancelled\n"), p.stderr
        p = run(ctl, conf, "wait", q, jid, "--timeout", "5s")
        assert p.returncode == 1
        assert f"job {jid} cancelled" in p.stderr


def test_cancel_of_a_tenants_jobs_runs_on_the_node_holding_the_queue(redis_cluster, spread,
                                                                     ctl, conf):
    q, node = next(iter(spread.items()))
    ids = {}
    for t in ("a", "a", "b"):
        p = run(ctl, conf, "enqueue", q, '{"n": 1}', "--tenant", t)
        assert p.returncode == 0, p.stderr
        ids.setdefault(t, []).append(p.stdout.strip())
    p = run(ctl, conf, "cancel", q, "--tenant", "a")
    assert (p.returncode, p.stdout) == (0, "2 jobs cancelled\n"), p.stderr
    for t, want in (("a", "cancelled"), ("b", "queued")):
        for jid in ids[t]:
            p = run(ctl, conf, "job", q, jid, "--json")
            assert json.loads(p.stdout)["state"] == want
    assert run(ctl, conf, "cancel", q, ids["b"][0]).returncode == 0


def test_the_library_is_loaded_on_every_primary(redis_cluster, ctl, conf, spread):
    for node in redis_cluster.primaries():
        c = node.client()
        try:
            c.execute_command("FUNCTION", "FLUSH")
        finally:
            c.close()
    q = next(iter(spread))
    p = run(ctl, conf, "enqueue", q, "{}")
    assert p.returncode == 0, p.stderr
    for node in redis_cluster.primaries():
        c = node.client()
        try:
            assert c.execute_command("FCALL_RO", "corral_version", 0) >= 7
        finally:
            c.close()


def test_status_lists_every_queue_with_its_node_and_the_clusters_shape(redis_cluster, spread,
                                                                        ctl, conf):
    for q in spread:
        assert run(ctl, conf, "enqueue", q, "{}").returncode == 0

    def replicas_listed():  # in every node's CLUSTER SLOTS once known (gossip)
        for n in redis_cluster.primaries():
            c = n.client()
            try:
                if sum(len(e) - 3 for e in c.execute_command("CLUSTER", "SLOTS")) != 3:
                    return False
            finally:
                c.close()
        return True
    wait_until(replicas_listed, timeout=30, what="every replica listed in CLUSTER SLOTS")
    p = run(ctl, conf, "status", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    nodes = {q["name"]: q["node"] for q in s["queues"]}
    assert nodes == {q: f"127.0.0.1:{n.port}" for q, n in spread.items()}
    assert all(q["depth"] >= 1 for q in s["queues"])
    cl = s["cluster"]
    assert (cl["primaries"], cl["replicas"], cl["slots_served"]) == (3, 3, 16384)
    primaries = {n["address"]: n for n in cl["nodes"] if n["role"] == "primary"}
    assert set(primaries) == {f"127.0.0.1:{n.port}" for n in redis_cluster.primaries()}
    for n in cl["nodes"]:
        if n["role"] == "replica":
            assert f"{n['address']}" in primaries[n["primary"]]["replicas"]
    assert sum(hi - lo + 1 for n in primaries.values() for lo, hi in n["slots"]) == 16384
    p = run(ctl, conf, "status")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for q, n in spread.items():  # the nodes' table: each queue on its primary's row
        row = next(line for line in lines if line.startswith(f"127.0.0.1:{n.port} "))
        assert "primary" in row and q in row.split()


def test_a_wait_follows_the_queue_when_its_slot_moves(redis_cluster, spread, ctl, conf):
    q, src = sorted(spread.items())[0]
    p = run(ctl, conf, "enqueue", q, '{"m": 1}')
    assert p.returncode == 0, p.stderr
    jid = p.stdout.strip()
    waiter = subprocess.Popen([ctl, "-c", conf, "wait", q, jid, "--timeout", "60s"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def blocked():
            c = src.client()
            try:
                return any("blmove" in line for line in c.execute_command("CLIENT", "LIST")
                           .splitlines())
            finally:
                c.close()
        wait_until(blocked, timeout=10, what="the wait blocked on the queue's node")
        dest = next(n for n in redis_cluster.primaries() if n.port != src.port)
        redis_cluster.migrate_slot(redis_cluster.keyslot(f"corral:{{{q}}}"), dest)
        assert holds(dest, f"corral:{{{q}}}:job:{jid}")
        # The blocked wait was answered MOVED by the old node: it reads the
        # map again and waits on at the new one, where the cancel lands.
        p = run(ctl, conf, "cancel", q, jid)
        assert p.returncode == 0, p.stderr
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 1, err
        assert f"job {jid} cancelled" in err
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


APP = r"""
#include <stdio.h>
#include <string.h>
#include "corral/cluster_client.h"
#include "corral/queue.h"

/* Reads "QUEUE PAYLOAD" lines; enqueues each on the router; prints the id
 * and the node the queue is on, or the error. */
int main(int argc, char **argv)
{
    struct corral_config *cfg = corral_config_defaults();
    struct corral_err err;
    for (int i = 1; i < argc; i++)
        corral_strlist_push(&cfg->redis.cluster, argv[i]);
    struct corral_cluster *cc = corral_cluster_open(&cfg->redis, 5000, &err);
    if (cc == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        corral_config_free(cfg);
        return 1;
    }
    char line[512], q[128], payload[256];
    while (fgets(line, sizeof(line), stdin) && sscanf(line, "%127s %255s", q, payload) == 2) {
        redisContext *c = corral_cluster_queue_conn(cc, "corral", q, &err);
        char *id = NULL;
        int rc = c ? corral_queue_enqueue(c, "corral", q, payload, strlen(payload), NULL, &id, &err)
                   : -1;
        for (int k = 0; rc < 0 && k < 20 && corral_cluster_redirected(cc, c, &err); k++)
            rc = (c = corral_cluster_queue_conn(cc, "corral", q, &err))
                     ? corral_queue_enqueue(c, "corral", q, payload, strlen(payload), NULL, &id,
                                            &err)
                     : -1;
        char node[300];
        corral_cluster_queue_node(cc, "corral", q, node, sizeof(node));
        if (rc == 0)
            printf("%s %s\n", id, node);
        else
            printf("error %s\n", err.msg);
        fflush(stdout);
        free(id);
    }
    corral_cluster_free(cc);
    corral_config_free(cfg);
    return 0;
}
"""


@pytest.fixture(scope="module")
def app(build_dir, tmp_path_factory):
    lib = os.path.join(build_dir, "libcorral.so")
    if not os.path.exists(lib):
        pytest.skip("libcorral.so not built (make)")
    d = tmp_path_factory.mktemp("app")
    (d / "app.c").write_text(APP)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "hiredis"], capture_output=True,
                           text=True, check=True).stdout.split()
    if os.path.basename(build_dir.rstrip("/")).endswith("-san"):
        flags += ["-fsanitize=address,undefined"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", "-I",
                          os.path.join(repo, "include"), str(d / "app.c"), "-o", str(d / "app"),
                          "-L", build_dir, "-lcorral", f"-Wl,-rpath,{d}", *flags],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    os.symlink(lib, d / "libcorral.so.0")  # found by its soname, as installed
    return str(d / "app")


def test_libcorral_enqueues_at_each_queues_node_and_follows_a_moved_slot(redis_cluster, spread,
                                                                          ctl, conf, app):
    queues = sorted(spread)
    for q in queues:  # declared (by corralctl, from the config)
        assert run(ctl, conf, "enqueue", q, "{}").returncode == 0
    p = subprocess.Popen([app, *redis_cluster.seeds.split(",")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def enqueue(q):
            p.stdin.write(f"{q} {{\"x\":1}}\n")
            p.stdin.flush()
            line = p.stdout.readline()
            assert line, p.stderr.read()
            return line.split(" ", 1)
        for q in queues:
            jid, node = enqueue(q)
            owner = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))
            assert node.strip() == f"127.0.0.1:{owner.port}", jid
            assert holds(owner, f"corral:{{{q}}}:job:{jid}")
        # The app's map still names the old owner: its next enqueue is
        # answered MOVED, and lands at the new one.
        q = queues[-1]
        slot = redis_cluster.keyslot(f"corral:{{{q}}}")
        old = redis_cluster.owner(slot)
        dest = next(n for n in redis_cluster.primaries() if n.port != old.port)
        redis_cluster.migrate_slot(slot, dest)
        jid, node = enqueue(q)
        assert jid != "error", node
        assert node.strip() == f"127.0.0.1:{dest.port}"
        assert holds(dest, f"corral:{{{q}}}:job:{jid}")
        # A primary without the library (flushed, or new): loaded again.
        c = dest.client()
        try:
            c.execute_command("FUNCTION", "FLUSH")
        finally:
            c.close()
        jid, node = enqueue(q)
        assert jid != "error", node
        assert holds(dest, f"corral:{{{q}}}:job:{jid}")
    finally:
        if p.poll() is None:
            p.stdin.close()
        p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()


def error_replies(node):
    c = node.client()
    try:
        return c.info("stats")["total_error_replies"]
    finally:
        c.close()


def test_an_enqueue_during_a_slot_migration_waits_for_it_and_lands_at_the_new_node(
        redis_cluster, spread, ctl, conf, app):
    q = sorted(spread)[1]
    assert run(ctl, conf, "enqueue", q, "{}").returncode == 0  # declared, keys to move
    p = subprocess.Popen([app, *redis_cluster.seeds.split(",")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        slot = redis_cluster.keyslot(f"corral:{{{q}}}")
        src = redis_cluster.owner(slot)
        dest = next(n for n in redis_cluster.primaries() if n.port != src.port)

        def half_moved():
            # The old node answers ASK while the slot migrates; the new one
            # has none of the queue's keys yet. Sent now, the enqueue must
            # neither fail (NOQUEUE at the new node) nor split the queue.
            p.stdin.write(f"{q} {{\"during\":1}}\n")
            p.stdin.flush()
            wait_until(lambda: error_replies(src) > before, timeout=10,
                       what="the old node answering ASK")
        before = error_replies(src)
        redis_cluster.migrate_slot(slot, dest, pause=half_moved)
        line = p.stdout.readline()
        assert line, p.stderr.read()
        jid, node = line.split(" ", 1)
        assert jid != "error", node
        assert node.strip() == f"127.0.0.1:{dest.port}"
        assert holds(dest, f"corral:{{{q}}}:job:{jid}")
        pr = run(ctl, conf, "job", q, jid, "--json")
        assert pr.returncode == 0, pr.stderr
        assert json.loads(pr.stdout)["payload"] == '{"during":1}'
    finally:
        if p.poll() is None:
            p.stdin.close()
        p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()


def test_no_seed_answering_is_a_clear_error(ctl, tmp_path):
    a, b = free_port(), free_port()
    conf = write_conf(tmp_path / "c.conf", f"127.0.0.1:{a},127.0.0.1:{b}", ["prompts"])
    p = run(ctl, conf, "enqueue", "prompts", "{}")
    assert p.returncode == 1
    assert "redis cluster: no node gave the slot map" in p.stderr
    assert f"127.0.0.1:{a}" in p.stderr and f"127.0.0.1:{b}" in p.stderr
    assert "Connection refused" in p.stderr


def test_tenant_weights_and_tenants_are_read_and_set_on_the_queues_node(ctl, conf, spread,
                                                                        redis_cluster):
    # Two of the three queues are on another node than the registry's: the
    # calls must be routed (they were refused on a Cluster before).
    for q in sorted(spread):
        node = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))  # slots moved
        p = run(ctl, conf, "enqueue", q, '{"t": 1}', "--tenant", "gold")
        assert p.returncode == 0, p.stderr
        p = run(ctl, conf, "tenant", q, "gold", "--weight", "3")
        assert p.returncode == 0, p.stderr
        assert f"queue {q}: tenant gold has weight 3" in p.stdout
        c = node.client()
        assert c.hget(f"corral:{{{q}}}:conf", "tenant_weights") == "gold:3"
        c.close()
        p = run(ctl, conf, "status", "--tenants", q, "--json")
        assert p.returncode == 0, p.stderr
        js = json.loads(p.stdout)
        gold = [t for t in js["tenants"] if t["tenant"] == "gold"]
        assert gold and gold[0]["weight"] == 3 and gold[0]["waiting"] >= 1, js


def test_a_worker_serves_its_queue_at_its_node_and_follows_it_when_its_slot_moves(
        redis_cluster, spread, ctl, conf, build_dir, tmp_path):
    q = sorted(spread)[2]
    log = open(tmp_path / "w.log", "w")
    w = subprocess.Popen([binary_path(build_dir, "corral-worker"), "-c", conf, "--queue", q],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        def done(payload):
            p = run(ctl, conf, "enqueue", q, payload, "--wait", "20s", timeout=40)
            assert p.returncode == 0, p.stderr + open(tmp_path / "w.log").read()
            return p.stdout.strip()
        assert done('{"a": 1}') == '{"a": 1}'  # echo: the payload is the result
        slot = redis_cluster.keyslot(f"corral:{{{q}}}")
        src = redis_cluster.owner(slot)
        dest = next(n for n in redis_cluster.primaries() if n.port != src.port)
        redis_cluster.migrate_slot(slot, dest)
        # The worker's calls are answered MOVED by the old node: it connects
        # again, to the node the map names now, and serves on.
        assert done('{"b": 2}') == '{"b": 2}'
        assert w.poll() is None
    finally:
        w.terminate()
        w.wait(timeout=15)
        log.close()
    text = open(tmp_path / "w.log").read()
    assert "Sanitizer" not in text and "runtime error" not in text, text
    assert "MOVED" in text  # it was told, and followed
    # Its log names the node it reached each time, not the url's placeholder.
    assert f"at=127.0.0.1:{src.port}" in text and f"at=127.0.0.1:{dest.port}" in text, text


def test_a_worker_on_a_cluster_serves_one_queue_without_a_service(build_dir, tmp_path):
    conf = write_conf(tmp_path / "c.conf", "127.0.0.1:7000", ["prompts", "images"])
    p = subprocess.run([binary_path(build_dir, "corral-worker"), "-c", conf], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1
    assert "[redis] cluster: a worker serves one queue on a Redis Cluster" in p.stderr


def test_a_confirmed_job_survives_its_primarys_failover(redis_cluster, spread, ctl, tmp_path):
    # Last in this file: it kills a primary of the module's cluster.
    q = sorted(spread)[0]
    node = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))  # its slot moved above
    plain = write_conf(tmp_path / "c.conf", redis_cluster.seeds, list(spread))
    conf = tmp_path / "r.conf"
    conf.write_text(open(plain).read().replace("[redis]\n", "[redis]\nmin_replicas = 1\n", 1))
    p = run(ctl, str(conf), "enqueue", q, '{"keep": 1}')
    assert p.returncode == 0, p.stderr  # WAIT on the queue's node: its replica has it
    jid = p.stdout.strip()
    redis_cluster.fail_over(node)
    p = run(ctl, str(conf), "job", q, jid, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["state"] == "queued"
    # The promoted replica has no replica of its own: min_replicas = 1
    # cannot be met there (exit 3, the job exists); without it, exit 0.
    assert run(ctl, str(conf), "enqueue", q, "{}").returncode == 3
    p = run(ctl, plain, "enqueue", q, "{}")
    assert p.returncode == 0, p.stderr
    new_owner = redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{q}}}"))
    assert new_owner.port != node.port
    assert holds(new_owner, f"corral:{{{q}}}:job:{p.stdout.strip()}")
