"""corral_reserve: up to N jobs in one call, each under a lease; pause and
resume; concurrent reservers never share a job."""
import threading

import pytest
import redis

from conftest import (db_snapshot, declare, enqueue, get_job, qkey, reserve,
                      server_ms)

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q, lease_ms=20000)
    return r


def test_reserve_returns_up_to_n_jobs(q):
    ids = [enqueue(q, Q) for _ in range(7)]
    first = reserve(q, Q, 5)
    assert [j[0] for j in first] == ids[:5]
    rest = reserve(q, Q, 5)
    assert [j[0] for j in rest] == ids[5:]
    assert reserve(q, Q, 5) == []


def test_each_reserved_job_is_active_under_a_lease_deadline(q):
    for _ in range(3):
        enqueue(q, Q)
    t0 = server_ms(q)
    jobs = reserve(q, Q, 3, worker="w2:99")
    t1 = server_ms(q)
    assert q.zcard(f"{K}:active") == 3
    for jid, run, attempts, *_ in jobs:
        assert t0 + 20000 <= q.zscore(f"{K}:active", jid) <= t1 + 20000
        j = get_job(q, Q, jid)
        assert j["state"] == "active" and j["worker"] == "w2:99"
        assert attempts == j["attempts"] == 1
        assert run == str(j["run"]) and run != "0"
    assert q.llen(f"{K}:q:1") == 0


def test_every_run_gets_a_new_run_token(r):
    declare(r, Q, lease_ms=20000)
    jid = enqueue(r, Q)
    runs = []
    for _ in range(3):
        got = reserve(r, Q)[0]
        runs.append(got[1])
        # hand it back as if its worker died, so it runs again
        assert r.fcall("corral_reclaim_worker", 1, Q, "host1:1") == 1
    assert len(set(runs)) == 3
    assert get_job(r, Q, jid)["attempts"] == 3


def test_paused_queue_reserves_nothing_and_resume_wakes_workers(q):
    ids = [enqueue(q, Q) for _ in range(3)]
    assert q.fcall("corral_pause", 1, Q) == "OK"
    assert reserve(q, Q, 10) == []
    assert q.llen(f"{K}:wake") == 0  # nothing to wake anyone for
    later = enqueue(q, Q)  # enqueue goes on while paused, without waking anyone
    assert q.llen(f"{K}:wake") == 0
    assert all(get_job(q, Q, i)["state"] == "queued" for i in ids + [later])
    assert q.fcall("corral_resume", 1, Q) == "OK"
    assert q.llen(f"{K}:wake") >= 1
    assert q.blpop([f"{K}:wake"], timeout=1) is not None
    assert [j[0] for j in reserve(q, Q, 10)] == ids + [later]


def test_pause_is_fleet_wide_for_every_reserver(q, redis_server):
    enqueue(q, Q)
    q.fcall("corral_pause", 1, Q)
    other = redis_server.client(decode_responses=True)
    try:
        assert reserve(other, Q, worker="host2:1") == []
    finally:
        other.close()


def test_reserve_refuses_a_bad_count_or_worker_id(q):
    enqueue(q, Q)
    before = db_snapshot(q)
    for n in [0, -1, 1001, "x"]:
        with pytest.raises(redis.ResponseError, match="reserve count must be an integer"):
            q.fcall("corral_reserve", 1, Q, "host1:1", n)
    for worker in ["", "w" * 129]:
        with pytest.raises(redis.ResponseError, match="worker id must be 1-128 bytes"):
            q.fcall("corral_reserve", 1, Q, worker, 1)
    assert db_snapshot(q) == before


def test_concurrent_reservers_never_get_the_same_job(q, redis_server):
    ids = [enqueue(q, Q) for _ in range(400)]
    got = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(k):
        c = redis_server.client(decode_responses=True)
        start.wait()
        while True:
            batch = reserve(c, Q, 7, worker=f"host1:{k}")
            if not batch:
                break
            got[k].extend(j[0] for j in batch)
        c.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    taken = [i for g in got for i in g]
    assert sorted(taken, key=int) == ids  # every job once, none twice
    assert q.zcard(f"{K}:active") == 400
