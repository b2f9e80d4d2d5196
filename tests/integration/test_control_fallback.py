"""Fallback across services (docs/breakers.md, "Fallback"): a queue's
`service = A, B` list. A reserve leases its jobs to the first service that
takes calls and writes it in the job's served_by; when A's breaker opens or
A is throttled, jobs go to B without spending an attempt, and come back to
A when A closes; the calls that end a run release the service it used.
First at the level of the function library (reserve, ack, fail, defer,
reclaim and cancel driven directly), then with real workers calling two
stand-ins, corrald --check and corralctl status."""
import json
import os
import subprocess
import time

import pytest
import redis

from conftest import binary_path, declare, enqueue, get_job, server_ms, stats, wait_until

Q = "calls"
K = f"corral:{{{Q}}}"


def declare_service(r, name, **settings):
    base = {"window_ms": 60000, "min_calls": 2, "failure_rate": 50, "slow_call_ms": 30000,
            "slow_rate": 80, "open_for_ms": 300, "open_max_ms": 1200, "half_open_calls": 1}
    base.update(settings)
    return r.fcall("corral_declare_service", 1, name, json.dumps(base))


def prepare(r, service="A, B", **a_settings):
    declare_service(r, "A", **a_settings)
    declare_service(r, "B", model="b-model")
    declare(r, Q, service=service, max_attempts=5, backoff_base_ms=60000,
            backoff_cap_ms=60000)


def breaker(r, name):
    return json.loads(r.fcall_ro("corral_breaker", 1, name))


def reserve(r, n=1, worker="h1:1", max_inflight=0):
    """-> (jobs, gate): gate is the reply's "gate <ms> <why>" or None."""
    out = r.fcall("corral_reserve", 1, Q, worker, n, max_inflight)
    gate = out.pop() if out and isinstance(out[-1], str) else None
    return out, gate


def fail(r, job, worker="h1:1"):
    return r.fcall("corral_fail", 1, Q, worker, job[0], job[1], "retry", "HTTP 503: down")[0]


def ack(r, job, worker="h1:1"):
    return r.fcall("corral_ack", 1, Q, worker, job[0], job[1], "{}")[0]


def inflight(r, name, host="h1"):
    return int(r.hget(f"corral:svc:{name}", f"inflight:{host}") or 0)


def trip_a(r):
    """Two failed calls on A: its breaker opens (min_calls 2, 50%)."""
    for _ in range(2):
        enqueue(r, Q)
    jobs, _ = reserve(r, 2)
    assert [j[6] for j in jobs] == ["A", "A"]
    for j in jobs:
        fail(r, j)
    assert breaker(r, "A")["state"] == "open"


def test_jobs_go_to_the_first_service_while_its_breaker_is_closed(r):
    prepare(r)
    jid = enqueue(r, Q)
    (job,), gate = reserve(r)
    assert gate is None and job[0] == jid and job[6] == "A"
    j = get_job(r, Q, jid)
    assert j["served_by"] == "A" and j["served_model"] == ""
    assert inflight(r, "A") == 1 and inflight(r, "B") == 0
    assert ack(r, job) == "done"
    assert inflight(r, "A") == 0
    assert breaker(r, "A")["calls"] == 1 and breaker(r, "B")["calls"] == 0


def test_when_the_first_breaker_opens_jobs_go_to_the_next_with_attempts_unchanged(r):
    prepare(r)
    late = enqueue(r, Q)
    (late_job,), _ = reserve(r)  # a call to A still under way when A trips
    trip_a(r)
    # It fails after the trip: the outage is to blame, its attempt comes
    # back and it is due at once (not when A may half-open), for B.
    assert fail(r, late_job) == "scheduled"
    j = get_job(r, Q, late)
    assert j["attempts"] == 0 and j["run_at_ms"] <= server_ms(r)
    fresh = enqueue(r, Q)
    jobs, gate = reserve(r, 5)
    assert gate is None
    assert sorted(j[0] for j in jobs) == sorted([late, fresh])
    assert all(j[6] == "B" and j[2] == 1 for j in jobs)  # B, first attempt each
    for jid in (late, fresh):
        rec = get_job(r, Q, jid)
        assert rec["served_by"] == "B" and rec["served_model"] == "b-model"
    assert inflight(r, "B") == 2
    for job in jobs:
        assert ack(r, job) == "done"
    # B's slots and outcomes are B's, not A's.
    assert inflight(r, "B") == 0 and inflight(r, "A") == 0
    assert breaker(r, "B")["calls"] == 2
    assert breaker(r, "A")["state"] == "open"


def test_jobs_come_back_to_the_first_service_when_its_breaker_is_reset(r):
    prepare(r)
    trip_a(r)
    enqueue(r, Q)
    assert reserve(r)[0][0][6] == "B"
    r.fcall("corral_breaker_reset", 1, "A")
    enqueue(r, Q)
    assert reserve(r)[0][0][6] == "A"


def test_jobs_come_back_to_the_first_service_after_a_successful_probe(r):
    prepare(r)
    trip_a(r)
    wait_until(lambda: server_ms(r) >= breaker(r, "A")["open_until_ms"], what="A's open time")
    enqueue(r, Q)
    enqueue(r, Q)
    # Half-open with one probe permit: one call to A; while it runs, B.
    (probe,), gate = reserve(r, 2)
    assert probe[6] == "A" and gate is not None
    jobs = [probe] + reserve(r, 2)[0]
    assert [j[6] for j in jobs] == ["A", "B"]
    assert get_job(r, Q, jobs[0][0])["probe"] == "1"
    assert ack(r, jobs[0]) == "done"
    assert breaker(r, "A")["state"] == "closed"
    assert ack(r, jobs[1]) == "done"
    enqueue(r, Q)
    assert reserve(r)[0][0][6] == "A"


def test_a_throttled_first_service_sends_jobs_to_the_next_without_spending_attempts(r):
    prepare(r)
    jid = enqueue(r, Q)
    (job,), _ = reserve(r)
    assert job[6] == "A"
    out = r.fcall("corral_defer", 1, Q, "h1:1", job[0], job[1], 5000, "throttle",
                  "HTTP 429: slow down")
    assert out == ["queued"]  # at once, for B: not after A's 5 s
    assert breaker(r, "A")["throttled_until_ms"] > server_ms(r)
    assert inflight(r, "A") == 0
    (again,), gate = reserve(r)
    assert gate is None and again[0] == jid and again[6] == "B" and again[2] == 1


def test_a_full_first_service_sends_jobs_to_the_next_and_its_slots_are_not_leaked(r):
    prepare(r)
    for _ in range(3):
        enqueue(r, Q)
    (a,), _ = reserve(r, 1, max_inflight=1)
    (b,), _ = reserve(r, 1, max_inflight=1)  # A is at its max_inflight on h1
    assert (a[6], b[6]) == ("A", "B")
    # Each outcome kind gives back the slot of the service the run used.
    assert r.fcall("corral_defer", 1, Q, "h1:1", b[0], b[1], 0, "", "")[0] == "queued"
    assert inflight(r, "B") == 0 and inflight(r, "A") == 1
    (b2,), _ = reserve(r, 1, max_inflight=1)
    assert b2[6] == "B"
    assert fail(r, b2) == "scheduled"
    assert inflight(r, "B") == 0 and inflight(r, "A") == 1
    (b3,), _ = reserve(r, 1, max_inflight=1)
    assert b3[6] == "B"
    r.fcall("corral_cancel", 1, Q, b3[0])
    assert inflight(r, "B") == 0 and inflight(r, "A") == 1
    enqueue(r, Q)
    (b4,), _ = reserve(r, 1, max_inflight=1)
    assert b4[6] == "B"
    assert r.fcall("corral_reclaim_worker", 1, Q, "h1:1") == 2
    assert inflight(r, "B") == 0 and inflight(r, "A") == 0


def test_a_service_over_its_spend_budget_sends_jobs_to_the_next(r):
    declare_service(r, "A", price_input_nano=10 ** 9, budget_nano=1)
    declare_service(r, "B")
    declare(r, Q, service=["A", "B"])
    r.hset("corral:svc:A", mapping={"spend_period": server_ms(r) // 86400000,
                                    "spent_nano": 5})
    enqueue(r, Q)
    assert reserve(r)[0][0][6] == "B"


def test_when_no_service_takes_calls_the_worker_waits_for_the_earliest(r):
    prepare(r)
    trip_a(r)
    declare_service(r, "B", min_calls=1)
    enqueue(r, Q)
    (job,), _ = reserve(r)
    assert job[6] == "B" and fail(r, job) == "scheduled"
    assert breaker(r, "B")["state"] == "open"
    enqueue(r, Q)
    jobs, gate = reserve(r)
    assert jobs == [] and gate.startswith("gate ") and "breaker open" in gate
    assert int(gate.split()[1]) <= 1200


def test_the_share_each_service_served_is_in_the_queue_stats(r):
    prepare(r)
    for _ in range(3):
        enqueue(r, Q)
    for job in reserve(r, 3)[0]:
        ack(r, job)
    r.fcall("corral_breaker_reset", 1, "A")
    trip_a(r)
    enqueue(r, Q)
    ack(r, reserve(r)[0][0])
    s = stats(r, Q)
    assert s["services"] == ["A", "B"] and s["service"] == "A"
    assert s["served"] == {"A": 5, "B": 1}


def test_the_queue_stats_show_the_breaker_jobs_go_to_so_the_pool_is_not_held(r):
    prepare(r)
    assert stats(r, Q)["breaker"]["service"] == "A"
    trip_a(r)
    b = stats(r, Q)["breaker"]
    assert b["service"] == "B" and b["hold"] == ""
    declare_service(r, "B", min_calls=1)
    enqueue(r, Q)
    fail(r, reserve(r)[0][0])
    b = stats(r, Q)["breaker"]  # none takes calls: the first's, held
    assert b["service"] == "A" and b["hold"].startswith("breaker open")


def test_a_single_service_queue_is_as_before(r):
    declare_service(r, "A")
    declare(r, Q, service="A")
    jid = enqueue(r, Q)
    (job,), _ = reserve(r)
    assert job[6] == "A"
    j = get_job(r, Q, jid)
    assert "served_by" not in j and "served_model" not in j
    s = stats(r, Q)
    assert "services" not in s and "served" not in s
    assert r.hget(f"{K}:conf", "service") == "A"


def test_a_fallback_list_with_a_bad_or_repeated_name_is_refused(r):
    declare_service(r, "A")
    with pytest.raises(redis.ResponseError, match='service "A" is listed twice'):
        declare(r, Q, service="A, A")
    with pytest.raises(redis.ResponseError, match='bad service name "a b"'):
        declare(r, Q, service=["A", "a b"])
    assert not r.exists(f"{K}:conf")


# --- real workers, two stand-ins ------------------------------------------

@pytest.fixture
def two_stubs():
    import sys
    from conftest import REPO
    sys.path.insert(0, os.path.join(REPO, "tests"))
    import aistub
    a, b = aistub.Server().start(), aistub.Server().start()
    yield a, b
    a.stop()
    b.stop()


def fallback_conf(tmp_path, redis_server, a_url, b_url, queue="service = A, B"):
    (tmp_path / "a.key").write_text("sk-service-a\n")
    (tmp_path / "b.key").write_text("sk-service-b\n")
    conf = tmp_path / "fb.conf"
    conf.write_text(
        redis_server.redis_section() + "[pool]\nconcurrency = 2\ndrain_timeout = 5s\n"
        f"[queue {Q}]\nhandler = http\n{queue}\nmax_attempts = 5\nbackoff = 50ms..100ms\n"
        "timeout = 5s\n"
        f"[service A]\nurl = {a_url}\napi_key_file = {tmp_path / 'a.key'}\n"
        "breaker_min_calls = 2\nbreaker_failure_rate = 50%\nbreaker_open_for = 60s\n"
        "breaker_open_max = 120s\n"
        f"[service B]\nurl = {b_url}\napi_key_file = {tmp_path / 'b.key'}\nmodel = b-model\n")
    return conf


def await_done(r, jid, timeout=15):
    fin = f"{K}:fin:{jid}"
    assert r.blmove(fin, fin, timeout, "RIGHT", "RIGHT") is not None, get_job(r, Q, jid)
    return get_job(r, Q, jid)


def test_a_worker_calls_the_service_its_reserve_chose_and_releases_it(r, two_stubs, build_dir,
                                                                      redis_server, tmp_path):
    from worker_fixtures import Worker
    a, b = two_stubs
    with a.stub.lock:
        a.stub.default = {"status": 503}
    conf = fallback_conf(tmp_path, redis_server, a.url, b.url)
    w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "fb.log"))
    try:
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker")
        payload = {"model": "a-model", "max_tokens": 2,
                   "messages": [{"role": "user", "content": "hi"}]}
        ids = [enqueue(r, Q, json.dumps(payload)) for _ in range(6)]
        jobs = [await_done(r, jid) for jid in ids]
        assert all(j["state"] == "done" and j["served_by"] == "B" for j in jobs), jobs
        assert all(j["served_model"] == "b-model" for j in jobs)
        assert all(json.loads(j["result"])["model"] == "b-model" for j in jobs)
        assert breaker(r, "A")["state"] == "open"
        with a.stub.lock:
            a_calls, a_auth = a.stub.requests, set(a.stub.auth)
        with b.stub.lock:
            b_calls, b_auth = b.stub.requests, set(b.stub.auth)
            assert all('"model":"b-model"' in body for body in b.stub.bodies)
        assert a_calls >= 2 and b_calls == 6  # A tripped after two failures
        assert a_auth == {"Bearer sk-service-a"} and b_auth == {"Bearer sk-service-b"}
        # Only the two failures that tripped A spent an attempt; calls to A
        # that failed after the trip were refunded.
        assert sum(j["attempts"] for j in jobs) == 6 + 2
        for name in ("A", "B"):
            h = r.hgetall(f"corral:svc:{name}")
            assert all(int(v) == 0 for k, v in h.items() if k.startswith("inflight:")), (name, h)
        assert breaker(r, "B")["calls"] == 6
    finally:
        assert w.stop() == 0, w.logs()


def check(build_dir, conf):
    return subprocess.run([binary_path(build_dir, "corrald"), "-c", str(conf), "--check"],
                          capture_output=True, text=True, timeout=20)


def test_corrald_check_names_an_unknown_or_repeated_service_of_a_fallback_list(
        build_dir, redis_server, tmp_path):
    url = "http://127.0.0.1:9/v1"
    res = check(build_dir, fallback_conf(tmp_path, redis_server, url, url,
                                         queue="service = A, C"))
    assert res.returncode == 1
    assert '[queue calls] service: there is no [service C] section (got "C")' in res.stderr
    res = check(build_dir, fallback_conf(tmp_path, redis_server, url, url,
                                         queue="service = A, B, A"))
    assert res.returncode == 1
    assert '[queue calls] service: "A" is named twice in the fallback list' in res.stderr
    res = check(build_dir, fallback_conf(tmp_path, redis_server, url, url))
    assert res.returncode == 0, res.stderr
    assert "service = A, B" in res.stdout


def test_corralctl_status_shows_the_share_each_service_served(r, build_dir, redis_server,
                                                             tmp_path):
    prepare(r)
    for _ in range(3):
        enqueue(r, Q)
    for job in reserve(r, 3)[0]:
        ack(r, job)
    r.fcall("corral_breaker_reset", 1, "A")  # a fresh window
    trip_a(r)
    enqueue(r, Q)
    ack(r, reserve(r)[0][0])
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    ctl = binary_path(build_dir, "corralctl")
    out = subprocess.run([ctl, "-c", str(conf), "status", "--json"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    (q,) = [q for q in json.loads(out.stdout)["queues"] if q["name"] == Q]
    assert q["services"] == ["A", "B"] and q["served"] == {"A": 5, "B": 1}
    out = subprocess.run([ctl, "-c", str(conf), "status"], capture_output=True, text=True,
                         timeout=10)
    assert out.returncode == 0, out.stderr
    assert f"fallback {Q}: A 83% (5), B 17% (1) of 6 jobs in the last minute" in out.stdout


def test_a_worker_moves_on_to_the_next_service_when_the_first_answers_429(
        r, two_stubs, build_dir, redis_server, tmp_path):
    from worker_fixtures import Worker
    a, b = two_stubs
    with a.stub.lock:
        a.stub.default = {"status": 429, "retry_after": "30"}
    conf = fallback_conf(tmp_path, redis_server, a.url, b.url)
    w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "t.log"))
    try:
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker")
        ids = [enqueue(r, Q, json.dumps({"messages": []})) for _ in range(4)]
        jobs = [await_done(r, jid) for jid in ids]
        # Not after A's 30 s: at once to B, no attempt spent on the 429.
        assert all(j["state"] == "done" and j["served_by"] == "B" for j in jobs), jobs
        assert all(j["attempts"] == 1 for j in jobs)
        assert breaker(r, "A")["throttled_until_ms"] > server_ms(r) + 20000
        with a.stub.lock:
            assert a.stub.requests >= 1
    finally:
        assert w.stop() == 0, w.logs()
