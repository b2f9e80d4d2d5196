"""The dead-letter list (corral_dead_retry, corral_dead_purge) and
corral_cancel."""
import pytest
import redis

from conftest import db_snapshot, declare, enqueue, get_job, qkey, reserve

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q, max_attempts=3)
    return r


def kill(r, ids):
    """Reserves and permanently fails the given queued jobs."""
    for jid, run, *_ in reserve(r, Q, len(ids)):
        assert jid in ids
        r.fcall("corral_fail", 1, Q, "host1:1", jid, run, "permanent", f"bad {jid}")


def test_dead_list_holds_the_dead_jobs_newest_first(q):
    ids = [enqueue(q, Q) for _ in range(3)]
    kill(q, ids)
    assert q.lrange(f"{K}:dead", 0, -1) == ids[::-1]


def test_retry_by_id_requeues_the_job_with_attempts_reset(q):
    ids = [enqueue(q, Q) for _ in range(3)]
    kill(q, ids)
    assert q.fcall("corral_dead_retry", 1, Q, ids[1]) == 1
    j = get_job(q, Q, ids[1])
    assert j["state"] == "queued" and j["attempts"] == 0
    assert "finished_ms" not in j
    assert q.lrange(f"{K}:dead", 0, -1) == [ids[2], ids[0]]
    assert q.llen(f"{K}:wake") >= 1
    assert not q.exists(f"{K}:fin:{ids[1]}")  # awaiters wait for the new outcome
    got = reserve(q, Q)[0]
    assert got[0] == ids[1] and got[2] == 1 and got[3] == 3


def test_retry_all_requeues_every_dead_job(q):
    ids = [enqueue(q, Q) for _ in range(4)]
    kill(q, ids)
    assert q.fcall("corral_dead_retry", 1, Q, "--all") == 4
    assert q.llen(f"{K}:dead") == 0
    assert {get_job(q, Q, i)["state"] for i in ids} == {"queued"}
    assert sorted(j[0] for j in reserve(q, Q, 10)) == sorted(ids)
    assert q.fcall("corral_dead_retry", 1, Q, "--all") == 0


@pytest.mark.parametrize("what", ["queued", "done", "unknown"])
def test_retry_of_a_job_that_is_not_dead_is_an_error_and_changes_nothing(q, what):
    jid = enqueue(q, Q)
    if what == "done":
        run = reserve(q, Q)[0][1]
        q.fcall("corral_ack", 1, Q, "host1:1", jid, run, "ok")
    if what == "unknown":
        jid = "777"
    before = db_snapshot(q)
    with pytest.raises(redis.ResponseError) as e:
        q.fcall("corral_dead_retry", 1, Q, jid)
    want = {"queued": "state queued", "done": "state done", "unknown": "no such job"}[what]
    assert f"job {jid} is not dead ({want})" in str(e.value)
    assert db_snapshot(q) == before


def test_retry_of_a_batch_with_one_live_job_is_refused_as_a_whole(q):
    dead, live = enqueue(q, Q), enqueue(q, Q)
    kill(q, [dead])
    before = db_snapshot(q)
    with pytest.raises(redis.ResponseError, match="is not dead"):
        q.fcall("corral_dead_retry", 1, Q, dead, live)
    assert db_snapshot(q) == before


def test_purge_deletes_the_dead_jobs_and_nothing_else(q):
    ids = [enqueue(q, Q) for _ in range(3)]
    kill(q, ids)
    alive = enqueue(q, Q)
    assert q.fcall("corral_dead_purge", 1, Q) == 3
    assert q.llen(f"{K}:dead") == 0
    for i in ids:
        assert get_job(q, Q, i) is None
        assert not q.exists(f"{K}:job:{i}") and not q.exists(f"{K}:fin:{i}")
    assert get_job(q, Q, alive)["state"] == "queued"
    assert q.fcall("corral_dead_purge", 1, Q) == 0


# --- cancel --------------------------------------------------------------


def test_cancel_a_queued_job(q):
    a, b = enqueue(q, Q), enqueue(q, Q)
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    j = get_job(q, Q, a)
    assert j["state"] == "cancelled" and "finished_ms" in j
    assert q.lrange(f"{K}:q:1", 0, -1) == [b]
    assert q.lrange(f"{K}:fin:{a}", 0, -1) == ["cancelled"]
    assert [j[0] for j in reserve(q, Q, 5)] == [b]


def test_cancel_a_scheduled_job(q):
    a = enqueue(q, Q, delay_ms=100)
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    assert q.zcard(f"{K}:sched") == 0
    assert q.fcall("corral_promote", 1, Q) == 0
    assert get_job(q, Q, a)["state"] == "cancelled"


def test_cancel_a_dead_job_takes_it_off_the_dead_list(q):
    a = enqueue(q, Q)
    kill(q, [a])
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    assert q.llen(f"{K}:dead") == 0


@pytest.mark.parametrize("state", ["done", "cancelled"])
def test_cancel_of_a_finished_job_is_an_error_and_changes_nothing(q, state):
    a = enqueue(q, Q)
    if state == "done":
        run = reserve(q, Q)[0][1]
        if state == "done":
            q.fcall("corral_ack", 1, Q, "host1:1", a, run, "ok")
    else:
        q.fcall("corral_cancel", 1, Q, a)
    before = db_snapshot(q)
    with pytest.raises(redis.ResponseError, match=f"job {a} is {state} and cannot be cancelled"):
        q.fcall("corral_cancel", 1, Q, a)
    assert db_snapshot(q) == before


def test_cancel_of_an_unknown_job_is_an_error(q):
    with pytest.raises(redis.ResponseError, match='queue "jobs": no job 404'):
        q.fcall("corral_cancel", 1, Q, "404")
