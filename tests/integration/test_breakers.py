"""Fleet-wide breakers, throttles and limits with real processes: two
corrald instances (as two hosts would) sharing one Redis, each with its own
workers, calling the AI stand-in over loopback HTTP. What is counted is what
reaches the stand-in."""
import json
import os
import subprocess

import pytest

from conftest import binary_path, enqueue, enqueue_many, get_job, wait_until
from test_supervisor import Corrald, reap
from worker_fixtures import stub  # noqa: F401 (a fixture)

Q = "prompts"
SVC = "ai"


def stub_times(srv):
    with srv.stub.lock:
        return list(srv.stub.times)


def stub_control(srv, default):
    with srv.stub.lock:
        srv.stub.default = default


@pytest.fixture
def fleet(build_dir, tmp_path, redis_server):
    exe = binary_path(build_dir, "corrald")
    started = []
    key = tmp_path / "ai.key"
    key.write_text("sk-breaker-test\n")

    def start(url, service="", queue="", hosts=2, max_workers=2):
        for h in range(hosts):
            conf = tmp_path / f"host{h}.conf"
            conf.write_text(
                redis_server.redis_section() +
                f"[pool]\nmin = 2\nmax = {max_workers}\nconcurrency = 2\ndrain_timeout = 5s\n"
                "[scale]\ntick = 250ms\n"
                f"[queue {Q}]\nhandler = http\nservice = {SVC}\ntimeout = 5s\n"
                f"backoff = 100ms..200ms\n{queue}\n"
                f"[service {SVC}]\nurl = {url}\napi_key_file = {key}\n{service}\n")
            started.append(Corrald(exe, str(conf), str(tmp_path / f"host{h}.log")))
        for c in started:
            wait_until(lambda: len(c.workers()) == 2, what="each host's workers")
        return started

    yield start
    reap(started)


def breaker(r):
    return json.loads(r.fcall_ro("corral_breaker", 1, SVC))


def ctl_status(build_dir, r, redis_server, tmp_path):
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    out = subprocess.run([os.path.join(build_dir, "corralctl"), "-c", str(conf), "status",
                          "--json"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_failing_service_is_stopped_fleet_wide_and_no_job_is_lost(r, stub, fleet):
    min_calls, slots = 10, 2 * 4 * 2  # two hosts, up to four workers of two slots
    stub_control(stub, {"status": 503})
    hosts = fleet(stub.url, service=f"breaker_min_calls = {min_calls}\n"
                  "breaker_failure_rate = 50%\nbreaker_open_for = 1s\n"
                  "breaker_open_max = 4s\nbreaker_half_open_calls = 2",
                  queue="max_attempts = 3", max_workers=4)
    ids = enqueue_many(r, Q, 60)
    wait_until(lambda: breaker(r)["state"] == "open", timeout=10, what="the breaker to open")
    # Calls already under way when it tripped still end; then the fleet
    # stops calling, whatever the number of workers.
    wait_until(lambda: r.zcard(f"corral:{{{Q}}}:active") == 0, what="calls in flight to end")
    at_trip = len(stub_times(stub))
    assert at_trip <= min_calls + slots, at_trip
    # While open, only half-open probes (2 at a time) go out; they fail and
    # reopen it for longer (1 s, then 2 s).
    wait_until(lambda: breaker(r)["trips"] >= 2, timeout=10, what="two failed probe rounds")
    probes = len(stub_times(stub)) - at_trip
    assert probes <= 2 * 2, probes
    # Every corrald logged the change and holds its pool, saying why.
    for h in hosts:
        assert "breaker open: no calls to the service" in h.logs()
    hb = r.hgetall(f"corral:host:{os.uname().nodename}")
    assert hb["last_decision"].startswith("hold") and "service ai" in hb["last_decision"], hb
    # No job is dead, none spent an attempt on the open breaker.
    states = [get_job(r, Q, i) for i in ids]
    assert not [j for j in states if j["state"] == "dead"]
    spent = sum(j["attempts"] for j in states)
    assert spent <= min_calls + slots, spent
    # The service recovers: probes succeed, the breaker closes, all complete.
    stub_control(stub, {})
    wait_until(lambda: all(get_job(r, Q, i)["state"] == "done" for i in ids), timeout=30,
               what="every job to complete after the recovery")
    assert breaker(r)["state"] == "closed"
    assert all(j["attempts"] <= 3 for j in (get_job(r, Q, i) for i in ids))
    for h in hosts:
        assert "breaker closed" in h.logs()


def test_a_429_with_retry_after_pauses_every_call_fleet_wide(r, stub, fleet):
    fleet(stub.url)
    first = enqueue(r, Q, {"stub": {"status": 429, "retry_after": "2", "fail_times": 1,
                                    "key": "t"}})
    wait_until(lambda: breaker(r)["throttled_until_ms"] > 0, what="the throttle")
    t429 = stub_times(stub)[0]
    ids = enqueue_many(r, Q, 12)
    wait_until(lambda: all(get_job(r, Q, i)["state"] == "done" for i in ids + [first]), timeout=15,
               what="the work to resume after the pause")
    times = stub_times(stub)
    assert len(times) == 14
    # nothing reached the service during the two seconds
    assert min(times[1:]) - t429 >= 1.95, [round(t - t429, 3) for t in times]
    j = get_job(r, Q, first)
    assert j["attempts"] == 1 and j["deferrals"] == 1


def test_max_inflight_is_never_exceeded_per_host(r, stub, fleet):
    stub_control(stub, {"delay_ms": 150})
    fleet(stub.url, service="max_inflight = 3", hosts=1)
    ids = enqueue_many(r, Q, 30)
    wait_until(lambda: all(get_job(r, Q, i)["state"] == "done" for i in ids), timeout=30,
               what="every job")
    # 2 workers x 2 slots = 4 would fit; the host's limit is 3 and is reached
    assert stub.stub.max_inflight == 3


def test_rate_is_never_exceeded_fleet_wide(r, stub, fleet):
    fleet(stub.url, service="rate = 5/s")
    ids = enqueue_many(r, Q, 20)
    wait_until(lambda: all(get_job(r, Q, i)["state"] == "done" for i in ids), timeout=30,
               what="every job")
    times = sorted(stub_times(stub))
    assert len(times) == 20
    # In any window of one second (less 50 ms for the time between the grant
    # in Redis and the request's arrival), at most 5 requests arrived.
    worst = max(sum(1 for t in times if s <= t < s + 0.95) for s in times)
    assert worst <= 5, worst
    assert times[-1] - times[0] >= 2.9  # 20 calls at 5/s need three more periods


def test_insufficient_quota_stops_calls_and_shows_in_status(r, stub, fleet, build_dir,
                                                           redis_server, tmp_path):
    stub_control(stub, {"status": 429, "body": {"error": {"type": "insufficient_quota"}}})
    hosts = fleet(stub.url)
    ids = enqueue_many(r, Q, 10)
    wait_until(lambda: breaker(r)["state"] == "open", what="the breaker to open")
    wait_until(lambda: r.zcard(f"corral:{{{Q}}}:active") == 0, what="calls in flight to end")
    calls = len(stub_times(stub))
    assert calls <= 8  # at most one per slot, once
    st = ctl_status(build_dir, r, redis_server, tmp_path)
    (b,) = [b for b in st["breakers"] if b["service"] == SVC]
    assert b["state"] == "open" and b["reason"].startswith("quota: HTTP 429")
    assert b["open_until_ms"] - st["time_ms"] > 290_000
    assert all(get_job(r, Q, i)["state"] in ("queued", "scheduled") for i in ids)
    assert all(get_job(r, Q, i)["attempts"] == 0 for i in ids)
    # the workers wait for the service: each has asked and been told
    wait_until(lambda: r.hlen(f"corral:svc:{SVC}:sl") == 1, what="the host to wait")
    assert len(stub_times(stub)) == calls
    # an operator fixes billing and resets the breaker: work resumes at once
    stub_control(stub, {})
    out = subprocess.run([os.path.join(build_dir, "corralctl"), "-c", str(tmp_path / "ctl.conf"),
                          "breaker", SVC, "reset"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: all(get_job(r, Q, i)["state"] == "done" for i in ids), timeout=10,
               what="every job after the reset")
    del hosts
