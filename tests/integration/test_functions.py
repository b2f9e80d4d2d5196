"""The corral Redis Function library, called directly with FCALL as any
application service or worker would, against a real redis-server."""
import json
import threading
import time

import pytest
import redis

from conftest import declare, wait_until

Q = "prompts"
K = "corral:{prompts}"


def enqueue(r, payload="{}", queue=Q, **opts):
    args = [payload] + ([json.dumps(opts)] if opts else [])
    return r.fcall("corral_enqueue", 1, queue, *args)


def reserve(r, n=1, worker="h:1", queue=Q):
    return r.fcall("corral_reserve", 1, queue, worker, n)


def job(r, job_id, queue=Q):
    raw = r.fcall_ro("corral_job", 1, queue, job_id)
    return json.loads(raw) if raw else None


def ack(r, jid, run, result="{}", worker="h:1", queue=Q):
    return r.fcall("corral_ack", 1, queue, worker, jid, run, result)[0]


def fail(r, jid, run, kind="retry", error="boom", worker="h:1", queue=Q):
    return r.fcall("corral_fail", 1, queue, worker, jid, run, kind, error)[0]


def server_ms(r):
    s, us = r.time()
    return s * 1000 + us // 1000


def state_snapshot(r, queue=Q):
    k = f"corral:{{{queue}}}"
    return (
        [r.lrange(f"{k}:q:{i}", 0, -1) for i in range(3)],
        r.zrange(f"{k}:sched", 0, -1),
        r.zrange(f"{k}:active", 0, -1),
        r.lrange(f"{k}:dead", 0, -1),
        r.get(f"{k}:seq"),
    )


@pytest.fixture
def q(r):
    declare(r, Q, backoff_base_ms=100, backoff_cap_ms=1000)
    return r


# --- enqueue -------------------------------------------------------------


def test_enqueue_stores_a_queued_job_with_the_middle_priority_by_default(q):
    jid = enqueue(q, '{"messages": []}')
    j = job(q, jid)
    assert j["state"] == "queued"
    assert j["priority"] == "normal" and j["prio"] == 1
    assert j["payload"] == '{"messages": []}'
    assert j["attempts"] == 0 and j["max_attempts"] == 5
    assert q.lrange(f"{K}:q:1", 0, -1) == [jid]


def test_priority_by_name_and_by_index(q):
    a = enqueue(q, priority="high")
    b = enqueue(q, priority=2)
    assert job(q, a)["priority"] == "high"
    assert job(q, b)["priority"] == "low"


def test_delayed_job_is_scheduled_and_reservable_only_after_its_delay(q):
    jid = enqueue(q, delay_ms=300)
    assert job(q, jid)["state"] == "scheduled"
    assert reserve(q) == []
    got = wait_until(lambda: reserve(q), timeout=5, what="delayed job to come due")
    assert got[0][0] == jid
    j = job(q, jid)
    assert j["started_ms"] - j["created_ms"] >= 300


def test_enqueue_wakes_an_idle_worker_blocked_on_the_marker_list(q):
    other = redis.Redis(unix_socket_path=q.connection_pool.connection_kwargs["path"])
    got = {}

    def block():
        got["v"] = other.blpop([f"{K}:wake"], timeout=5)

    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.1)  # let BLPOP block first; the assertion below is on its result
    enqueue(q)
    t.join()
    assert got["v"] is not None


def test_reserve_that_empties_the_queue_clears_the_markers(q):
    enqueue(q)
    enqueue(q)
    assert q.llen(f"{K}:wake") == 2
    reserve(q, 5)
    assert q.llen(f"{K}:wake") == 0


# --- order ---------------------------------------------------------------


def test_strict_order_serves_higher_levels_first_and_fifo_within_a_level(q):
    ids = []
    for prio in ["low", "normal", "high", "low", "high", "normal"]:
        ids.append((prio, enqueue(q, priority=prio)))
    got = [j[0] for j in reserve(q, 6)]
    want = [i for p in ["high", "normal", "low"] for (pp, i) in ids if pp == p]
    assert got == want


def test_weighted_order_serves_levels_in_proportion_and_never_starves(r):
    declare(r, Q, order="weighted", weights=[6, 3, 1])
    per_level = 1200
    pipe = r.pipeline(transaction=False)
    for prio in ["high", "normal", "low"]:
        for _ in range(per_level):
            pipe.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"priority": prio}))
    pipe.execute()
    counts = {"high": 0, "normal": 0, "low": 0}
    taken = 0
    while taken < 1000:  # all levels stay non-empty over this window
        for j in reserve(r, 50):
            counts[j[5]] += 1
            taken += 1
    for level, weight in [("high", 6), ("normal", 3), ("low", 1)]:
        share = counts[level] / taken
        assert abs(share - weight / 10) <= 0.1 * weight / 10, (level, counts)
    assert counts["low"] > 0


def test_reserve_takes_up_to_n_jobs_each_under_a_lease(q):
    for _ in range(5):
        enqueue(q)
    before = server_ms(q)
    jobs = reserve(q, 3)
    assert len(jobs) == 3
    for jid, *_ in jobs:
        score = q.zscore(f"{K}:active", jid)
        assert before + 30000 - 50 <= score <= server_ms(q) + 30000
        assert job(q, jid)["state"] == "active"
    assert len(reserve(q, 10)) == 2


def test_paused_queue_hands_out_nothing_until_resumed(q):
    enqueue(q)
    q.fcall("corral_pause", 1, Q)
    assert reserve(q) == []
    q.fcall("corral_resume", 1, Q)
    assert q.llen(f"{K}:wake") >= 1
    assert len(reserve(q)) == 1


# --- outcomes ------------------------------------------------------------


def test_ack_stores_the_result_and_ends_the_job(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    assert ack(q, jid, run, '{"answer": 42}') == "done"
    j = job(q, jid)
    assert j["state"] == "done" and j["result"] == '{"answer": 42}'
    assert q.zcard(f"{K}:active") == 0
    assert 0 < q.pttl(f"{K}:job:{jid}") <= 86400000


def test_result_over_max_result_kills_the_job_with_a_clear_error(r):
    declare(r, Q, max_result=10)
    jid = enqueue(r)
    run = reserve(r)[0][1]
    assert ack(r, jid, run, "x" * 11) == "dead"
    j = job(r, jid)
    assert j["state"] == "dead"
    assert "result is 11 bytes, limit is 10" in j["error"]


def test_ack_with_a_wrong_run_token_changes_nothing(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    assert ack(q, jid, str(int(run) + 1)) == "STALE"
    assert job(q, jid)["state"] == "active"


def test_late_ack_after_reclaim_is_dropped_and_the_job_runs_again(r):
    declare(r, Q, lease_ms=100)
    jid = enqueue(r)
    run = reserve(r)[0][1]
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) == 1, timeout=5, what="lease expiry")
    assert job(r, jid)["state"] == "queued"
    assert ack(r, jid, run, "late") == "RECLAIMED"
    assert job(r, jid)["state"] == "queued"
    assert reserve(r)[0][0] == jid


def test_old_run_cannot_clobber_a_newer_run(r):
    declare(r, Q, lease_ms=100)
    jid = enqueue(r)
    old = reserve(r, worker="h:1")[0][1]
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) == 1, timeout=5, what="lease expiry")
    new = reserve(r, worker="h:2")[0][1]
    assert new != old
    assert ack(r, jid, old, "stale", worker="h:1") == "STALE"
    assert fail(r, jid, old, worker="h:1") == "STALE"
    assert job(r, jid)["state"] == "active"
    assert ack(r, jid, new, "fresh", worker="h:2") == "done"
    assert job(r, jid)["result"] == "fresh"


def test_retryable_failure_backs_off_within_bounds_with_jitter(r):
    base, cap = 1000, 60000
    declare(r, Q, backoff_base_ms=base, backoff_cap_ms=cap, max_attempts=10)
    ids = [enqueue(r) for _ in range(40)]
    jobs = reserve(r, 40)
    delays = []
    for jid, run, *_ in jobs:
        t0 = server_ms(r)
        assert fail(r, jid, run) == "scheduled"
        delays.append(r.zscore(f"{K}:sched", jid) - t0)
    # first retry (n = 1): uniform in [base, min(cap, 2 * base)]
    assert all(base - 5 <= d <= 2 * base + 5 for d in delays), delays
    assert len(set(delays)) > 10  # jitter, not one value for all
    assert {job(r, i)["state"] for i in ids} == {"scheduled"}
    # later attempts widen the window up to the cap
    r.zadd(f"{K}:sched", {i: 0 for i in ids})
    for attempt in range(2, 8):
        for jid, run, *_ in reserve(r, 40):
            t0 = server_ms(r)
            fail(r, jid, run)
            d = r.zscore(f"{K}:sched", jid) - t0
            assert base - 5 <= d <= min(cap, base * 2 ** attempt) + 5, (attempt, d)
        r.zadd(f"{K}:sched", {i: 0 for i in ids})


def test_dead_after_max_attempts_with_the_last_error(r):
    declare(r, Q, max_attempts=3, backoff_base_ms=1, backoff_cap_ms=1)
    jid = enqueue(r)
    for attempt in range(1, 4):
        got = wait_until(lambda: reserve(r), timeout=5, what="retry to come due")
        outcome = fail(r, jid, got[0][1], error=f"HTTP 503 try {attempt}")
    assert outcome == "dead"
    j = job(r, jid)
    assert j["state"] == "dead" and j["attempts"] == 3
    assert j["error"] == "HTTP 503 try 3 (attempt 3 of 3)"
    assert r.lrange(f"{K}:dead", 0, -1) == [jid]


def test_permanent_failure_is_dead_at_once(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    assert fail(q, jid, run, kind="permanent", error="HTTP 400: bad request") == "dead"
    j = job(q, jid)
    assert j["state"] == "dead" and j["attempts"] == 1 and j["error"] == "HTTP 400: bad request"


def test_defer_spends_no_attempt_and_runs_again_after_the_delay(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    assert job(q, jid)["attempts"] == 1
    assert q.fcall("corral_defer", 1, Q, "h:1", jid, run, 200, "", "") == ["scheduled"]
    j = job(q, jid)
    assert j["state"] == "scheduled" and j["attempts"] == 0 and j["deferrals"] == 1
    got = wait_until(lambda: reserve(q), timeout=5, what="deferred job")
    assert got[0][0] == jid and got[0][2] == 1


def test_renew_extends_the_lease_and_refuses_a_stale_run(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    q.zadd(f"{K}:active", {jid: 1})
    assert q.fcall("corral_renew", 1, Q, "h:1", jid, run) == ["active"]
    assert q.zscore(f"{K}:active", jid) > server_ms(q) + 29000
    assert q.fcall("corral_renew", 1, Q, "h:1", jid, "999") == ["STALE"]


# --- reclaim -------------------------------------------------------------


def test_expired_leases_are_requeued_at_the_front(r):
    declare(r, Q, lease_ms=100)
    first = enqueue(r)
    reserve(r)
    later = enqueue(r)
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) == 1, timeout=5, what="lease expiry")
    assert r.lrange(f"{K}:q:1", 0, -1) == [first, later]
    assert "lease expired" in job(r, first)["error"]


def test_expired_lease_on_the_last_attempt_is_dead_with_the_reason(r):
    declare(r, Q, lease_ms=100, max_attempts=1)
    jid = enqueue(r)
    reserve(r, worker="w9:42")
    wait_until(lambda: r.fcall("corral_reclaim", 1, Q) == 1, timeout=5, what="lease expiry")
    j = job(r, jid)
    assert j["state"] == "dead"
    assert "lease expired" in j["error"] and "w9:42" in j["error"]


def test_reclaim_worker_takes_back_exactly_that_workers_jobs(q):
    for _ in range(6):
        enqueue(q)
    a = [j[0] for j in reserve(q, 2, worker="hostA:1")]
    b = [j[0] for j in reserve(q, 2, worker="hostA:2")]
    c = [j[0] for j in reserve(q, 2, worker="hostB:1")]
    assert q.fcall("corral_reclaim_worker", 1, Q, "hostA:1") == 2
    assert {job(q, i)["state"] for i in a} == {"queued"}
    assert {job(q, i)["state"] for i in b + c} == {"active"}
    assert q.fcall("corral_reclaim_worker", 1, Q, "hostA:*") == 2
    assert {job(q, i)["state"] for i in b} == {"queued"}
    assert {job(q, i)["state"] for i in c} == {"active"}


def test_concurrent_reclaim_requeues_each_job_once(r, redis_server):
    declare(r, Q, lease_ms=100)
    ids = [enqueue(r) for _ in range(50)]
    reserve(r, 50)
    time.sleep(0.15)  # every lease has expired; both reclaimers race for them
    results = []
    clients = [redis_server.client(decode_responses=True) for _ in range(2)]
    threads = [threading.Thread(target=lambda c=c: results.append(c.fcall("corral_reclaim", 1, Q)))
               for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 50
    assert sorted(r.lrange(f"{K}:q:1", 0, -1), key=int) == ids


# --- unique, dead, cancel ------------------------------------------------


def test_unique_key_returns_the_existing_job_until_it_is_cancelled(q):
    a = enqueue(q, unique_key="order-7")
    assert enqueue(q, unique_key="order-7") == a
    assert q.llen(f"{K}:q:1") == 1
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    b = enqueue(q, unique_key="order-7")
    assert b != a


def test_dead_jobs_can_be_retried_by_id_or_all_and_purged(q):
    ids = [enqueue(q) for _ in range(3)]
    for jid, run, *_ in reserve(q, 3):
        fail(q, jid, run, kind="permanent")
    assert q.llen(f"{K}:dead") == 3
    assert q.fcall("corral_dead_retry", 1, Q, ids[0]) == 1
    j = job(q, ids[0])
    assert j["state"] == "queued" and j["attempts"] == 0
    with pytest.raises(redis.ResponseError, match="is not dead"):
        q.fcall("corral_dead_retry", 1, Q, ids[0])
    assert q.fcall("corral_dead_retry", 1, Q, "--all") == 2
    for jid, run, *_ in reserve(q, 3):
        fail(q, jid, run, kind="permanent")
    assert q.fcall("corral_dead_purge", 1, Q) == 3
    assert q.llen(f"{K}:dead") == 0
    assert all(job(q, i) is None for i in ids)


def test_cancel_works_on_queued_and_scheduled_jobs_but_not_running_ones(q):
    a = enqueue(q)
    b = enqueue(q, delay_ms=60000)
    assert q.fcall("corral_cancel", 1, Q, b) == "cancelled"
    assert q.zcard(f"{K}:sched") == 0
    c = enqueue(q, priority="high")
    run_id = reserve(q)[0][0]
    assert run_id == c
    with pytest.raises(redis.ResponseError, match="is active and cannot be cancelled"):
        q.fcall("corral_cancel", 1, Q, c)
    assert q.fcall("corral_cancel", 1, Q, a) == "cancelled"
    assert job(q, a)["state"] == "cancelled"


# --- await and stats -----------------------------------------------------


def test_await_returns_the_final_state_to_every_waiter(q, redis_server):
    jid = enqueue(q)
    fin = f"{K}:fin:{jid}"
    results = []

    def waiter():
        c = redis_server.client(decode_responses=True)
        results.append(c.blmove(fin, fin, 5, "RIGHT", "RIGHT"))

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.1)  # both waiters block before the ack; asserted via their results
    run = reserve(q)[0][1]
    ack(q, jid, run, "ok")
    for t in threads:
        t.join()
    assert results == ["done", "done"]
    assert q.blmove(fin, fin, 1, "RIGHT", "RIGHT") == "done"  # still there for late waiters


def test_stats_report_depth_rates_and_processing_time(q):
    for p in ["high", "high", "low"]:
        enqueue(q, priority=p)
    enqueue(q, delay_ms=60000)
    jobs = reserve(q, 2)
    time.sleep(0.2)  # the processing time being measured
    for jid, run, *_ in jobs:
        ack(q, jid, run)
    s = json.loads(q.fcall_ro("corral_stats", 1, Q))
    assert s["depth"] == 1 and s["depth_by_priority"] == {"high": 0, "normal": 0, "low": 1}
    assert s["scheduled"] == 1 and s["inflight"] == 0 and s["dead"] == 0
    assert s["enqueued_per_s"] > 0 and s["done_per_s"] > 0
    assert 100 <= s["proc_ms_p50"] <= 500, s
    assert 100 <= s["proc_ms_p95"] <= 500, s
    assert s["oldest_wait_ms"] >= 200


# --- bad input -----------------------------------------------------------


@pytest.mark.parametrize(
    "queue, payload, opts, message",
    [
        ("nosuch", "{}", None, 'unknown queue "nosuch"'),
        ("", "{}", None, 'bad queue name ""'),
        ("a" * 65, "{}", None, "bad queue name"),
        ("a{b", "{}", None, 'bad queue name "a{b"'),
        ("a b", "{}", None, 'bad queue name "a b"'),
        (Q, "x" * 2000, None, "payload is 2000 bytes, limit is 1000 (max_payload)"),
        (Q, "{not json", None, "payload is not valid JSON"),
        (Q, "{}", "[1, 2", "options must be a JSON object"),
        (Q, "{}", '{"prio": "high"}', 'unknown option "prio"'),
        (Q, "{}", '{"priority": "urgent"}', 'unknown priority "urgent"'),
        (Q, "{}", '{"priority": 3}', 'unknown priority "3"'),
        (Q, "{}", '{"delay_ms": -5}', "delay_ms must be an integer"),
        (Q, "{}", '{"delay_ms": 1.5}', "delay_ms must be an integer"),
        (Q, "{}", '{"delay_ms": 1e30}', "delay_ms must be an integer"),
        (Q, "{}", '{"max_attempts": 0}', "max_attempts must be an integer from 1 to 1000"),
        (Q, "{}", '{"max_attempts": "5"}', None),
        (Q, "{}", '{"unique_key": ""}', "unique_key must be a string of 1 to 256 bytes"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_disturbed(
        r, queue, payload, opts, message):
    declare(r, Q, max_payload=1000)
    keep = enqueue(r, '{"keep": true}')
    before = state_snapshot(r)
    args = [payload] + ([opts] if opts is not None else [])
    if message is None:  # a numeric string is accepted as a number
        r.fcall("corral_enqueue", 1, queue, *args)
        return
    with pytest.raises(redis.ResponseError) as e:
        r.fcall("corral_enqueue", 1, queue, *args)
    assert message in str(e.value)
    assert "script:" not in str(e.value)
    assert state_snapshot(r) == before
    assert job(r, keep)["state"] == "queued"


def test_fail_with_an_unknown_kind_is_refused(q):
    jid = enqueue(q)
    run = reserve(q)[0][1]
    with pytest.raises(redis.ResponseError, match="kind must be retry or permanent"):
        q.fcall("corral_fail", 1, Q, "h:1", jid, run, "maybe", "x")
    assert job(q, jid)["state"] == "active"


def test_custom_prefix_key_form_works(r):
    r.fcall("corral_declare", 1, "myapp:{jobs}", "{}")
    jid = r.fcall("corral_enqueue", 1, "myapp:{jobs}", "{}")
    assert r.exists(f"myapp:{{jobs}}:job:{jid}")
    assert r.sismember("myapp:queues", "jobs")
    assert r.keys("corral:*") == []


def test_redeclare_with_fewer_levels_keeps_every_job_reachable(r):
    declare(r, Q)
    low = enqueue(r, priority="low")
    later = enqueue(r, priority="low", delay_ms=100)
    declare(r, Q, priorities=["high", "normal"])
    assert job(r, low)["priority"] == "normal"
    got = []

    def both():
        got.extend(j[0] for j in reserve(r, 5))
        return len(got) == 2

    wait_until(both, timeout=5, what="the scheduled job to be promoted to a live level")
    assert sorted(got) == sorted([low, later])
