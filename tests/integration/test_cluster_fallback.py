"""A fallback list of services on a Redis Cluster (docs/breakers.md,
"Fallback"; docs/protocol.md, "The service gate"), against a real cluster
(clusterfixtures.py): one corrald serves a queue with `service = a, b`,
each service its own stand-in and its own slot ({svc:a}, {svc:b}). The
worker asks a's gate first and b's when a grants no permit; the jobs name
the service that served them (served_by, served_model), and each call's
outcome goes to the gate of the service that granted its permit."""
import json
import subprocess

import pytest

from clusterfixtures import *  # noqa: F401,F403
from conftest import MODE, binary_path, stop_clean, wait_until
from test_cluster_supervisor import Corrald
from worker_fixtures import aistub

# Its own Redis Cluster, never the ACL user: run once (tests/integration/README.md).
pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

Q = "prompts"


@pytest.fixture
def stubs():
    a, b = aistub.Server().start(), aistub.Server().start()
    yield a, b
    a.stop()
    b.stop()


def calls(srv):
    with srv.stub.lock:
        return srv.stub.requests


@pytest.fixture
def fleet(redis_cluster, build_dir, tmp_path, stubs):
    """start(a's settings, b's settings) -> a corrald serving queue Q with
    service = a, b (one worker, concurrency 4) on a flushed cluster."""
    started = []

    def start(a="", b=""):
        redis_cluster.flushall()
        seeds = redis_cluster.seeds.replace(",", ", ")
        sa, sb = stubs
        text = (f"[redis]\ncluster = {seeds}\n\n"
                "[pool]\nmin = 1\nmax = 1\nconcurrency = 4\ndrain_timeout = 5s\n\n"
                "[scale]\ntick = 250ms\n\n"
                f"[queue {Q}]\nhandler = http\nservice = a, b\ntimeout = 3s\n"
                "max_attempts = 20\nbackoff = 50ms..100ms\n\n"
                f"[service a]\nurl = {sa.url}\nmodel = model-a\n{a}\n\n"
                f"[service b]\nurl = {sb.url}\nmodel = model-b\n{b}\n")
        c = Corrald.with_conf(build_dir, tmp_path, text)
        started.append(c)
        wait_until(lambda: list(c.workers().values()) == [Q] and gate_ready(redis_cluster),
                   timeout=30, what="a worker, the queue declared with its gate")
        return c

    yield start
    for c in started:
        stop_clean(c)


def qnode(cluster):
    return cluster.owner(cluster.keyslot(f"corral:{{{Q}}}")).client()


def gate_ready(cluster):
    c = qnode(cluster)
    try:
        return (c.hget(f"corral:{{{Q}}}:conf", "service_gate") == "1"
                and c.hget(f"corral:{{{Q}}}:conf", "service") == "a,b")
    finally:
        c.close()


def enqueue(cluster, n):
    c = qnode(cluster)
    try:
        pipe = c.pipeline(transaction=False)
        for i in range(n):
            pipe.fcall("corral_enqueue", 1, Q, json.dumps({"i": i}))
        return pipe.execute()
    finally:
        c.close()


def jobs(cluster, ids):
    c = qnode(cluster)
    try:
        return [json.loads(c.fcall_ro("corral_job", 1, Q, i)) for i in ids]
    finally:
        c.close()


def all_done(cluster, ids):
    return all(j["state"] == "done" for j in jobs(cluster, ids))


def breaker(cluster, name):
    sk = f"corral:{{svc:{name}}}"
    c = cluster.owner(cluster.keyslot(sk)).client()
    try:
        return json.loads(c.fcall_ro("corral_breaker", 1, sk))
    finally:
        c.close()


def ctl(build_dir, conf, *args):
    p = subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, *args],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_jobs_go_to_the_next_service_while_the_first_breaker_is_open_on_a_cluster(
        redis_cluster, stubs, fleet, build_dir):
    sa, sb = stubs
    with sa.stub.lock:
        sa.stub.default = {"status": 503}
    min_calls = 4
    c = fleet(a=f"breaker_min_calls = {min_calls}\nbreaker_failure_rate = 50%\n"
                "breaker_open_for = 60s\nbreaker_open_max = 60s")
    ids = enqueue(redis_cluster, 20)
    wait_until(lambda: all_done(redis_cluster, ids), timeout=60,
               what="every job, served by b while a's breaker is open")
    assert breaker(redis_cluster, "a")["state"] == "open"
    # a got the calls that tripped it (and those under way then), b the rest.
    assert calls(sa) <= min_calls + 4, calls(sa)
    assert calls(sb) == 20
    done = jobs(redis_cluster, ids)
    assert {j["served_by"] for j in done} == {"b"}
    assert {j["served_model"] for j in done} == {"model-b"}
    # Each outcome went to the gate that granted its permit: b's breaker
    # counted b's calls, none is left in flight at either.
    assert breaker(redis_cluster, "b")["state"] == "closed"
    assert breaker(redis_cluster, "a")["inflight"] == 0
    assert breaker(redis_cluster, "b")["inflight"] == 0
    # corralctl status reads the share each service was given on the queue's node.
    (q,) = [q for q in json.loads(ctl(build_dir, c.conf, "status", "--json"))["queues"]
            if q["name"] == Q]
    assert q["services"] == ["a", "b"] and q["served"].get("b") == 20, q
    # a answers again and its breaker is reset: jobs come back to a.
    with sa.stub.lock:
        sa.stub.default = {}
    before_a, before_b = calls(sa), calls(sb)
    assert "reset" in ctl(build_dir, c.conf, "breaker", "a", "reset")
    more = enqueue(redis_cluster, 10)
    wait_until(lambda: all_done(redis_cluster, more), timeout=30, what="the jobs after the reset")
    assert calls(sa) - before_a == 10 and calls(sb) == before_b
    assert {j["served_by"] for j in jobs(redis_cluster, more)} == {"a"}
    assert {j["served_model"] for j in jobs(redis_cluster, more)} == {"model-a"}


def test_jobs_go_to_the_next_service_while_the_first_is_at_its_rate_on_a_cluster(
        redis_cluster, stubs, fleet):
    sa, sb = stubs
    fleet(a="rate = 2/s")
    ids = enqueue(redis_cluster, 20)
    wait_until(lambda: all_done(redis_cluster, ids), timeout=30, what="every job")
    served = [j["served_by"] for j in jobs(redis_cluster, ids)]
    # a takes what its rate allows, b the rest; each stand-in saw its share.
    assert served.count("a") == calls(sa) and served.count("b") == calls(sb)
    assert 1 <= calls(sa) <= 2 * 4 and calls(sb) >= 12, (calls(sa), calls(sb))
    # With room again (the rate's window passed), the next jobs go to a.
    before_b = calls(sb)
    wait_until(lambda: breaker(redis_cluster, "a")["rate_used"] == 0, timeout=10,
               what="a's rate window of one second, empty of calls")
    (one,) = enqueue(redis_cluster, 1)
    wait_until(lambda: all_done(redis_cluster, [one]), timeout=30, what="the next job")
    assert jobs(redis_cluster, [one])[0]["served_by"] == "a" and calls(sb) == before_b
