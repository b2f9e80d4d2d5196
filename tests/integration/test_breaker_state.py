"""The breaker, throttle and limits of a service, at the level of the
function library: the sliding window and the state machine (closed -> open
-> half-open -> closed or open again, with a doubling wait), 429 throttles,
quota errors, max_inflight per host and the fleet-wide rate. The state lives
in Redis and changes inside reserve/ack/fail/defer, so these tests drive
those calls directly and read corral_breaker."""
import json
import time

import pytest
import redis

from conftest import declare, enqueue, get_job, server_ms, wait_until

Q = "calls"
SVC = "ai"


def declare_service(r, name=SVC, **settings):
    base = {"window_ms": 60000, "min_calls": 4, "failure_rate": 50, "slow_call_ms": 30000,
            "slow_rate": 80, "open_for_ms": 300, "open_max_ms": 1200, "half_open_calls": 2}
    base.update(settings)
    return r.fcall("corral_declare_service", 1, name, json.dumps(base))


def breaker(r, name=SVC):
    return json.loads(r.fcall_ro("corral_breaker", 1, name))


def prepare(r, **settings):
    declare_service(r, **settings)
    declare(r, Q, service=SVC, max_attempts=5, backoff_base_ms=60000, backoff_cap_ms=60000)


def reserve(r, n=1, worker="h1:1", max_inflight=None):
    """-> (jobs, gate) where gate is None or (until_ms, why): the reply
    says how long to wait; until_ms adds it to the server's clock."""
    args = [worker, n, max_inflight or 0]
    out = r.fcall("corral_reserve", 1, Q, *args)
    now = server_ms(r)
    gate = None
    if out and isinstance(out[-1], str):
        _, wait, why = out.pop().split(" ", 2)
        gate = (now + int(wait), why)
    return out, gate


def run_calls(r, outcomes, worker="h1:1"):
    """Enqueues, reserves and ends one job per outcome: "ok", "fail"
    (retryable), "perm" (4xx) -> the job ids."""
    ids = [enqueue(r, Q) for _ in outcomes]
    jobs, gate = reserve(r, len(outcomes), worker)
    assert gate is None and len(jobs) == len(outcomes)
    for (jid, run, *_), how in zip(jobs, outcomes):
        end(r, jid, run, how, worker)
    return ids


def end(r, jid, run, how, worker="h1:1"):
    if how == "ok":
        return r.fcall("corral_ack", 1, Q, worker, jid, run, "{}")[0]
    kind = "retry" if how == "fail" else "permanent"
    return r.fcall("corral_fail", 1, Q, worker, jid, run, kind, "HTTP 503: down")[0]


def trip(r):
    run_calls(r, ["fail"] * 4)
    assert breaker(r)["state"] == "open"


def test_a_declared_service_starts_closed_with_its_settings(r):
    prepare(r)
    b = breaker(r)
    assert b["state"] == "closed" and b["calls"] == 0 and b["failure_rate"] == 0
    assert b["min_calls"] == 4 and b["half_open_calls"] == 2 and b["open_until_ms"] == 0
    assert r.sismember("corral:services", SVC)


def test_unknown_service_and_bad_settings_are_refused(r):
    with pytest.raises(redis.ResponseError, match='unknown service "nope"'):
        r.fcall_ro("corral_breaker", 1, "nope")
    with pytest.raises(redis.ResponseError, match="min_calls must be a number"):
        declare_service(r, min_calls=0)
    with pytest.raises(redis.ResponseError, match="open_for_ms must not exceed open_max_ms"):
        declare_service(r, open_for_ms=5000, open_max_ms=1000)
    with pytest.raises(redis.ResponseError, match="settings must be a JSON object"):
        r.fcall("corral_declare_service", 1, SVC, "[1")


def test_fewer_than_min_calls_never_trip_even_all_failing(r):
    prepare(r)
    run_calls(r, ["fail"] * 3)
    b = breaker(r)
    assert b["state"] == "closed" and b["calls"] == 3 and b["failures"] == 3


def test_exactly_min_calls_at_exactly_the_threshold_trips(r):
    prepare(r)
    run_calls(r, ["ok", "fail", "ok", "fail"])  # 2 of 4 = 50%, the threshold
    b = breaker(r)
    assert b["state"] == "open"
    assert "failure rate 50% (2 of 4 calls" in b["reason"]
    assert b["calls"] == 4 and b["failure_rate"] == 0.5  # the window that tripped it
    assert b["open_until_ms"] - server_ms(r) <= 300


def test_just_under_the_threshold_stays_closed(r):
    prepare(r, min_calls=5)
    run_calls(r, ["ok", "ok", "ok", "fail", "fail"])  # 40%
    assert breaker(r)["state"] == "closed"


def test_permanent_failures_count_as_calls_not_failures(r):
    prepare(r)
    run_calls(r, ["perm"] * 6)
    b = breaker(r)
    assert b["state"] == "closed" and b["calls"] == 6 and b["failures"] == 0


def test_slow_calls_trip_on_the_slow_rate(r):
    prepare(r, slow_call_ms=50, slow_rate=75)
    ids = [enqueue(r, Q) for _ in range(4)]
    jobs, _ = reserve(r, 4)
    time.sleep(0.06)  # the calls must take longer than slow_call_ms
    for jid, run, *_ in jobs:
        end(r, jid, run, "ok")
    b = breaker(r)
    assert b["state"] == "open" and "slow-call rate 100%" in b["reason"], b
    assert all(get_job(r, Q, i)["state"] == "done" for i in ids)


def test_window_rolls_over_and_old_failures_leave_it(r):
    prepare(r, window_ms=500)
    run_calls(r, ["fail"] * 3)
    assert breaker(r)["failures"] == 3
    # After a whole window the three failures are gone: three more fail
    # calls are again fewer than min_calls together with what is left.
    wait_until(lambda: breaker(r)["calls"] == 0, timeout=3, what="the window to roll over")
    run_calls(r, ["fail"] * 3)
    b = breaker(r)
    assert b["state"] == "closed" and b["calls"] == 3


def test_open_breaker_gates_reserve_and_jobs_wait_in_the_queue(r):
    prepare(r)
    trip(r)
    jid = enqueue(r, Q)
    jobs, gate = reserve(r, 5)
    assert jobs == []
    assert gate is not None and gate[1].startswith("breaker open: failure rate 100%")
    assert abs(gate[0] - breaker(r)["open_until_ms"]) <= 5
    assert get_job(r, Q, jid)["state"] == "queued"
    # the worker's host is registered to be woken when the breaker closes
    assert r.hget(f"corral:svc:{SVC}:sl", "h1") == "1"


def test_reserve_of_an_empty_queue_says_no_gate(r):
    prepare(r)
    trip(r)
    assert reserve(r, 5) == ([], None)


def test_half_open_admits_exactly_the_probe_calls_fleet_wide(r):
    prepare(r)
    trip(r)
    for _ in range(5):
        enqueue(r, Q)
    wait_until(lambda: server_ms(r) >= breaker(r)["open_until_ms"], what="open_for to pass")
    a, gate_a = reserve(r, 5, worker="h1:1")
    b, gate_b = reserve(r, 5, worker="h2:7")
    assert len(a) == 2 and b == []
    assert gate_a[1] == "breaker half-open: probe calls in flight" and gate_b is not None
    assert breaker(r)["state"] == "half_open" and breaker(r)["probes"] == 2


def test_probe_successes_close_the_breaker_and_wake_the_waiting_hosts(r):
    prepare(r)
    trip(r)
    for _ in range(4):
        enqueue(r, Q)
    assert reserve(r, 1, worker="h2:9")[1] is not None  # h2 waits
    wait_until(lambda: server_ms(r) >= breaker(r)["open_until_ms"], what="open_for to pass")
    probes, _ = reserve(r, 5)
    assert len(probes) == 2
    end(r, probes[0][0], probes[0][1], "ok")
    assert breaker(r)["state"] == "half_open"  # one of two probes
    end(r, probes[1][0], probes[1][1], "ok")
    b = breaker(r)
    assert b["state"] == "closed" and b["calls"] == 0 and b["trips"] == 0
    assert r.lrange(f"corral:svc:{SVC}:wake:h2", 0, -1) == ["1"]
    jobs, gate = reserve(r, 5)
    assert len(jobs) == 2 and gate is None


def test_a_probe_acked_after_the_breaker_closed_is_no_probe_when_retried_from_dead(r):
    """An ack reads a job's probe mark only while the breaker is not closed
    (runs.lua): a probe acked after a reset closed the breaker keeps its
    mark, so a dead job's retry drops it; its next run, leased while the
    breaker is half-open again, is a probe only if the reserve makes it one."""
    declare_service(r)
    declare(r, Q, service=SVC, max_attempts=5, backoff_base_ms=60000, backoff_cap_ms=60000,
            max_result=4)  # the ack's result below makes the job dead
    trip(r)
    jid = enqueue(r, Q)
    wait_until(lambda: server_ms(r) >= breaker(r)["open_until_ms"], what="open_for to pass")
    (probe,), _ = reserve(r, 1)
    assert get_job(r, Q, jid).get("probe") == "1"
    r.fcall("corral_breaker_reset", 1, SVC)
    assert r.fcall("corral_ack", 1, Q, "h1:1", jid, probe[1], "too long") == ["dead"]
    assert r.fcall("corral_dead_retry", 1, Q, jid) == 1
    assert "probe" not in get_job(r, Q, jid)
    assert breaker(r)["state"] == "closed" and breaker(r)["probes"] == 0


def test_reserve_and_ack_check_the_settings_by_their_digest_and_a_redeclare_applies(r):
    """Reserve and ack read "sv" (the settings' digest, library 7) in place
    of the whole settings text; a service declared before it (no "sv") is
    served by its text; a redeclare changes the digest, and the next
    reserve applies the new settings."""
    prepare(r, rate=1, rate_period_ms=600000)
    sk = f"corral:svc:{SVC}"
    assert len(r.hget(sk, "sv")) == 16
    r.hdel(sk, "sv")  # as a library before it left the hash
    for _ in range(3):
        enqueue(r, Q)
    jobs, gate = reserve(r, 3)
    assert len(jobs) == 1 and gate[1].startswith("rate 1 per 600000 ms")
    assert r.fcall("corral_ack", 1, Q, "h1:1", jobs[0][0], jobs[0][1], "{}") == ["done"]
    old = r.hget(sk, "settings")
    declare_service(r, rate=0)
    assert r.hget(sk, "sv") and r.hget(sk, "settings") != old
    jobs, gate = reserve(r, 3)
    assert len(jobs) == 2 and gate is None


def test_failed_probe_reopens_with_a_doubling_wait_up_to_the_cap(r):
    prepare(r)  # open_for 300 ms, open_max 1200 ms
    trip(r)
    waits = []
    for _ in range(4):
        wait_until(lambda: server_ms(r) >= breaker(r)["open_until_ms"], timeout=5,
                   what="the breaker to half-open")
        jid = enqueue(r, Q)
        (probe,), _ = reserve(r, 1)
        assert probe[0] == jid
        assert end(r, probe[0], probe[1], "fail") == "scheduled"
        b = breaker(r)
        assert b["state"] == "open" and b["reason"].startswith("probe call failed")
        waits.append(b["open_until_ms"] - server_ms(r))
        # the failed probe spent no attempt and waits for the breaker
        j = get_job(r, Q, jid)
        assert j["attempts"] == 0 and j["state"] == "scheduled"
        assert j["run_at_ms"] >= b["open_until_ms"]
        r.fcall("corral_cancel", 1, Q, jid)
    assert 500 < waits[0] <= 600
    assert 1100 < waits[1] <= 1200
    assert 1100 < waits[2] <= 1200  # capped at open_max
    assert 1100 < waits[3] <= 1200


def test_calls_failing_after_the_trip_spend_no_attempt(r):
    prepare(r)
    ids = [enqueue(r, Q) for _ in range(6)]
    jobs, _ = reserve(r, 6)
    for jid, run, *_ in jobs[:4]:
        end(r, jid, run, "fail")
    assert breaker(r)["state"] == "open"
    for jid, run, *_ in jobs[4:]:  # in flight when it tripped
        assert end(r, jid, run, "fail") == "scheduled"
    assert [get_job(r, Q, i)["attempts"] for i in ids] == [1, 1, 1, 1, 0, 0]


def test_a_429_throttles_the_service_fleet_wide_without_spending_attempts(r):
    prepare(r)
    a, b = enqueue(r, Q), enqueue(r, Q)
    (job,), _ = reserve(r, 1)
    before = server_ms(r)
    assert r.fcall("corral_defer", 1, Q, "h1:1", job[0], job[1], 2000, "throttle",
                   "HTTP 429: slow down") == ["scheduled"]
    j = get_job(r, Q, a)
    assert j["attempts"] == 0 and j["error"] == "HTTP 429: slow down"
    br = breaker(r)
    assert br["state"] == "closed" and br["calls"] == 0
    assert before + 2000 <= br["throttled_until_ms"] <= server_ms(r) + 2000
    jobs, gate = reserve(r, 1, worker="h2:1")
    assert jobs == [] and gate[1] == "throttled: HTTP 429: slow down"
    assert abs(gate[0] - br["throttled_until_ms"]) <= 5
    assert get_job(r, Q, b)["state"] == "queued"


def test_a_quota_error_opens_the_breaker_for_open_max(r):
    prepare(r)
    jid = enqueue(r, Q)
    (job,), _ = reserve(r, 1)
    r.fcall("corral_defer", 1, Q, "h1:1", job[0], job[1], 1000, "quota",
            "HTTP 429: insufficient_quota")
    b = breaker(r)
    assert b["state"] == "open" and b["reason"] == "quota: HTTP 429: insufficient_quota"
    assert b["open_until_ms"] - server_ms(r) > 1000  # open_max 1200, not open_for 300
    j = get_job(r, Q, jid)
    assert j["state"] == "scheduled" and j["attempts"] == 0
    assert j["run_at_ms"] >= b["open_until_ms"]


def test_max_inflight_is_per_host_and_freed_by_every_way_out(r):
    prepare(r)
    for _ in range(10):
        enqueue(r, Q)
    a, gate = reserve(r, 5, worker="h1:1", max_inflight=3)
    assert len(a) == 3 and gate[1] == "max_inflight 3 reached on host h1"
    b, gate = reserve(r, 5, worker="h1:2", max_inflight=3)
    assert b == [] and gate is not None  # another worker of the same host
    c, gate = reserve(r, 2, worker="h2:1", max_inflight=3)
    assert len(c) == 2 and gate is None  # another host has its own limit
    assert breaker(r)["inflight"] == 5
    end(r, a[0][0], a[0][1], "ok")
    end(r, a[1][0], a[1][1], "fail")
    r.fcall("corral_defer", 1, Q, "h1:1", a[2][0], a[2][1], 0, "", "")
    assert breaker(r)["inflight_by_host"] == {"h2": 2}
    # both workers of h1 were told to wait: one marker each
    assert r.lrange(f"corral:svc:{SVC}:wake:h1", 0, -1) == ["1", "1"]
    r.fcall("corral_reclaim_worker", 1, Q, "h2:1")
    assert breaker(r)["inflight"] == 0
    again, gate = reserve(r, 5, worker="h1:2", max_inflight=3)
    assert len(again) == 3


def test_rate_limit_grants_at_most_n_per_period_fleet_wide(r):
    prepare(r, rate=3, rate_period_ms=1000)
    for _ in range(10):
        enqueue(r, Q)
    a, gate_a = reserve(r, 2, worker="h1:1")
    b, gate_b = reserve(r, 5, worker="h2:1")
    assert len(a) == 2 and gate_a is None
    assert len(b) == 1 and gate_b[1] == "rate 3 per 1000 ms reached"
    t = server_ms(r)
    assert t < gate_b[0] <= t + 1010
    assert breaker(r)["rate_used"] == 3
    wait_until(lambda: server_ms(r) >= gate_b[0], timeout=3, what="the rate period")
    c, _ = reserve(r, 5)
    assert len(c) == 3


def test_reset_closes_ends_the_throttle_and_wakes(r):
    prepare(r)
    trip(r)
    enqueue(r, Q)
    assert reserve(r, 1, worker="h3:1")[1] is not None
    r.fcall("corral_breaker_reset", 1, SVC)
    b = breaker(r)
    assert b["state"] == "closed" and b["throttled_until_ms"] == 0
    assert r.lrange(f"corral:svc:{SVC}:wake:h3", 0, -1) == ["1"]
    assert len(reserve(r, 1)[0]) == 1


def test_stats_carry_the_breaker_and_the_hold_for_the_scaler(r):
    prepare(r)
    assert json.loads(r.fcall_ro("corral_stats", 1, Q))["breaker"]["hold"] == ""
    trip(r)
    s = json.loads(r.fcall_ro("corral_stats", 1, Q))
    assert s["breaker"]["state"] == "open"
    assert s["breaker"]["hold"].startswith("breaker open: failure rate 100%")


def test_a_queue_without_a_service_has_no_breaker(r):
    declare(r, "plain")
    assert "breaker" not in json.loads(r.fcall_ro("corral_stats", 1, "plain"))
    jid = enqueue(r, "plain")
    out = r.fcall("corral_reserve", 1, "plain", "h1:1", 1)
    assert out[0][0] == jid


def test_reset_makes_jobs_waiting_for_the_breaker_due_but_not_back_offs(r):
    prepare(r)
    waiting, backing_off = enqueue(r, Q), enqueue(r, Q)
    (a, b), _ = reserve(r, 2)
    r.fcall("corral_defer", 1, Q, "h1:1", a[0], a[1], 1000, "quota", "HTTP 429: insufficient_quota")
    assert get_job(r, Q, waiting)["run_at_ms"] >= breaker(r)["open_until_ms"]
    r.fcall("corral_fail", 1, Q, "h1:1", b[0], b[1], "retry", "HTTP 503")  # while open: waits too
    r.fcall("corral_breaker_reset", 1, SVC)
    now = server_ms(r)
    assert get_job(r, Q, waiting)["run_at_ms"] <= now
    assert get_job(r, Q, backing_off)["run_at_ms"] <= now
    jobs, gate = reserve(r, 2)
    assert sorted(j[0] for j in jobs) == sorted([waiting, backing_off]) and gate is None


def test_an_ordinary_back_off_is_kept_by_a_reset(r):
    prepare(r)
    jid = enqueue(r, Q)
    (job,), _ = reserve(r, 1)
    r.fcall("corral_fail", 1, Q, "h1:1", job[0], job[1], "retry", "HTTP 503")  # closed: back-off
    at = get_job(r, Q, jid)["run_at_ms"]
    r.fcall("corral_breaker_reset", 1, SVC)
    assert get_job(r, Q, jid)["run_at_ms"] == at


def test_a_success_that_reaches_min_calls_trips_on_the_failures_before_it(r):
    prepare(r)
    run_calls(r, ["fail"] * 3)
    assert breaker(r)["state"] == "closed"
    run_calls(r, ["ok"])  # 4 calls, 3 failed: 75% >= 50%
    assert breaker(r)["state"] == "open"


def test_version_1_callers_keep_working(r):
    """A worker of library version 1 during a rolling upgrade: it sends
    defer triples and reserves without max_inflight, so it never gets the
    gate element its reply parser would not know."""
    prepare(r)
    a, b = enqueue(r, Q), enqueue(r, Q)
    (ja, jb), _ = reserve(r, 2)
    assert r.fcall("corral_defer", 1, Q, "h1:1", ja[0], ja[1], 0, jb[0], jb[1], 0) == \
        ["queued", "queued"]
    assert get_job(r, Q, a)["attempts"] == 0 and get_job(r, Q, b)["attempts"] == 0
    trip(r)
    enqueue(r, Q)
    assert r.fcall("corral_reserve", 1, Q, "h1:1", 5) == []
