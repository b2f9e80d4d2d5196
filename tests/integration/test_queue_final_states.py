"""Final states are final (docs/invariants.md): a job that ended done, dead
or cancelled changes only by an operator's corral_dead_retry, and a run
whose lease was taken back (corral_reclaim, corral_reclaim_worker) can no
longer report: its ack, fail, defer and renew answer RECLAIMED and write
nothing, while a run that is simply not the job's current one answers
STALE."""
import pytest

from conftest import (db_snapshot, declare, enqueue, get_job, qkey, reserve,
                      stats, wait_until)
from worker_fixtures import HTTP_Q, Q as WQ, await_end, job, stub_stats
from worker_fixtures import enqueue as wenqueue
from worker_fixtures import make_worker, stub  # noqa: F401 (fixtures)

Q = "jobs"
K = qkey(Q)
W = "host1:1"


def outcome(r, kind, jid, run, worker=W):
    """One outcome (or renew) of one run -> its status word."""
    if kind == "ack":
        args = [jid, run, '{"late": true}']
    elif kind == "fail":
        args = [jid, run, "retry", "HTTP 503"]
    elif kind == "fail_permanent":
        args = [jid, run, "permanent", "HTTP 400"]
    elif kind == "defer":
        args = [jid, run, 0, "", ""]
    elif kind == "defer_later":
        args = [jid, run, 5000, "throttle", "HTTP 429"]
    else:
        args = [jid, run]
    fn = {"fail_permanent": "fail", "defer_later": "defer"}.get(kind, kind)
    got = r.fcall(f"corral_{fn}", 1, Q, worker, *args)
    assert len(got) == 1
    return got[0]


KINDS = ["ack", "fail", "fail_permanent", "defer", "defer_later", "renew"]


def expire(r, jid):
    """Makes the job's lease due now, as if lease_ms had passed."""
    assert r.zadd(f"{K}:active", {jid: 0}, xx=True, ch=True) == 1


def test_late_ack_of_a_job_that_ended_dead_by_lease_expiry_is_refused_as_reclaimed(r):
    """The reproduction of issue 19.1 with raw FCALLs and a real lease."""
    declare(r, Q, lease_ms=1000, max_attempts=1)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) == 1, timeout=5,
               what="the 1 s lease to expire")
    assert get_job(r, Q, jid)["state"] == "dead"
    before, st = db_snapshot(r), stats(r, Q)
    assert r.fcall("corral_ack", 1, Q, W, jid, run, '{"made": "it"}') == ["RECLAIMED"]
    assert db_snapshot(r) == before
    j = get_job(r, Q, jid)
    assert j["state"] == "dead" and "result" not in j
    assert r.lrange(f"{K}:dead", 0, -1) == [jid]
    assert r.lrange(f"{K}:fin:{jid}", 0, -1) == ["dead"]
    after = stats(r, Q)
    assert (after["died"], after["lost"], after["done_per_s"]) == \
        (st["died"], st["lost"], st["done_per_s"]) == (1, 1, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_reclaimed_run_that_ended_dead_cannot_report_or_renew(r, kind):
    declare(r, Q, max_attempts=1)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    expire(r, jid)
    assert r.fcall("corral_reclaim", 1, Q) == 1
    before = db_snapshot(r)
    assert outcome(r, kind, jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    assert get_job(r, Q, jid)["state"] == "dead"


@pytest.mark.parametrize("kind", KINDS)
def test_a_reclaimed_run_of_a_requeued_job_cannot_report_or_renew(r, kind):
    declare(r, Q, max_attempts=3)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    expire(r, jid)
    assert r.fcall("corral_reclaim", 1, Q) == 1
    before = db_snapshot(r)
    assert outcome(r, kind, jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    j = get_job(r, Q, jid)
    assert j["state"] == "queued" and j["attempts"] == 1
    assert r.lrange(f"{K}:q:1", 0, -1) == [jid]
    # the job runs again, as a new run
    again = reserve(r, Q, worker="host2:1")[0]
    assert again[0] == jid and again[1] == str(int(run) + 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("who", [W, "host1:*"])
def test_a_run_taken_back_by_reclaim_worker_cannot_report_or_renew(r, kind, who):
    declare(r, Q, max_attempts=2)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    assert r.fcall("corral_reclaim_worker", 1, Q, who) == 1
    before = db_snapshot(r)
    assert outcome(r, kind, jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    assert get_job(r, Q, jid)["state"] == "queued"


@pytest.mark.parametrize("kind", ["ack", "fail", "renew"])
def test_a_run_given_back_by_reclaim_worker_keep_cannot_report(r, kind):
    declare(r, Q)
    held, unseen = enqueue(r, Q), enqueue(r, Q)
    (_, run_held, *_), (_, run_unseen, *_) = reserve(r, Q, 2, worker=W)
    assert r.fcall("corral_reclaim_worker", 1, Q, W, "keep", held) == 1
    before = db_snapshot(r)
    assert outcome(r, kind, unseen, run_unseen) == "RECLAIMED"
    assert db_snapshot(r) == before
    assert outcome(r, "renew", held, run_held) == "active"


@pytest.mark.parametrize("kind", KINDS)
def test_a_reclaimed_job_cancelled_since_stays_cancelled(r, kind):
    declare(r, Q, max_attempts=3)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    assert r.fcall("corral_reclaim_worker", 1, Q, W) == 1
    assert r.fcall("corral_cancel", 1, Q, jid) == "cancelled"
    before = db_snapshot(r)
    assert outcome(r, kind, jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    assert get_job(r, Q, jid)["state"] == "cancelled"
    assert r.lrange(f"{K}:fin:{jid}", 0, -1) == ["cancelled"]


def test_dead_retry_alone_changes_a_dead_job_and_the_reclaimed_run_stays_refused(r):
    declare(r, Q, max_attempts=1)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    expire(r, jid)
    r.fcall("corral_reclaim", 1, Q)
    assert r.fcall("corral_dead_retry", 1, Q, jid) == 1
    assert get_job(r, Q, jid)["state"] == "queued"
    before = db_snapshot(r)
    assert outcome(r, "ack", jid, run) == "RECLAIMED"
    assert db_snapshot(r) == before
    new = reserve(r, Q, worker="host2:1")[0][1]
    assert outcome(r, "ack", jid, run) == "STALE"  # a newer run started
    assert outcome(r, "ack", jid, new, worker="host2:1") == "done"


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_that_already_reported_answers_stale_and_the_final_state_holds(r, kind):
    declare(r, Q, max_result=100)
    done, dead = enqueue(r, Q), enqueue(r, Q)
    (_, rdone, *_), (_, rdead, *_) = reserve(r, Q, 2, worker=W)
    assert r.fcall("corral_ack", 1, Q, W, done, rdone, "ok") == ["done"]
    assert r.fcall("corral_ack", 1, Q, W, dead, rdead, "x" * 101) == ["dead"]
    before = db_snapshot(r)
    assert outcome(r, kind, done, rdone) == "STALE"
    assert outcome(r, kind, dead, rdead) == "STALE"
    assert db_snapshot(r) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_newer_run_makes_the_reclaimed_one_stale(r, kind):
    declare(r, Q)
    jid = enqueue(r, Q)
    old = reserve(r, Q, worker=W)[0][1]
    expire(r, jid)
    r.fcall("corral_reclaim", 1, Q)
    reserve(r, Q, worker="host2:1")
    before = db_snapshot(r)
    assert outcome(r, kind, jid, old) == "STALE"
    assert db_snapshot(r) == before


@pytest.mark.parametrize("kind", KINDS)
def test_another_workers_run_and_unknown_jobs_answer_stale(r, kind):
    declare(r, Q)
    jid = enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    never = enqueue(r, Q)
    before = db_snapshot(r)
    assert outcome(r, kind, jid, run, worker="host9:1") == "STALE"
    assert outcome(r, kind, "4242", "1") == "STALE"
    assert outcome(r, kind, never, "0") == "STALE"
    assert db_snapshot(r) == before


def test_each_call_answers_the_state_after_it_one_word_per_job(r):
    declare(r, Q, max_attempts=1, max_result=10)
    ids = [enqueue(r, Q) for _ in range(8)]
    jobs = reserve(r, Q, 8, worker=W)
    runs = {j[0]: j[1] for j in jobs}
    a, b, c, d, e, f, g, h = ids
    assert r.fcall("corral_renew", 1, Q, W, a, runs[a], b, "99") == ["active", "STALE"]
    assert r.fcall("corral_ack", 1, Q, W, a, runs[a], "ok", b, runs[b], "x" * 11) == \
        ["done", "dead"]
    assert r.fcall("corral_fail", 1, Q, W, c, runs[c], "retry", "e", d, runs[d], "permanent",
                   "e") == ["dead", "dead"]
    assert r.fcall("corral_defer", 1, Q, W, e, runs[e], 0, "", "", f, runs[f], 60000, "", "") \
        == ["queued", "scheduled"]
    assert [get_job(r, Q, i)["state"] for i in (a, b, c, d, e, f)] == \
        ["done", "dead", "dead", "dead", "queued", "scheduled"]
    expire(r, g)
    r.fcall("corral_reclaim", 1, Q)
    assert r.fcall("corral_fail", 1, Q, W, g, runs[g], "retry", "e", h, runs[h], "retry",
                   "e") == ["RECLAIMED", "dead"]


def test_a_deferral_with_no_delay_is_ready_at_once_at_the_front_and_wakes(r):
    declare(r, Q)
    first, second = enqueue(r, Q), enqueue(r, Q)
    run = reserve(r, Q, worker=W)[0][1]
    r.delete(f"{K}:wake")
    assert outcome(r, "defer", first, run) == "queued"
    j = get_job(r, Q, first)
    assert j["state"] == "queued" and j["attempts"] == 0 and j["deferrals"] == 1
    assert r.lrange(f"{K}:q:1", 0, -1) == [first, second]
    assert r.zcard(f"{K}:sched") == 0
    assert r.llen(f"{K}:wake") == 1


def test_a_worker_drops_the_outcome_of_a_reclaimed_run_logging_it_once(r, stub, make_worker):
    """A slow worker's run is taken back (corrald thought it dead) while its
    call goes on; the queue is paused, so the job waits, queued. The call
    ends: the ack answers RECLAIMED, the worker logs it once at notice and
    drops it; the job runs again, and only that run's result is kept."""
    w = make_worker(HTTP_Q + "\nlease = 60s", stub.url)
    jid = wenqueue(r, {"stub": {"delay_ms": 1500, "status": 200, "body": '{"run": "first"}',
                                "fail_times": 1, "key": "R"},
                       "messages": [{"role": "user", "content": "second"}]})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the first call to start")
    worker = job(r, jid)["worker"]
    r.fcall("corral_pause", 1, WQ)
    assert r.fcall("corral_reclaim_worker", 1, WQ, worker) == 1
    wait_until(lambda: "lease was reclaimed" in w.logs(), what="the late outcome to be dropped")
    j = job(r, jid)
    assert j["state"] == "queued" and "result" not in j, j
    r.fcall("corral_resume", 1, WQ)
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2 and "echo: second" in j["result"], j
    dropped = [line for line in w.logs().splitlines() if "lease was reclaimed" in line]
    assert len(dropped) == 1 and f"id={jid} " in dropped[0], dropped
    assert w.stop() == 0
