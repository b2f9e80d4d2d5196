"""Deadlines (docs/protocol.md, "Deadlines"): the enqueue option
deadline_ms; a job past it is not started again and ends dead "deadline
exceeded"; a run gets at most the time left, so the worker's timer stops a
call at the deadline; back-off, breaker and throttle waits that would end
past it end the job at once."""
import json

import pytest
import redis

from conftest import db_snapshot, declare, enqueue, get_job, reserve, wait_until
from worker_fixtures import HTTP_Q, make_worker, stub  # noqa: F401
from worker_fixtures import Q as WQ
from worker_fixtures import enqueue as wenqueue
from worker_fixtures import await_end

Q = "dl"
K = "corral:{dl}"


def server_ms(r):
    s, us = r.time()
    return s * 1000 + us // 1000


@pytest.mark.parametrize("bad", [0, -5, 1.5, "100", None, True, [1], 366 * 86400000 + 1])
def test_a_deadline_that_is_not_a_positive_integer_is_refused_with_baddeadline(r, bad):
    declare(r, Q)
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"deadline_ms": bad}))
    assert str(e.value).startswith("BADDEADLINE ") and "deadline_ms must be a positive" in \
        str(e.value), e.value
    with pytest.raises(redis.ResponseError, match="^BADDEADLINE"):
        r.fcall("corral_enqueue_many", 1, Q, json.dumps({"deadline_ms": bad}), "{}", "{}")
    assert db_snapshot(r) == before


def test_a_job_records_its_deadline_on_the_server_clock(r):
    declare(r, Q)
    t0 = server_ms(r)
    jid = enqueue(r, Q, "{}", deadline_ms=5000)
    d = get_job(r, Q, jid)["deadline_at_ms"]
    assert t0 + 5000 <= d <= server_ms(r) + 5000


def test_a_job_past_its_deadline_is_not_started_and_ends_dead(r):
    declare(r, Q)
    jid = enqueue(r, Q, "{}", deadline_ms=1)
    other = enqueue(r, Q, "{}")
    wait_until(lambda: server_ms(r) > get_job(r, Q, jid)["deadline_at_ms"], what="the deadline")
    jobs = reserve(r, Q, n=2)
    assert [j[0] for j in jobs] == [other]
    j = get_job(r, Q, jid)
    assert j["state"] == "dead" and j["error"] == "deadline exceeded" and j["attempts"] == 0, j
    assert r.lrange(f"{K}:dead", 0, -1) == [jid]


def test_a_run_gets_at_most_the_time_left_before_the_deadline(r):
    declare(r, Q, timeout_ms=60000)
    enqueue(r, Q, "{}", deadline_ms=2000)
    (_, _, _, _, timeout, *_), = reserve(r, Q)
    assert 1000 < timeout <= 2000


def test_a_back_off_that_would_end_past_the_deadline_ends_the_job_at_once(r):
    declare(r, Q, backoff_base_ms=60000, backoff_cap_ms=60000, max_attempts=5)
    jid = enqueue(r, Q, "{}", deadline_ms=10000)
    (_, run, *_), = reserve(r, Q)
    assert r.fcall("corral_fail", 1, Q, "host1:1", jid, run, "retry", "503") == ["dead"]
    j = get_job(r, Q, jid)
    assert j["state"] == "dead" and j["error"] == "deadline exceeded", j
    assert r.zcard(f"{K}:sched") == 0


def test_a_back_off_within_the_deadline_waits_as_before(r):
    declare(r, Q, backoff_base_ms=100, backoff_cap_ms=100, max_attempts=5)
    jid = enqueue(r, Q, "{}", deadline_ms=60000)
    (_, run, *_), = reserve(r, Q)
    assert r.fcall("corral_fail", 1, Q, "host1:1", jid, run, "retry", "503") == ["scheduled"]


def test_a_throttle_wait_past_the_deadline_ends_the_job_at_once(r):
    declare(r, Q)
    jid = enqueue(r, Q, "{}", deadline_ms=5000)
    (_, run, *_), = reserve(r, Q)
    assert r.fcall("corral_defer", 1, Q, "host1:1", jid, run, 30000, "throttle", "429") == ["dead"]
    assert get_job(r, Q, jid)["error"] == "deadline exceeded"
    short = enqueue(r, Q, "{}", deadline_ms=60000)
    (_, run, *_), = reserve(r, Q)
    assert r.fcall("corral_defer", 1, Q, "host1:1", short, run, 100, "throttle", "429") == \
        ["scheduled"]


def test_a_breaker_wait_past_the_deadline_ends_the_job_at_once(r):
    r.fcall("corral_declare_service", 1, "ai", json.dumps(
        {"window_ms": 60000, "min_calls": 1, "failure_rate": 50, "open_for_ms": 60000,
         "open_max_ms": 60000}))
    declare(r, Q, service="ai", max_attempts=5, backoff_base_ms=10, backoff_cap_ms=10)
    a = enqueue(r, Q, "{}")
    b = enqueue(r, Q, "{}", deadline_ms=5000)
    jobs = reserve(r, Q, n=2)
    runs = {j[0]: j[1] for j in jobs}
    # a's failure opens the breaker; b fails while it is open and would wait
    # open_for (60 s), past its deadline.
    r.fcall("corral_fail", 1, Q, "host1:1", a, runs[a], "retry", "503")
    assert json.loads(r.fcall_ro("corral_breaker", 1, "ai"))["state"] == "open"
    assert r.fcall("corral_fail", 1, Q, "host1:1", b, runs[b], "retry", "503") == ["dead"]
    assert get_job(r, Q, b)["error"] == "deadline exceeded"


def test_a_running_call_is_stopped_at_its_deadline_and_the_job_ends_dead(r, make_worker, stub):
    make_worker(HTTP_Q, stub.url)
    jid = wenqueue(r, {"model": "m", "stub": {"sse": "openai", "chunks": 400, "chunk_ms": 50,
                                             "key": "d1"}}, deadline_ms=700)
    j = await_end(r, jid, timeout=10)
    assert j["state"] == "dead" and j["error"] == "deadline exceeded", j
    assert j["finished_ms"] - j["created_ms"] < 700 + 1000, j  # stopped there, not after 20 s
    with stub.stub.lock:
        s = next(x for x in stub.stub.streams if x["key"] == "d1")
    assert s["closed_by_client"] and s["events_sent"] < s["events_total"], s


def test_corralctl_enqueue_deadline_sets_the_jobs_deadline(r, build_dir, redis_server, tmp_path):
    from conftest import binary_path
    import subprocess
    declare(r, Q)
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    ctl = binary_path(build_dir, "corralctl")
    t0 = server_ms(r)
    out = subprocess.run([ctl, "-c", str(conf), "enqueue", Q, "{}", "--deadline", "30s"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    d = get_job(r, Q, out.stdout.strip())["deadline_at_ms"]
    assert t0 + 30000 <= d <= server_ms(r) + 30000
    bad = subprocess.run([ctl, "-c", str(conf), "enqueue", Q, "{}", "--deadline", "0"],
                         capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2 and "--deadline must be at least 1ms" in bad.stderr
