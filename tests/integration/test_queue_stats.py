"""corral_stats: the JSON that corralctl status and the scaler read: depth
(by priority), in-flight, scheduled, dead, rates, processing-time
percentiles and the oldest job's wait."""
import json
import time

import pytest

from conftest import declare, enqueue, qkey, reserve, stats, wait_until

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q)
    return r


def ack_all(r, jobs, queue=Q):
    for jid, run, *_ in jobs:
        assert r.fcall("corral_ack", 1, queue, "host1:1", jid, run, "ok") == ["done"]


def test_stats_of_a_fresh_queue_are_all_zero(q):
    s = stats(q, Q)
    assert s["name"] == Q and s["paused"] is False
    for key in ["depth", "inflight", "scheduled", "dead", "enqueued_per_s", "done_per_s",
                "failed_per_s", "proc_ms_p50", "proc_ms_p95", "oldest_wait_ms"]:
        assert s[key] == 0, key
    assert s["depth_by_priority"] == {"high": 0, "normal": 0, "low": 0}


def test_stats_count_jobs_in_every_state(q):
    for p in ["high", "high", "normal", "low", "low", "low"]:
        enqueue(q, Q, priority=p)
    enqueue(q, Q, delay_ms=60000)
    enqueue(q, Q, delay_ms=60000)
    running = reserve(q, Q, 3)  # both highs and the normal
    jid, run, *_ = running[0]
    q.fcall("corral_fail", 1, Q, "host1:1", jid, run, "permanent", "no")
    s = stats(q, Q)
    assert s["depth"] == 3
    assert s["depth_by_priority"] == {"high": 0, "normal": 0, "low": 3}
    assert s["inflight"] == 2
    assert s["scheduled"] == 2
    assert s["dead"] == 1


def test_stats_rates_follow_enqueues_acks_and_failures(q):
    assert stats(q, Q)["enqueued_per_s"] == 0
    for _ in range(6):
        enqueue(q, Q)
    s = stats(q, Q)
    assert s["enqueued_per_s"] > 0 and s["done_per_s"] == 0 and s["failed_per_s"] == 0
    jobs = reserve(q, Q, 6)
    ack_all(q, jobs[:4])
    for jid, run, *_ in jobs[4:]:
        q.fcall("corral_fail", 1, Q, "host1:1", jid, run, "retry", "503")
    s = stats(q, Q)
    assert s["done_per_s"] > 0 and s["failed_per_s"] > 0
    # the same window: six in, four done, two failed (rates are rounded to 0.001/s)
    assert s["enqueued_per_s"] / s["done_per_s"] == pytest.approx(6 / 4, rel=0.1)
    assert s["done_per_s"] / s["failed_per_s"] == pytest.approx(4 / 2, rel=0.1)


def test_processing_time_percentiles_reflect_how_long_jobs_ran(q):
    declare(q, "fast")
    for _ in range(10):
        enqueue(q, Q)
        enqueue(q, "fast")
    slow_jobs = reserve(q, Q, 10)
    ack_all(q, reserve(q, "fast", 10), queue="fast")
    time.sleep(0.2)  # the slow jobs' processing time that is being measured
    ack_all(q, slow_jobs)
    slow, fast = stats(q, Q), stats(q, "fast")
    assert 200 <= slow["proc_ms_p50"] <= 1000, slow
    assert slow["proc_ms_p50"] <= slow["proc_ms_p95"] <= 1000, slow
    assert fast["proc_ms_p95"] < 50, fast


def test_p95_sees_the_slow_tail_that_p50_does_not(q):
    for _ in range(20):
        enqueue(q, Q)
    jobs = reserve(q, Q, 20)
    ack_all(q, jobs[:18])
    time.sleep(0.3)  # two slow jobs: the tail
    ack_all(q, jobs[18:])
    s = stats(q, Q)
    assert s["proc_ms_p50"] < 50, s
    assert 200 <= s["proc_ms_p95"] <= 1000, s


def test_oldest_wait_grows_while_a_job_waits(q):
    enqueue(q, Q, priority="low")
    first = stats(q, Q)["oldest_wait_ms"]
    wait_until(lambda: stats(q, Q)["oldest_wait_ms"] >= first + 150, timeout=5,
               what="the wait to grow")
    enqueue(q, Q, priority="high")  # a newer job does not hide the older one
    assert stats(q, Q)["oldest_wait_ms"] >= first + 150
    reserve(q, Q, 2)
    assert stats(q, Q)["oldest_wait_ms"] == 0


def test_stats_show_a_paused_queue(q):
    q.fcall("corral_pause", 1, Q)
    assert stats(q, Q)["paused"] is True
    q.fcall("corral_resume", 1, Q)
    assert stats(q, Q)["paused"] is False


def test_stats_counters_expire(q):
    enqueue(q, Q)
    buckets = q.keys(f"{K}:st:*")
    assert buckets
    assert all(0 < q.ttl(b) <= 7200 for b in buckets)
    json.dumps(stats(q, Q))  # plain JSON
