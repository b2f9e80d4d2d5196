"""unique_key: a duplicate enqueue returns the existing job's id for as long
as that job's record exists; once it is cancelled, purged or expired the key
is free again."""
import pytest

from conftest import declare, enqueue, get_job, qkey, reserve, wait_until

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q, result_ttl_ms=1000)
    return r


def test_duplicate_returns_the_existing_id_and_adds_no_job(q):
    a = enqueue(q, Q, '{"v": 1}', unique_key="order-7")
    seq = q.get(f"{K}:seq")
    assert enqueue(q, Q, '{"v": 2}', unique_key="order-7", priority="high") == a
    assert q.get(f"{K}:seq") == seq
    assert q.lrange(f"{K}:q:1", 0, -1) == [a] and q.llen(f"{K}:q:0") == 0
    assert get_job(q, Q, a)["payload"] == '{"v": 1}'  # the first one stands
    b = enqueue(q, Q, unique_key="order-8")
    assert b != a


def test_duplicate_returns_the_existing_id_while_it_runs_and_after_it_is_done(q):
    a = enqueue(q, Q, unique_key="k")
    run = reserve(q, Q)[0][1]
    assert enqueue(q, Q, unique_key="k") == a
    q.fcall("corral_ack", 1, Q, "host1:1", a, run, "ok")
    assert enqueue(q, Q, unique_key="k") == a
    assert reserve(q, Q) == []


def test_unique_key_is_free_after_cancel(q):
    a = enqueue(q, Q, unique_key="k", delay_ms=60000)
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    b = enqueue(q, Q, unique_key="k")
    assert b != a
    assert get_job(q, Q, b)["state"] == "queued"
    assert enqueue(q, Q, unique_key="k") == b


def test_unique_key_is_free_after_the_dead_job_is_purged(q):
    a = enqueue(q, Q, unique_key="k")
    run = reserve(q, Q)[0][1]
    q.fcall("corral_fail", 1, Q, "host1:1", a, run, "permanent", "no")
    assert enqueue(q, Q, unique_key="k") == a  # the dead job still exists
    assert q.fcall("corral_dead_purge", 1, Q) == 1
    assert enqueue(q, Q, unique_key="k") != a


def test_unique_key_is_free_once_the_finished_job_expired(q):
    a = enqueue(q, Q, unique_key="k")
    run = reserve(q, Q)[0][1]
    q.fcall("corral_ack", 1, Q, "host1:1", a, run, "ok")
    wait_until(lambda: get_job(q, Q, a) is None, timeout=5, what="result_ttl to pass")
    b = enqueue(q, Q, unique_key="k")
    assert b != a and get_job(q, Q, b)["state"] == "queued"


def test_unique_keys_of_different_queues_are_independent(q):
    declare(q, "other")
    a = enqueue(q, Q, unique_key="k")
    b = enqueue(q, "other", unique_key="k")
    assert get_job(q, Q, a)["queue"] == Q
    assert get_job(q, "other", b)["queue"] == "other"
    assert q.llen(f"{qkey('other')}:q:1") == 1
