"""corral_ack_reserve: a worker's outcomes and its request for the next jobs
in one call, under the same rules as corral_ack then corral_reserve: stale
and reclaimed outcomes write nothing, a paused queue hands out nothing, the
service's gates hold jobs back, and bad arguments refuse the whole call."""
import json
import re

import pytest
import redis

from conftest import (db_snapshot, declare, enqueue, get_job, qkey, reserve,
                      server_ms, wait_until)

Q = "jobs"
K = qkey(Q)
W = "host1:1"
SVC = "ai"


def ack_reserve(r, outcomes, n=1, max_inflight=0, worker=W):
    """-> (acks, jobs, gate): gate is None or the "gate <ms> <why>" text."""
    args = [worker, n, max_inflight]
    for jid, run, result in outcomes:
        args += [jid, run, result]
    acks, jobs = r.fcall("corral_ack_reserve", 1, Q, *args)
    gate = jobs.pop() if jobs and isinstance(jobs[-1], str) else None
    return acks, jobs, gate


@pytest.fixture
def q(r):
    declare(r, Q, max_result=100, lease_ms=200)
    return r


def test_ack_reserve_acks_the_outcome_and_leases_the_next_job_in_one_call(q):
    first, second = enqueue(q, Q, {"n": 1}), enqueue(q, Q, {"n": 2})
    run = reserve(q, Q)[0][1]
    acks, jobs, gate = ack_reserve(q, [(first, run, '{"answer": 1}')])
    assert acks == ["done"] and gate is None
    assert [j[0] for j in jobs] == [second] and jobs[0][1] == "1"
    assert jobs[0][7] == '{"n": 2}'
    j1, j2 = get_job(q, Q, first), get_job(q, Q, second)
    assert j1["state"] == "done" and j1["result"] == '{"answer": 1}'
    assert q.lrange(f"{K}:fin:{first}", 0, -1) == ["done"]
    assert j2["state"] == "active" and j2["worker"] == W
    assert q.zscore(f"{K}:active", first) is None
    assert q.zscore(f"{K}:active", second) is not None
    st = q.hgetall(f"{K}:st:{server_ms(q) // 60000}")
    assert st["done"] == "1" and st["enq"] == "2" and "pn" not in st  # pn: sum of h* (v7)
    assert sum(int(v) for f, v in st.items() if re.fullmatch(r"h\d+", f)) == 1


def test_ack_reserve_without_outcomes_is_a_reserve(q):
    ids = [enqueue(q, Q) for _ in range(3)]
    acks, jobs, gate = ack_reserve(q, [], n=2)
    assert acks == [] and [j[0] for j in jobs] == ids[:2] and gate is None


def test_ack_reserve_of_many_outcomes_answers_each_and_fills_the_slots(q):
    ids = [enqueue(q, Q) for _ in range(5)]
    held = reserve(q, Q, 3)
    outcomes = [(jid, run, f'"r{jid}"') for jid, run, *_ in held]
    outcomes[1] = (held[1][0], "999", "{}")  # a run that never was
    acks, jobs, _ = ack_reserve(q, outcomes, n=4)
    assert acks == ["done", "STALE", "done"]
    assert [j[0] for j in jobs] == ids[3:]
    assert get_job(q, Q, held[1][0])["state"] == "active"


def test_stale_and_reclaimed_outcomes_write_nothing_and_the_reserve_still_runs(q):
    lost = enqueue(q, Q)
    old_run = reserve(q, Q)[0][1]
    wait_until(lambda: q.fcall("corral_reclaim", 1, Q) >= 1, timeout=5, what="lease expiry")
    before = get_job(q, Q, lost)
    acks, jobs, _ = ack_reserve(q, [(lost, old_run, "{}"), ("12345", "1", "{}")])
    assert acks == ["RECLAIMED", "STALE"]
    # the reserve took the requeued job again: a new run, the old one's
    # result nowhere
    assert [j[0] for j in jobs] == [lost] and jobs[0][1] == str(int(old_run) + 1)
    after = get_job(q, Q, lost)
    assert "result" not in after and after["attempts"] == before["attempts"] + 1
    assert not q.exists(f"{K}:fin:{lost}")


def test_a_paused_queue_takes_the_outcomes_and_hands_out_nothing(q):
    a, b = enqueue(q, Q), enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    q.fcall("corral_pause", 1, Q)
    acks, jobs, gate = ack_reserve(q, [(a, run, "{}")])
    assert acks == ["done"] and jobs == [] and gate is None
    assert get_job(q, Q, b)["state"] == "queued"


def test_a_result_over_max_result_ends_the_job_dead_and_the_reserve_goes_on(q):
    a, b = enqueue(q, Q), enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    acks, jobs, _ = ack_reserve(q, [(a, run, "x" * 101)])
    assert acks == ["dead"] and [j[0] for j in jobs] == [b]
    assert get_job(q, Q, a)["error"] == "result is 101 bytes, limit is 100 (max_result)"


@pytest.mark.parametrize("args, word", [
    (["", 1, 0], "BADARG"),                      # no worker id
    ([W, 0, 0], "BADARG"),                       # count below 1
    ([W, 1001, 0], "BADARG"),                    # count above 1000
    ([W, 1, -1], "BADARG"),                      # max_inflight below 0
    ([W, 1, 0, "1", "1"], "BADARG"),             # a triple cut short
])
def test_bad_arguments_refuse_the_whole_call_and_ack_nothing(q, args, word):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    if len(args) == 3:
        args = args + [jid, run, "{}"]
    before = db_snapshot(q)
    with pytest.raises(redis.ResponseError) as e:
        q.fcall("corral_ack_reserve", 1, Q, *args)
    assert str(e.value).startswith(word + " ")
    assert db_snapshot(q) == before


def test_an_unknown_queue_is_refused(r):
    with pytest.raises(redis.ResponseError, match="^NOQUEUE "):
        r.fcall("corral_ack_reserve", 1, "nosuch", W, 1, 0)


def declare_service(r, **settings):
    base = {"window_ms": 60000, "min_calls": 4, "failure_rate": 50, "open_for_ms": 300,
            "open_max_ms": 1200, "half_open_calls": 2}
    base.update(settings)
    r.fcall("corral_declare_service", 1, SVC, json.dumps(base))


def test_the_acked_calls_free_their_max_inflight_slots_for_the_reserve(r):
    declare_service(r)
    declare(r, Q, service=SVC)
    a, b, c = enqueue(r, Q), enqueue(r, Q), enqueue(r, Q)
    held = r.fcall("corral_reserve", 1, Q, W, 5, 1)
    assert [j[0] for j in held[:-1]] == [a] and held[-1].startswith("gate ")
    # at its limit the call acks the one in flight and so may take one more
    acks, jobs, gate = ack_reserve(r, [(a, held[0][1], "{}")], n=5, max_inflight=1)
    assert acks == ["done"] and [j[0] for j in jobs] == [b]
    assert gate.split(" ", 2)[2] == "max_inflight 1 reached on host host1"
    assert r.hget(f"corral:svc:{SVC}", "inflight:host1") == "1"
    assert get_job(r, Q, c)["state"] == "queued"


def test_an_open_breaker_gates_the_reserve_part(r):
    declare_service(r)
    declare(r, Q, service=SVC, backoff_base_ms=60000, backoff_cap_ms=60000)
    ids = [enqueue(r, Q) for _ in range(5)]
    held = r.fcall("corral_reserve", 1, Q, W, 4, 0)
    for jid, run, *_ in held:
        r.fcall("corral_fail", 1, Q, W, jid, run, "retry", "HTTP 503: down")
    assert json.loads(r.fcall_ro("corral_breaker", 1, SVC))["state"] == "open"
    acks, jobs, gate = ack_reserve(r, [], n=1)
    assert acks == [] and jobs == []
    assert gate.split(" ", 2)[2].startswith("breaker open: failure rate 100%")
    assert get_job(r, Q, ids[4])["state"] == "queued"


def test_a_redeclared_queue_s_settings_apply_to_the_next_call(q):
    # the library keeps parsed settings between calls (queue/lua/prelude.lua)
    a, b = enqueue(q, Q), enqueue(q, Q)
    held = reserve(q, Q, 2)
    assert q.fcall("corral_ack", 1, Q, W, a, held[0][1], "x" * 50) == ["done"]
    declare(q, Q, max_result=10, lease_ms=200)
    assert q.fcall("corral_ack", 1, Q, W, b, held[1][1], "x" * 50) == ["dead"]


def test_a_redeclared_service_s_settings_apply_to_the_next_call(r):
    declare_service(r)
    declare(r, Q, service=SVC)
    enqueue(r, Q)
    declare_service(r, rate=1, rate_period_ms=60000)
    enqueue(r, Q)
    jobs = r.fcall("corral_reserve", 1, Q, W, 5, 0)
    assert len(jobs) == 2 and jobs[-1].startswith("gate ")
    assert "rate 1 per 60000 ms reached" in jobs[-1]


def cmd_calls(r, name):
    return r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0)


def test_with_a_service_one_state_read_and_no_inflight_write_at_steady_state(r):
    # the acks and the reserve share one read of the service's state, and
    # the host's calls in flight change by the net (reserved - acked): one
    # job out and one in leaves it as it was, with no write for it
    declare_service(r)
    declare(r, Q, service=SVC)
    a, b = enqueue(r, Q), enqueue(r, Q)
    [held] = r.fcall("corral_reserve", 1, Q, W, 1, 4)[:1]
    assert held[0] == a and r.hget(f"corral:svc:{SVC}", "inflight:host1") == "1"
    hmget, hincrby = cmd_calls(r, "hmget"), cmd_calls(r, "hincrby")
    acks, jobs, gate = ack_reserve(r, [(a, held[1], "{}")], n=1, max_inflight=4)
    assert acks == ["done"] and [j[0] for j in jobs] == [b] and gate is None
    assert r.hget(f"corral:svc:{SVC}", "inflight:host1") == "1"
    # HMGETs: K:conf, the job, the service's state, the next job (before: 5,
    # the service's state read by each half); HINCRBYs: the window's calls
    # and the statistics (done, the histogram, ps: bucket and totals), no
    # in-flight count (before: 9, one up and one down)
    assert cmd_calls(r, "hmget") - hmget == 4
    assert cmd_calls(r, "hincrby") - hincrby == 7


def test_with_a_service_the_net_inflight_write_counts_acks_and_grants_apart(r):
    declare_service(r)
    declare(r, Q, service=SVC)
    ids = [enqueue(r, Q) for _ in range(3)]
    held = r.fcall("corral_reserve", 1, Q, W, 3, 0)
    assert [j[0] for j in held] == ids
    key = f"corral:svc:{SVC}"
    assert r.hget(key, "inflight:host1") == "3"
    # two out, none in (the queue is empty): down by two
    acks, jobs, _ = ack_reserve(r, [(j[0], j[1], "{}") for j in held[:2]], n=2)
    assert acks == ["done", "done"] and jobs == []
    assert r.hget(key, "inflight:host1") == "1"
    # none out, two in: up by two
    more = [enqueue(r, Q), enqueue(r, Q)]
    acks, jobs, _ = ack_reserve(r, [], n=2)
    assert acks == [] and [j[0] for j in jobs] == more
    assert r.hget(key, "inflight:host1") == "3"
    # an outcome of another host's worker is STALE and frees nothing here
    acks, jobs, _ = ack_reserve(r, [(held[2][0], held[2][1], "{}")], n=1, worker="host2:1")
    assert acks == ["STALE"] and jobs == []
    assert r.hget(key, "inflight:host1") == "3"


def test_with_a_service_a_paused_queue_still_frees_the_acked_slots(r):
    declare_service(r)
    declare(r, Q, service=SVC)
    a = enqueue(r, Q)
    [held] = r.fcall("corral_reserve", 1, Q, W, 1, 0)
    r.fcall("corral_pause", 1, Q)
    acks, jobs, _ = ack_reserve(r, [(a, held[1], "{}")], n=1)
    assert acks == ["done"] and jobs == []
    assert r.hget(f"corral:svc:{SVC}", "inflight:host1") == "0"
