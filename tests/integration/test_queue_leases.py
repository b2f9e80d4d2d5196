"""Leases: corral_renew extends them; corral_reclaim takes back expired ones
(front of the level, or dead with the reason once attempts are used up);
corral_reclaim_worker takes back one worker's or one host's at once."""
import threading

import pytest
import redis

from conftest import (db_snapshot, declare, enqueue, get_job, qkey, reserve,
                      server_ms, wait_until)

Q = "jobs"
K = qkey(Q)


def renew(r, jid, run, worker="host1:1"):
    return r.fcall("corral_renew", 1, Q, worker, jid, run)[0]


def reclaim(r):
    return r.fcall("corral_reclaim", 1, Q)


def wait_expired(r, jid):
    """Waits until the server clock is past the job's lease deadline."""
    deadline = r.zscore(f"{K}:active", jid)
    wait_until(lambda: server_ms(r) > deadline, timeout=5, what="the lease to expire")


# --- renew ---------------------------------------------------------------


def test_renew_extends_the_lease_from_now(r):
    declare(r, Q, lease_ms=1000)
    jid = enqueue(r, Q)
    run = reserve(r, Q)[0][1]
    first = r.zscore(f"{K}:active", jid)
    t_started = server_ms(r)
    wait_until(lambda: server_ms(r) >= t_started + 50, timeout=5, what="the clock to move")
    t0 = server_ms(r)
    assert renew(r, jid, run) == "active"
    t1 = server_ms(r)
    assert t0 + 1000 <= r.zscore(f"{K}:active", jid) <= t1 + 1000
    assert r.zscore(f"{K}:active", jid) > first


def test_renewed_lease_is_not_reclaimed(r):
    declare(r, Q, lease_ms=300)
    jid = enqueue(r, Q)
    run = reserve(r, Q)[0][1]
    deadline = r.zscore(f"{K}:active", jid)
    wait_until(lambda: server_ms(r) >= deadline - 150, timeout=5, what="half the lease")
    assert renew(r, jid, run) == "active"
    wait_until(lambda: server_ms(r) > deadline + 50, timeout=5, what="the first deadline")
    assert reclaim(r) == 0
    assert get_job(r, Q, jid)["state"] == "active"


def test_renew_of_a_stale_or_unknown_run_is_refused_and_changes_nothing(r):
    declare(r, Q)
    jid = enqueue(r, Q)
    run = reserve(r, Q)[0][1]
    before = db_snapshot(r)
    assert renew(r, jid, str(int(run) + 1)) == "STALE"
    assert renew(r, "9999", "1") == "STALE"
    assert db_snapshot(r) == before


def test_renew_of_many_jobs_reports_each(r):
    declare(r, Q)
    a, b = enqueue(r, Q), enqueue(r, Q)
    (_, ra, *_), (_, rb, *_) = reserve(r, Q, 2)
    assert r.fcall("corral_renew", 1, Q, "host1:1", a, ra, b, "77") == ["active", "STALE"]


def test_renew_after_a_reclaim_answers_reclaimed_and_leaves_the_job_queued(r):
    declare(r, Q, lease_ms=100)
    jid = enqueue(r, Q)
    run = reserve(r, Q)[0][1]
    wait_until(lambda: reclaim(r) == 1, timeout=5, what="lease expiry")
    assert get_job(r, Q, jid)["state"] == "queued"
    before = db_snapshot(r)
    assert renew(r, jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    assert reserve(r, Q)[0][0] == jid


def test_renew_after_a_newer_run_started_is_refused(r):
    declare(r, Q, lease_ms=100)
    jid = enqueue(r, Q)
    old = reserve(r, Q)[0][1]
    wait_until(lambda: reclaim(r) == 1, timeout=5, what="lease expiry")
    reserve(r, Q, worker="host2:1")
    assert renew(r, jid, old) == "STALE"
    assert get_job(r, Q, jid)["worker"] == "host2:1"


# --- reclaim of expired leases -------------------------------------------


def test_expired_lease_is_requeued_at_the_front_of_its_level(r):
    declare(r, Q, lease_ms=100)
    lost = enqueue(r, Q)
    reserve(r, Q, worker="host1:1")
    waiting = [enqueue(r, Q) for _ in range(2)]
    r.delete(f"{K}:wake")  # as if idle workers had taken the markers
    wait_until(lambda: reclaim(r) == 1, timeout=5, what="lease expiry")
    assert r.lrange(f"{K}:q:1", 0, -1) == [lost] + waiting
    j = get_job(r, Q, lost)
    assert j["state"] == "queued" and j["attempts"] == 1
    assert "lease expired" in j["error"] and "host1:1" in j["error"]
    assert r.zscore(f"{K}:active", lost) is None
    assert r.llen(f"{K}:wake") >= 1  # workers are woken for it
    again = reserve(r, Q, worker="host2:1")[0]
    assert again[0] == lost and again[2] == 2


def test_reclaim_leaves_unexpired_leases_alone(r):
    declare(r, Q, lease_ms=100)
    short = enqueue(r, Q)
    reserve(r, Q)
    declare(r, Q, lease_ms=60000)  # later leases of this queue are long
    long_ = enqueue(r, Q)
    reserve(r, Q)
    wait_expired(r, short)
    assert reclaim(r) == 1
    assert get_job(r, Q, short)["state"] == "queued"
    assert get_job(r, Q, long_)["state"] == "active"
    assert reclaim(r) == 0


def test_expired_lease_with_attempts_used_up_is_dead_with_the_reason(r):
    declare(r, Q, lease_ms=100, max_attempts=2)
    jid = enqueue(r, Q)
    for attempt in (1, 2):
        reserve(r, Q, worker="w9:42")
        wait_until(lambda: reclaim(r) == 1, timeout=5, what=f"lease {attempt} to expire")
    j = get_job(r, Q, jid)
    assert j["state"] == "dead" and j["attempts"] == 2
    assert "lease expired" in j["error"]
    assert "w9:42" in j["error"] and "attempt 2 of 2" in j["error"]
    assert r.lrange(f"{K}:dead", 0, -1) == [jid]
    assert r.lrange(f"{K}:fin:{jid}", 0, -1) == ["dead"]


def test_concurrent_reclaim_requeues_each_job_exactly_once(r, redis_server):
    declare(r, Q, lease_ms=100)
    ids = [enqueue(r, Q) for _ in range(100)]
    reserve(r, Q, 100)
    wait_expired(r, ids[-1])
    results = [None, None]
    go = threading.Barrier(2)

    def reclaimer(k):
        c = redis_server.client(decode_responses=True)
        go.wait()
        n = 0
        for _ in range(20):
            n += c.fcall("corral_reclaim", 1, Q, 5)  # small batches interleave
        results[k] = n
        c.close()

    threads = [threading.Thread(target=reclaimer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(results) == 100
    ready = r.lrange(f"{K}:q:1", 0, -1)
    assert sorted(ready, key=int) == ids  # each once, none lost, none twice
    assert r.zcard(f"{K}:active") == 0
    assert all(get_job(r, Q, i)["attempts"] == 1 for i in ids)


# --- reclaim of a named worker's leases ----------------------------------


@pytest.fixture
def three_workers(r):
    declare(r, Q)
    for _ in range(8):
        enqueue(r, Q)
    return {w: [j[0] for j in reserve(r, Q, 2, worker=w)]
            for w in ["hostA:1", "hostA:2", "hostAB:1", "hostB:1"]}


def test_reclaim_worker_takes_back_exactly_that_workers_leases(r, three_workers):
    jobs = three_workers
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1") == 2
    for w, ids in jobs.items():
        want = "queued" if w == "hostA:1" else "active"
        assert [get_job(r, Q, i)["state"] for i in ids] == [want, want], w
    assert sorted(r.lrange(f"{K}:q:1", 0, -1)) == sorted(jobs["hostA:1"])
    assert "worker died" in get_job(r, Q, jobs["hostA:1"][0])["error"]
    assert r.llen(f"{K}:wake") >= 1
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1") == 0


def test_jobs_reclaimed_together_keep_their_fifo_order_at_the_front(r):
    declare(r, Q)
    ids = [enqueue(r, Q) for _ in range(4)]
    reserve(r, Q, 3, worker="hostA:1")
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1") == 3
    assert r.lrange(f"{K}:q:1", 0, -1) == ids
    assert [j[0] for j in reserve(r, Q, 4)] == ids


def test_reclaim_worker_with_a_host_prefix_takes_back_every_worker_of_that_host(
        r, three_workers):
    jobs = three_workers
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:*") == 4
    for w, ids in jobs.items():
        want = "queued" if w.startswith("hostA:") else "active"
        assert {get_job(r, Q, i)["state"] for i in ids} == {want}, w


def test_reclaim_worker_keep_takes_back_only_the_jobs_the_worker_never_saw(r):
    """A live worker whose reserve reply was lost: the jobs it still holds
    stay leased; the others go back to the front with their attempt given
    back and their last error kept; other workers' leases are untouched."""
    declare(r, Q, max_attempts=1)
    ids = [enqueue(r, Q) for _ in range(5)]
    held = reserve(r, Q, 1, worker="hostA:1")[0][0]
    other = reserve(r, Q, 1, worker="hostA:2")[0][0]
    unseen = [j[0] for j in reserve(r, Q, 2, worker="hostA:1")]
    r.hset(f"{K}:job:{unseen[0]}", "error", "HTTP 503: busy")
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1", "keep", held) == 2
    assert get_job(r, Q, held)["state"] == "active"
    assert get_job(r, Q, other)["state"] == "active"
    for i in unseen:  # max_attempts = 1: a spent attempt would have killed them
        j = get_job(r, Q, i)
        assert j["state"] == "queued" and j["attempts"] == 0, j
    assert get_job(r, Q, unseen[0])["error"] == "HTTP 503: busy"
    assert "error" not in get_job(r, Q, unseen[1])
    assert r.lrange(f"{K}:q:1", 0, -1) == unseen + [ids[4]]
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1", "keep", held) == 0
    assert r.fcall("corral_reclaim_worker", 1, Q, "hostA:1", "keep") == 1  # keeps nothing


@pytest.mark.parametrize("args, msg", [
    (["hostA:*", "keep"], "needs one worker id, not a host prefix"),
    (["hostA:1", "spare", "1"], 'the second argument must be "keep"'),
])
def test_reclaim_worker_keep_refuses_a_host_prefix_or_another_word(r, three_workers, args, msg):
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError, match=msg):
        r.fcall("corral_reclaim_worker", 1, Q, *args)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("who", ["", "*"])
def test_reclaim_worker_refuses_an_empty_or_match_all_pattern(r, three_workers, who):
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError, match="a worker id or host prefix is required"):
        r.fcall("corral_reclaim_worker", 1, Q, who)
    assert db_snapshot(r) == before
