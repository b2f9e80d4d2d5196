"""K:conf's "paused" and "due" (library version 7, docs/protocol.md "Keys"):
enqueue and reserve read whether a queue is paused, and a reserve when
K:sched next has a due job, with the settings' one HMGET instead of a
command each. These prove that the shortcut keeps the behaviour: a reserve
skips K:sched only while nothing there is due, every way a job enters
K:sched brings the next look forward, and queues written by older
versions (no such fields) are looked at as before."""
import time

import pytest

from conftest import declare, enqueue, qkey, reserve, server_ms, wait_until

Q = "hot"
K = qkey(Q)
W = "host1:1"


@pytest.fixture
def q(r):
    declare(r, Q, backoff_base_ms=100, backoff_cap_ms=100)
    return r


def zrangebyscore_calls(r):
    return r.info("commandstats").get("cmdstat_zrangebyscore", {}).get("calls", 0)


def test_reserves_skip_the_schedule_until_a_job_there_is_due(q):
    enqueue(q, Q, delay_ms=400)
    assert reserve(q, Q) == []  # learns when the delayed job is due
    before = zrangebyscore_calls(q)
    for _ in range(20):
        assert reserve(q, Q) == []
    assert zrangebyscore_calls(q) == before  # K:sched not looked at
    wait_until(lambda: len(reserve(q, Q)) == 1, timeout=5, what="the delayed job, once due")


def test_a_retry_sooner_than_the_known_due_time_is_not_missed(q):
    enqueue(q, Q, delay_ms=3_600_000)  # due in an hour
    jid = enqueue(q, Q)
    [job] = reserve(q, Q)  # its promotion check learns "due in an hour"
    assert job[0] == jid
    assert q.fcall("corral_fail", 1, Q, W, jid, job[1], "retry", "HTTP 503") == ["scheduled"]
    # back-off 100 ms: the retry must run well before the hour
    wait_until(lambda: [j[0] for j in reserve(q, Q)] == [jid], timeout=5, what="the retry")


def test_a_deferred_job_sooner_than_the_known_due_time_is_not_missed(q):
    enqueue(q, Q, delay_ms=3_600_000)
    jid = enqueue(q, Q)
    [job] = reserve(q, Q)
    out = q.fcall("corral_defer", 1, Q, W, jid, job[1], 150, "", "draining")
    assert out == ["scheduled"]
    wait_until(lambda: [j[0] for j in reserve(q, Q)] == [jid], timeout=5, what="the deferred job")


def test_a_delayed_enqueue_sooner_than_the_known_due_time_is_not_missed(q):
    enqueue(q, Q, delay_ms=3_600_000)
    assert reserve(q, Q) == []
    jid = enqueue(q, Q, delay_ms=100)
    wait_until(lambda: [j[0] for j in reserve(q, Q)] == [jid], timeout=5, what="the sooner job")


def test_a_queue_paused_by_an_older_library_stays_paused(q):
    # As version 6 left it: K:paused set, K:conf without "paused".
    jid = enqueue(q, Q)
    q.delete(f"{K}:wake")
    q.hdel(f"{K}:conf", "paused")
    q.set(f"{K}:paused", server_ms(q))
    assert reserve(q, Q) == []
    enqueue(q, Q)
    assert q.llen(f"{K}:wake") == 0  # a paused queue wakes nobody
    assert q.fcall("corral_resume", 1, Q) == "OK"
    assert q.hget(f"{K}:conf", "paused") == "0"
    assert jid in [j[0] for j in reserve(q, Q, 2)]


def test_pause_and_resume_keep_the_field_and_the_key_together(q):
    assert q.fcall("corral_pause", 1, Q) == "OK"
    assert q.hget(f"{K}:conf", "paused") == "1" and q.exists(f"{K}:paused") == 1
    enqueue(q, Q)
    assert reserve(q, Q) == []
    assert q.fcall("corral_resume", 1, Q) == "OK"
    assert q.hget(f"{K}:conf", "paused") == "0" and q.exists(f"{K}:paused") == 0
    assert len(reserve(q, Q)) == 1


def test_a_redeclare_reads_a_pause_left_by_an_older_library(q):
    q.set(f"{K}:paused", server_ms(q))
    q.hdel(f"{K}:conf", "paused")
    declare(q, Q, backoff_base_ms=100, backoff_cap_ms=100)
    assert q.hget(f"{K}:conf", "paused") == "1"
    enqueue(q, Q)
    assert reserve(q, Q) == []


def test_a_job_scheduled_by_an_older_library_is_promoted(q):
    # Version 6 wrote K:sched without "due": not known, so the reserve looks.
    enqueue(q, Q, delay_ms=3_600_000)
    assert reserve(q, Q) == []
    jid = enqueue(q, Q, delay_ms=3_600_000)
    q.zadd(f"{K}:sched", {jid: server_ms(q) - 1}, xx=True)
    q.hdel(f"{K}:conf", "due")
    t0 = time.monotonic()
    assert [j[0] for j in reserve(q, Q)] == [jid]
    assert time.monotonic() - t0 < 2
