"""Wake markers: idle workers BLPOP <prefix>:{Q}:wake instead of polling.
Whatever makes a job ready pushes a marker; a reserve that empties the queue
clears them so nobody wakes for nothing."""
import threading
import time

import pytest

from conftest import declare, enqueue, qkey, reserve, wait_blocked, wait_until

Q = "jobs"
K = qkey(Q)
WAKE = f"{K}:wake"


@pytest.fixture
def q(r):
    declare(r, Q, lease_ms=100, backoff_base_ms=50, backoff_cap_ms=50)
    return r


def test_enqueue_pushes_a_marker_that_blpop_returns_at_once(q):
    enqueue(q, Q)
    t0 = time.monotonic()
    assert q.blpop([WAKE], timeout=2) == (WAKE, "1")
    assert time.monotonic() - t0 < 0.5


def test_an_idle_worker_blocked_on_the_marker_list_is_woken_by_an_enqueue(q, redis_server):
    got = {}

    def idle_worker():
        c = redis_server.client(decode_responses=True)
        t0 = time.monotonic()
        got["marker"] = c.blpop([WAKE], timeout=5)
        got["elapsed"] = time.monotonic() - t0
        got["jobs"] = reserve(c, Q, 10) if got["marker"] else []
        c.close()

    t = threading.Thread(target=idle_worker, daemon=True)
    t.start()
    wait_blocked(q, 1, "blpop")
    jid = enqueue(q, Q)
    t.join(timeout=5)
    assert got["marker"] == (WAKE, "1")
    assert got["elapsed"] < 4
    assert [j[0] for j in got["jobs"]] == [jid]


def test_reserve_that_empties_the_queue_clears_the_markers(q):
    for _ in range(3):
        enqueue(q, Q)
    assert q.llen(WAKE) == 3
    reserve(q, Q, 2)
    assert q.llen(WAKE) > 0  # a job is left: someone should come for it
    reserve(q, Q, 2)
    assert q.llen(WAKE) == 0


def test_markers_are_bounded(q):
    pipe = q.pipeline(transaction=False)
    for _ in range(3000):
        pipe.fcall("corral_enqueue", 1, Q, "{}")
    pipe.execute()
    assert 0 < q.llen(WAKE) <= 1024 + 64


def test_a_delayed_job_wakes_workers_when_it_comes_due_not_before(q):
    enqueue(q, Q, delay_ms=100)
    assert q.llen(WAKE) == 0
    wait_until(lambda: q.fcall("corral_promote", 1, Q) == 1, timeout=5, what="promotion")
    assert q.blpop([WAKE], timeout=1) is not None


def test_a_reserve_that_takes_exactly_the_last_jobs_clears_the_markers(q):
    enqueue(q, Q)
    enqueue(q, Q)
    assert len(reserve(q, Q, 2)) == 2
    assert q.llen(f"{K}:q:1") == 0
    assert q.llen(WAKE) == 0


def test_a_reclaimed_lease_wakes_workers(q):
    enqueue(q, Q)
    reserve(q, Q, 2)
    assert q.llen(WAKE) == 0
    wait_until(lambda: q.fcall("corral_reclaim", 1, Q) == 1, timeout=5, what="lease expiry")
    assert q.llen(WAKE) >= 1


def test_a_dead_job_retried_wakes_workers(q):
    jid = enqueue(q, Q)
    run = reserve(q, Q, 2)[0][1]
    q.fcall("corral_fail", 1, Q, "host1:1", jid, run, "permanent", "no")
    assert q.llen(WAKE) == 0
    q.fcall("corral_dead_retry", 1, Q, jid)
    assert q.llen(WAKE) >= 1


def test_a_paused_queue_pushes_no_markers_until_resumed(q):
    q.fcall("corral_pause", 1, Q)
    enqueue(q, Q)
    assert q.llen(WAKE) == 0
    q.fcall("corral_resume", 1, Q)
    assert q.llen(WAKE) >= 1
