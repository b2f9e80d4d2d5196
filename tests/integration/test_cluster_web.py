"""corral-web on a Redis Cluster ([redis] cluster; docs/web.md "On a Redis
Cluster"), against a real cluster of three primaries and three replicas
(clusterfixtures.py): its status is corralctl status's, every shard read,
each queue with its node; /metrics and the history read each queue's
counters and buckets on its own node; the actions (pause, resume, cancel,
dead retry and purge) and the reads of a job or a dead list go to the
queue's node, and follow the queue when its slot moves. A breaker reset is
refused by name (services are not served on a Cluster yet).

The tests of this module share one cluster and one corral-web, in order."""
import json
import subprocess

import pytest

from clusterfixtures import *  # noqa: F401,F403
from conftest import MODE, binary_path, enqueue, get_job, reserve, wait_until
from test_web import Web

# Its own Redis Cluster, never the ACL user: run once (tests/integration/README.md).
pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")




class Seeds:
    """What Web asks of a redis_server: the [redis] section, here the
    cluster's seeds."""

    def __init__(self, seeds):
        self.seeds = seeds

    def redis_section(self):
        return f"[redis]\ncluster = {self.seeds.replace(',', ', ')}\n\n"


@pytest.fixture(scope="module")
def web(build_dir, redis_cluster, spread, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clweb")
    extra = "".join(f"[queue {q}]\nhandler = echo\n" for q in sorted(spread))
    w = Web(build_dir, tmp, Seeds(redis_cluster.seeds), extra=extra)
    # The queues are declared by corralctl, each on its node (corral-web
    # loads the library and reads; it declares nothing).
    for q in sorted(spread):
        p = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(w.conf), "enqueue", q,
                            '{"warm": 1}'], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
    yield w
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert "ERROR" not in log, log


def node_client(node):
    return node.client()


def addr(node):
    return f"127.0.0.1:{node.port}"


def test_status_reads_every_shard_and_names_each_queues_node(web, spread):
    def shown():
        s = web.status()
        qs = {q["name"]: q for q in s.get("queues", [])}
        return s if all(q in qs and qs[q].get("depth", 0) >= 1 for q in spread) else None
    s = wait_until(shown, timeout=10, interval=0.2, what="every queue with its warm-up job")
    qs = {q["name"]: q for q in s["queues"]}
    for q, node in spread.items():
        assert qs[q]["node"] == addr(node), (q, qs[q]["node"])
    assert s["cluster"]["primaries"] == 3 and s["cluster"]["replicas"] == 3
    assert s["cluster"]["slots_served"] == 16384


def test_metrics_count_each_queues_jobs_from_its_own_node(web, spread, build_dir):
    # Each queue's counters live on its node: a read of one node alone (the
    # registry's) would show the others as 0 or fail with MOVED.
    for q, node in spread.items():
        c = node_client(node)
        enqueue(c, q, '{"n": 2}')
        c.close()

    def counted():
        body = web.get("/metrics")[2].decode()
        return body if all(f'corral_jobs_enqueued_total{{queue="{q}"}} 2' in body
                           for q in spread) else None
    body = wait_until(counted, timeout=10, interval=0.2, what="2 enqueued per queue in /metrics")
    assert "corral_up 1" in body
    # corralctl metrics reads them the same way (it was refused on a Cluster).
    p = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(web.conf), "metrics"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    for q in spread:
        assert f'corral_jobs_enqueued_total{{queue="{q}"}} 2' in p.stdout


def test_history_has_each_queues_minutes_from_its_node(web, spread):
    def ready():
        h = web.json("/api/history")
        return h if all(sum(h["queues"].get(q, {}).get("enqueued", [])) >= 2
                        for q in spread) else None
    h = wait_until(ready, timeout=10, interval=0.3, what="each queue's enqueues in the history")
    for q in spread:
        assert len(h["queues"][q]["enqueued"]) == 61


def test_actions_reach_the_queues_node(web, spread):
    q, node = sorted(spread.items())[1]
    c = node_client(node)
    st, _, body = web.post(f"/api/queues/{q}/pause")
    assert st == 200, body
    wait_until(lambda: {x["name"]: x for x in web.status()["queues"]}[q]["paused"],
               timeout=5, interval=0.1, what=f"{q} shown paused")
    assert c.hget(f"corral:{{{q}}}:conf", "paused") == "1"
    st, _, body = web.post(f"/api/queues/{q}/resume")
    assert st == 200, body
    assert c.hget(f"corral:{{{q}}}:conf", "paused") in (None, "0")

    jid = enqueue(c, q, '{"cancel": "me"}')
    st, _, body = web.post(f"/api/jobs/{q}/{jid}/cancel")
    assert st == 200, body
    assert json.loads(body)["state"] == "cancelled"
    assert get_job(c, q, jid)["state"] == "cancelled"
    st, _, body = web.get(f"/api/jobs/{q}/{jid}")
    assert st == 200 and json.loads(body)["state"] == "cancelled"
    c.close()


def test_dead_list_retry_and_purge_on_the_queues_node(web, spread):
    q, node = sorted(spread.items())[2]
    c = node_client(node)
    while reserve(c, q, n=100):  # the earlier tests' jobs: out of the way
        pass
    jid = enqueue(c, q, '{"doomed": 1}')
    run = reserve(c, q)[0][1]
    c.fcall("corral_fail", 1, q, "host1:1", jid, run, "permanent", "bad input on a shard")
    d = web.json(f"/api/queues/{q}/dead")
    assert d["total"] == 1 and d["jobs"][0]["id"] == jid
    assert d["jobs"][0]["error"] == "bad input on a shard"
    st, _, body = web.post(f"/api/queues/{q}/dead/retry", {"ids": [jid]})
    assert st == 200 and json.loads(body)["retried"] == 1, body
    assert get_job(c, q, jid)["state"] == "queued"
    run = reserve(c, q)[0][1]
    c.fcall("corral_fail", 1, q, "host1:1", jid, run, "permanent", "again")
    st, _, body = web.post(f"/api/queues/{q}/dead/purge")
    assert st == 200 and json.loads(body)["purged"] == 1, body
    assert web.json(f"/api/queues/{q}/dead")["total"] == 0
    c.close()


def test_a_breaker_reset_goes_to_the_services_node(web, redis_cluster):
    # A service's keys share the hash tag {svc:NAME}: its node is that
    # slot's owner, whichever shard its queues are on.
    sk = "corral:{svc:ai}"
    node = redis_cluster.owner(redis_cluster.keyslot(sk))
    c = node_client(node)
    c.fcall("corral_declare_service", 1, sk, json.dumps({"min_calls": 1, "open_for_ms": 60000}))
    c.hset(sk, mapping={"state": "open", "open_until_ms": 2**52, "reason": "tripped by the test"})
    st, _, body = web.post("/api/breakers/ai/reset")
    assert st == 200, body
    assert json.loads(body)["state"] == "closed"
    assert c.hget(sk, "state") == "closed"
    c.close()
    st, _, body = web.post("/api/breakers/nosuch/reset")
    assert st == 404, body


def test_actions_and_status_follow_a_queue_whose_slot_moved(web, spread, redis_cluster):
    q, node = sorted(spread.items())[0]
    dest = next(n for n in redis_cluster.primaries() if n.port != node.port)
    # The action's connection learns the map on first use: use it before
    # the move, so that it holds a map the move makes stale.
    assert web.post(f"/api/queues/{q}/resume")[0] == 200
    redis_cluster.migrate_slot(redis_cluster.keyslot(f"corral:{{{q}}}"), dest)
    st, _, body = web.post(f"/api/queues/{q}/pause")
    assert st == 200, body  # MOVED followed to the new owner
    c = node_client(dest)
    assert c.hget(f"corral:{{{q}}}:conf", "paused") == "1"
    c.close()
    wait_until(lambda: {x["name"]: x for x in web.status()["queues"]}[q]["node"] == addr(dest),
               timeout=10, interval=0.2, what=f"{q} shown on its new node")
    assert web.post(f"/api/queues/{q}/resume")[0] == 200
