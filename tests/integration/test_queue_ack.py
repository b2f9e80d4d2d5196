"""corral_ack: results, the max_result bound, and the run token that keeps
an old run from reporting over a newer one (at-least-once, no clobbering)."""
import pytest

from conftest import (db_snapshot, declare, enqueue, get_job, qkey, reserve,
                      wait_until)

Q = "jobs"
K = qkey(Q)


def ack(r, jid, run, result="{}", worker="host1:1"):
    return r.fcall("corral_ack", 1, Q, worker, jid, run, result)[0]


def expire_and_reclaim(r):
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) >= 1, timeout=5, what="lease expiry")


@pytest.fixture
def q(r):
    declare(r, Q, max_result=100)
    return r


def test_ack_stores_the_result_and_the_job_is_done(q):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    assert ack(q, jid, run, '{"answer": 42}') == "done"
    j = get_job(q, Q, jid)
    assert j["state"] == "done" and j["result"] == '{"answer": 42}'
    assert q.zscore(f"{K}:active", jid) is None
    assert q.lrange(f"{K}:fin:{jid}", 0, -1) == ["done"]
    # kept for result_ttl (default 24 h), then gone
    assert 0 < q.pttl(f"{K}:job:{jid}") <= 86400000
    assert 0 < q.pttl(f"{K}:fin:{jid}") <= 86400000


def test_ack_of_many_jobs_in_one_call_reports_each(q):
    for _ in range(3):
        enqueue(q, Q)
    jobs = reserve(q, Q, 3)
    args = []
    for jid, run, *_ in jobs:
        args += [jid, run, f"r{jid}"]
    args[-2] = "999"  # the last one with a wrong run token
    assert q.fcall("corral_ack", 1, Q, "host1:1", *args) == ["done", "done", "STALE"]
    assert [get_job(q, Q, j[0])["state"] for j in jobs] == ["done", "done", "active"]


def test_result_of_exactly_max_result_bytes_is_stored(q):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    assert ack(q, jid, run, "x" * 100) == "done"
    assert get_job(q, Q, jid)["result"] == "x" * 100


def test_result_over_max_result_makes_the_job_dead_with_a_clear_error(q):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    assert ack(q, jid, run, "x" * 101) == "dead"
    j = get_job(q, Q, jid)
    assert j["state"] == "dead"
    assert j["error"] == "result is 101 bytes, limit is 100 (max_result)"
    assert "result" not in j
    assert q.lrange(f"{K}:dead", 0, -1) == [jid]
    assert q.lrange(f"{K}:fin:{jid}", 0, -1) == ["dead"]
    assert q.zcard(f"{K}:active") == 0


@pytest.mark.parametrize("token", ["next", "abc", ""])
def test_ack_with_a_wrong_run_token_is_refused_and_changes_nothing(q, token):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    wrong = str(int(run) + 1) if token == "next" else token
    before = db_snapshot(q)
    assert ack(q, jid, wrong, "forged") == "STALE"
    assert db_snapshot(q) == before
    assert get_job(q, Q, jid)["state"] == "active"


def test_ack_of_a_job_that_never_ran_is_refused(q):
    jid = enqueue(q, Q)
    before = db_snapshot(q)
    assert ack(q, jid, "0", "forged") == "STALE"
    assert db_snapshot(q) == before


def test_ack_of_an_unknown_job_is_refused(q):
    before = db_snapshot(q)
    assert ack(q, "4242", "1") == "STALE"
    assert db_snapshot(q) == before


def test_second_ack_of_the_same_run_is_stale(q):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    assert ack(q, jid, run, "first") == "done"
    assert ack(q, jid, run, "second") == "STALE"
    assert get_job(q, Q, jid)["result"] == "first"


def test_late_ack_after_reclaim_is_refused_as_reclaimed_and_the_job_runs_again(r):
    """Version 4: the reclaimed run's outcome is dropped, never recorded
    over the requeue (test_queue_final_states.py has every case)."""
    declare(r, Q, lease_ms=100)
    jid = enqueue(r, Q)
    run = reserve(r, Q)[0][1]
    expire_and_reclaim(r)
    assert get_job(r, Q, jid)["state"] == "queued"
    assert ack(r, jid, run, "late") == "RECLAIMED"
    j = get_job(r, Q, jid)
    assert j["state"] == "queued" and "result" not in j and j["attempts"] == 1
    assert reserve(r, Q)[0][0] == jid  # it runs again: at-least-once


def test_ack_of_an_old_run_after_a_newer_run_started_is_stale_and_clobbers_nothing(r):
    declare(r, Q, lease_ms=100)
    jid = enqueue(r, Q)
    old = reserve(r, Q, worker="host1:1")[0][1]
    expire_and_reclaim(r)
    new = reserve(r, Q, worker="host2:1")[0][1]
    assert new != old
    before = db_snapshot(r)
    assert ack(r, jid, old, "old result", worker="host1:1") == "STALE"
    assert r.fcall("corral_fail", 1, Q, "host1:1", jid, old, "retry", "old") == ["STALE"]
    assert r.fcall("corral_renew", 1, Q, "host1:1", jid, old) == ["STALE"]
    assert db_snapshot(r) == before
    j = get_job(r, Q, jid)
    assert j["state"] == "active" and j["worker"] == "host2:1" and "result" not in j
    assert ack(r, jid, new, "new result", worker="host2:1") == "done"
    assert get_job(r, Q, jid)["result"] == "new result"


def test_a_run_from_before_a_flushall_cannot_report_on_the_new_job_of_the_same_id(r):
    """Ids and run numbers start again after FLUSHALL (or a failover to an
    empty replica): a run still going from before holds the same id and run
    token as the new job's first run, but not the same worker."""
    declare(r, Q)
    jid = enqueue(r, Q)
    old = reserve(r, Q, worker="host1:7")[0][1]
    r.flushall()
    declare(r, Q)
    assert enqueue(r, Q) == jid
    assert reserve(r, Q, worker="host2:3")[0][1] == old  # same id, same run token
    before = db_snapshot(r)
    assert ack(r, jid, old, "from before", worker="host1:7") == "STALE"
    assert r.fcall("corral_fail", 1, Q, "host1:7", jid, old, "permanent", "x") == ["STALE"]
    assert r.fcall("corral_defer", 1, Q, "host1:7", jid, old, 10, "", "") == ["STALE"]
    assert r.fcall("corral_renew", 1, Q, "host1:7", jid, old) == ["STALE"]
    assert db_snapshot(r) == before
    assert ack(r, jid, old, "new result", worker="host2:3") == "done"
    assert get_job(r, Q, jid)["result"] == "new result"
