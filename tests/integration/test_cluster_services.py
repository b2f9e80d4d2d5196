"""Services on a Redis Cluster (docs/design.md, "Redis Cluster slots": the
service gate), against a real cluster of three primaries and three replicas
(clusterfixtures.py): one corrald serves two queues whose hash tags land on
two shards, both calling the one AI stand-in through service "ai", whose
keys ({svc:ai}) live on a slot of their own. The breaker, the rate, the
host's max_inflight and the token budget hold across both queues, counted
by what reaches the stand-in; permits of a worker killed with SIGKILL
expire and the service serves again."""
import json
import os
import signal
import subprocess
import time

import pytest

from clusterfixtures import *  # noqa: F401,F403
from conftest import MODE, binary_path, stop_clean, wait_until
from test_cluster_supervisor import Corrald
from worker_fixtures import stub  # noqa: F401 (a fixture)

# Its own Redis Cluster, never the ACL user: run once (tests/integration/README.md).
pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

SK = "corral:{svc:ai}"


@pytest.fixture(scope="module")
def pair(redis_cluster):
    """Two queues on two different primaries: {queue: primary Node}."""
    return Pair(redis_cluster.queues_on_primaries(2), redis_cluster)


class Pair(dict):
    """{queue: its primary at the start}, and the cluster (owners change
    when a primary fails over)."""

    def __init__(self, d, cluster):
        super().__init__(d)
        self.cluster = cluster


@pytest.fixture
def fleet(redis_cluster, pair, build_dir, tmp_path, stub):
    """start(service settings, queue settings) -> a corrald serving both
    queues of pair (a worker each, concurrency 4) on a flushed cluster."""
    started = []
    key = tmp_path / "ai.key"
    key.write_text("sk-cluster-gate-test\n")

    def start(service="", queue="", concurrency=4):
        redis_cluster.flushall()
        seeds = redis_cluster.seeds.replace(",", ", ")
        text = (f"[redis]\ncluster = {seeds}\n\n"
                f"[pool]\nmin = 2\nmax = 2\nconcurrency = {concurrency}\ndrain_timeout = 5s\n\n"
                "[scale]\ntick = 250ms\n\n")
        for q in sorted(pair):
            text += (f"[queue {q}]\nhandler = http\nservice = ai\ntimeout = 3s\n"
                     f"backoff = 100ms..200ms\n{queue}\n\n")
        text += f"[service ai]\nurl = {stub.url}\napi_key_file = {key}\n{service}\n"
        c = Corrald.with_conf(build_dir, tmp_path, text)
        started.append(c)
        wait_until(lambda: sorted(c.workers().values()) == sorted(pair)
                   and all(gate_ready(redis_cluster, q) for q in pair), timeout=30,
                   what="a worker per queue, each queue declared with its gate")
        return c

    yield start
    for c in started:
        stop_clean(c)


def gate_ready(cluster, q):
    c = cluster.owner(cluster.keyslot(f"corral:{{{q}}}")).client()
    try:
        return c.hget(f"corral:{{{q}}}:conf", "service_gate") == "1"
    finally:
        c.close()


def svc_node(cluster):
    return cluster.owner(cluster.keyslot(SK))


def breaker(cluster):
    c = svc_node(cluster).client()
    try:
        return json.loads(c.fcall_ro("corral_breaker", 1, SK))
    finally:
        c.close()


def enqueue(pair, q, n, payload):
    c = pair[q].client()
    try:
        pipe = c.pipeline(transaction=False)
        for _ in range(n):
            pipe.fcall("corral_enqueue", 1, q, json.dumps(payload))
        return pipe.execute()
    finally:
        c.close()


def states(pair, q, ids):
    c = pair.cluster.owner(pair.cluster.keyslot(f"corral:{{{q}}}")).client()
    try:
        return [json.loads(c.fcall_ro("corral_job", 1, q, i))["state"] for i in ids]
    finally:
        c.close()


def stub_times(srv):
    with srv.stub.lock:
        return list(srv.stub.times)


def quiet(srv, for_s=1.5):
    """Waits until the stand-in got no request for for_s seconds -> its count."""
    last = [len(stub_times(srv)), time.monotonic()]

    def settled():
        n = len(stub_times(srv))
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] >= for_s

    wait_until(settled, timeout=30, what="the calls to stop")
    return last[0]


def ctl(build_dir, conf, *args):
    p = subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, *args],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_a_failing_service_trips_one_breaker_for_queues_on_two_shards(redis_cluster, pair,
                                                                      stub, fleet, build_dir):
    min_calls, slots = 6, 2 * 4
    with stub.stub.lock:
        stub.stub.default = {"status": 503}
    c = fleet(service=f"breaker_min_calls = {min_calls}\nbreaker_failure_rate = 50%\n"
                  "breaker_open_for = 60s\nbreaker_open_max = 60s",
          queue="max_attempts = 5")
    qa, qb = sorted(pair)
    ids = {qa: enqueue(pair, qa, 30, {"n": 1}), qb: enqueue(pair, qb, 30, {"n": 2})}
    wait_until(lambda: breaker(redis_cluster)["state"] == "open", timeout=20,
               what="the one breaker to open")
    calls = quiet(stub)
    # Calls under way when it tripped still end; then neither queue calls.
    assert calls <= min_calls + slots, calls
    assert "HTTP 503" in breaker(redis_cluster)["reason"]
    # Both queues' workers are held by the one breaker, whichever made the
    # calls that tripped it, and both queues hold jobs back.
    for q in (qa, qb):
        wait_until(lambda: any(f"queue={q} service=ai" in line and "breaker open" in line
                               for line in c.logs().splitlines()),
                   what=f"queue {q}'s worker held by the breaker")
        assert "queued" in states(pair, q, ids[q]) or "scheduled" in states(pair, q, ids[q])
    # The service keys all live on the service's node, none beside a queue.
    node = svc_node(redis_cluster).client()
    assert node.exists(SK) and node.hget(SK, "state") == "open"
    node.close()
    # corralctl reads it on the service's node: breaker, status; and resets it there.
    assert json.loads(ctl(build_dir, c.conf, "breaker", "ai", "--json"))["state"] == "open"
    (b,) = json.loads(ctl(build_dir, c.conf, "status", "--json"))["breakers"]
    assert b["service"] == "ai" and b["state"] == "open" and b["declared"]
    assert "ai" in ctl(build_dir, c.conf, "breaker") and "open" in ctl(build_dir, c.conf, "status")
    with stub.stub.lock:
        stub.stub.default = {}
    assert "reset" in ctl(build_dir, c.conf, "breaker", "ai", "reset")
    wait_until(lambda: all(s == "done" for q in ids for s in states(pair, q, ids[q])),
               timeout=30, what="every job of both queues after the reset")
    assert breaker(redis_cluster)["state"] == "closed"


def test_a_rate_holds_across_queues_on_two_shards(redis_cluster, pair, stub, fleet):
    fleet(service="rate = 5/s")
    qa, qb = sorted(pair)
    ids = {qa: enqueue(pair, qa, 10, {"a": 1}), qb: enqueue(pair, qb, 10, {"b": 1})}
    wait_until(lambda: all(s == "done" for q in ids for s in states(pair, q, ids[q])),
               timeout=30, what="every job of both queues")
    times = sorted(stub_times(stub))
    assert len(times) == 20
    # In any window of one second (less 50 ms between the grant and the
    # request's arrival), at most 5 requests arrived, from both queues.
    worst = max(sum(1 for t in times if s <= t < s + 0.95) for s in times)
    assert worst <= 5, worst
    assert times[-1] - times[0] >= 2.9  # 20 calls at 5/s need three more periods


def test_max_inflight_holds_across_queues_on_two_shards(redis_cluster, pair, stub, fleet):
    with stub.stub.lock:
        stub.stub.default = {"delay_ms": 200}
    fleet(service="max_inflight = 3")
    qa, qb = sorted(pair)
    ids = {qa: enqueue(pair, qa, 12, {}), qb: enqueue(pair, qb, 12, {})}
    wait_until(lambda: all(s == "done" for q in ids for s in states(pair, q, ids[q])),
               timeout=60, what="every job of both queues")
    # 2 workers x 4 slots = 8 would fit; the host's limit is 3 and is reached
    assert stub.stub.max_inflight == 3
    assert breaker(redis_cluster)["inflight"] == 0  # every permit reported


def test_a_token_budget_stops_queues_on_two_shards(redis_cluster, pair, stub, fleet):
    fleet(service="tokens = 1000/1h")
    qa, qb = sorted(pair)
    payload = {"stub": {"usage": "openai", "input_tokens": 150, "output_tokens": 50,
                        "delay_ms": 100}}
    ids = {qa: enqueue(pair, qa, 20, payload), qb: enqueue(pair, qb, 20, payload)}
    calls = quiet(stub, 2.0)
    # 5 calls of 200 tokens fill the budget; calls granted before the
    # usage of those under way came back may pass it, one per slot at most.
    assert 5 <= calls <= 5 + 2 * 4, calls
    b = breaker(redis_cluster)
    assert b["tokens_used"] >= 1000 and b["tokens_left"] == 0, b
    for q in (qa, qb):
        assert "queued" in states(pair, q, ids[q])


def test_permits_of_a_killed_worker_expire_and_the_service_serves_again(redis_cluster, pair,
                                                                         stub, fleet):
    with stub.stub.lock:
        stub.stub.default = {"delay_ms": 2500}
    c = fleet(service="max_inflight = 4")  # the queues' timeout: 3 s
    qa = sorted(pair)[0]
    ids = enqueue(pair, qa, 8, {})
    wait_until(lambda: breaker(redis_cluster)["inflight"] == 4, what="four permits held")
    (pid,) = [p for p, q in c.workers().items() if q == qa]
    os.kill(pid, signal.SIGKILL)
    # Its four permits still count on this host (the worker never reported
    # them): nothing more is called until they expire (timeout + 5 s).
    killed_at = time.monotonic()
    wait_until(lambda: breaker(redis_cluster)["inflight"] < 4, timeout=20,
               what="the dead worker's permits to expire")
    assert time.monotonic() - killed_at >= 2
    wait_until(lambda: all(s == "done" for s in states(pair, qa, ids)), timeout=60,
               what="every job, served again after the permits expired")
    assert stub.stub.max_inflight <= 4


def test_a_worker_keeps_its_reports_while_the_service_node_fails_over(redis_cluster, pair,
                                                                     stub, fleet):
    # Last in this file: it kills the primary holding the service's slot.
    with stub.stub.lock:
        stub.stub.default = {"delay_ms": 300}
    c = fleet(service="max_inflight = 4")
    qa = sorted(pair)[0]
    ids = enqueue(pair, qa, 40, {})
    wait_until(lambda: len(stub_times(stub)) >= 4, what="calls under way")
    redis_cluster.fail_over(svc_node(redis_cluster))  # it may hold a queue too
    wait_until(lambda: all(s == "done" for s in states(pair, qa, ids)), timeout=90,
               what="every job, after the service's node failed over")
    # Nothing leaked: every permit reported (or expired) at the promoted
    # replica, and the host's limit held throughout.
    wait_until(lambda: breaker(redis_cluster)["inflight"] == 0, timeout=20,
               what="no permit left in flight")
    assert stub.stub.max_inflight <= 4
    logs = c.logs()
    assert "Sanitizer" not in logs and "runtime error" not in logs
