"""corral-worker as a real process: http, exec and echo handlers against a
real redis-server and the AI-service stand-in, leases, drain, Redis restarts
and the fd 3 channel to corrald."""
import json
import os
import re
import signal
import socket
import time
from email.utils import formatdate

import pytest

from conftest import RedisServer, wait_until
from worker_fixtures import (API_KEY, HTTP_Q, K, Q, aof_redis, await_end, enqueue,  # noqa: F401
                             job, make_worker, stub, stub_stats)


# --- http ----------------------------------------------------------------


def test_http_success_stores_the_answer_and_sends_key_and_headers(r, stub, make_worker):
    w = make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    j = await_end(r, jid)
    assert j["state"] == "done"
    answer = json.loads(j["result"])
    assert answer["choices"][0]["message"]["content"] == "echo: hello"
    assert stub_stats(stub)["auth"] == [f"Bearer {API_KEY}"]
    assert w.stop() == 0
    assert API_KEY not in w.logs()


@pytest.mark.parametrize("status", [500, 503, 408])
def test_retryable_statuses_are_retried_then_succeed(r, stub, make_worker, status):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"status": status, "fail_times": 2, "key": f"k{status}"}})
    j = await_end(r, jid)
    assert j["state"] == "done"
    assert j["attempts"] == 3
    assert f"HTTP {status}" in j["error"]  # the last failure is kept for the record


def test_other_4xx_is_permanent_with_status_and_body_excerpt(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"status": 400, "body": '{"error": "bad \\n request"}'}})
    j = await_end(r, jid)
    assert j["state"] == "dead" and j["attempts"] == 1
    assert j["error"].startswith('HTTP 400: {"error": "bad')
    assert "\n" not in j["error"]
    assert API_KEY not in j["error"]


@pytest.mark.parametrize("headers, min_ms", [
    ({"Retry-After": "1"}, 900),
    ({"retry-after-ms": "700"}, 600),
    ({"x-ratelimit-reset-requests": "800ms", "x-ratelimit-reset-tokens": "0.2s"}, 700),
])
def test_429_defers_by_the_services_hint_without_spending_an_attempt(
        r, stub, make_worker, headers, min_ms):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"status": 429, "headers": headers, "fail_times": 1, "key": "t"}})
    j = await_end(r, jid)
    assert j["state"] == "done"
    assert j["attempts"] == 1 and j["deferrals"] == 1
    assert j["started_ms"] - j["created_ms"] >= min_ms


def test_429_with_an_http_date_or_no_hint_defers_without_spending_an_attempt(
        r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    at = formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1-2 s from now
    dated = enqueue(r, {"stub": {"status": 429, "retry_after": at, "fail_times": 1, "key": "d"}})
    bare = enqueue(r, {"stub": {"status": 429, "fail_times": 1, "key": "b"}})
    for jid in (dated, bare):
        j = await_end(r, jid)
        assert j["state"] == "done", j
        assert j["attempts"] == 1 and j["deferrals"] == 1
        assert j["started_ms"] - j["created_ms"] >= 900  # 1 s default without a hint


def test_429_with_a_long_hint_is_deferred_by_it_and_counts_no_attempt(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"status": 429, "headers": {"x-ratelimit-reset-tokens": "6m0s"}}})
    wait_until(lambda: job(r, jid)["state"] == "scheduled", what="the job to be deferred")
    j = job(r, jid)
    assert j["attempts"] == 0 and j["deferrals"] == 1
    assert 355_000 <= r.zscore(f"{K}:sched", jid) - time.time() * 1000 <= 361_000


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_client_errors_are_permanent_at_once(r, stub, make_worker, status):
    make_worker(HTTP_Q, stub.url)
    j = await_end(r, enqueue(r, {"stub": {"status": status}}))
    assert j["state"] == "dead" and j["attempts"] == 1
    assert j["error"].startswith(f"HTTP {status}: ")


def test_a_5xx_error_page_larger_than_max_result_stays_retryable(r, stub, make_worker):
    make_worker(HTTP_Q.replace("max_result = 64K", "max_result = 1K") + "\nmax_attempts = 2",
                stub.url)
    j = await_end(r, enqueue(r, {"stub": {"status": 503, "size": 100_000}}))
    assert j["state"] == "dead" and j["attempts"] == 2
    assert j["error"].startswith("HTTP 503: eeee") and "max_result" not in j["error"]
    assert len(j["error"]) < 300


def test_the_api_key_is_sent_but_never_logged_or_kept_in_errors(r, stub, make_worker):
    w = make_worker(HTTP_Q + "\nmax_attempts = 1", stub.url,
                    env={**os.environ, "CORRAL_LOG_LEVEL": "debug"})
    # (A quota error would open the service's breaker for minutes: see
    # test_insufficient_quota_opens_the_breaker_and_keeps_the_job.)
    specs = [{}, {"status": 503}, {"status": 400, "body": "bad"}, {"status": 401},
             {"drop": True}, {"hang": True}]
    ids = [enqueue(r, {"stub": s}, timeout_ms=500) for s in specs]
    jobs = [await_end(r, jid) for jid in ids]
    assert [j["state"] for j in jobs] == ["done"] + ["dead"] * 5
    # libcurl sends a request again, once, when a reused keep-alive
    # connection dies before any answer (the "drop" job): count at least one
    # request per job, each with the key.
    auth = stub_stats(stub)["auth"]
    assert len(auth) >= len(specs) and set(auth) == {f"Bearer {API_KEY}"}
    assert w.stop() == 0
    logs = w.logs()
    assert "job failed" in logs  # debug logging was on and failures were logged
    for text in [logs] + [j.get("error", "") + j.get("result", "") for j in jobs]:
        assert API_KEY not in text
        assert API_KEY[3:] not in text


def test_insufficient_quota_opens_the_breaker_and_keeps_the_job(r, stub, make_worker):
    """Not a throttle (waiting seconds will not help) and not the job's
    fault: the service's breaker opens for breaker_open_max (5m by
    default), the job waits for it without spending an attempt, and no
    further call goes out."""
    make_worker(HTTP_Q, stub.url)
    body = '{"error": {"type": "insufficient_quota", "message": "You exceeded your quota"}}'
    jid = enqueue(r, {"stub": {"status": 429, "body": body}})
    wait_until(lambda: job(r, jid)["state"] == "scheduled", what="the job to wait")
    j = job(r, jid)
    assert j["attempts"] == 0 and "insufficient_quota" in j["error"]
    b = json.loads(r.fcall_ro("corral_breaker", 1, "ai"))
    assert b["state"] == "open" and b["reason"].startswith("quota: HTTP 429")
    assert 290_000 <= b["open_until_ms"] - time.time() * 1000 <= 300_000
    assert j["run_at_ms"] >= b["open_until_ms"]
    more = [enqueue(r, {}) for _ in range(3)]
    # the worker asked for them, was told to wait, and waits for the service
    wait_until(lambda: r.hget("corral:svc:ai:sl", socket.gethostname()),
               what="the worker to wait for the service")
    assert stub_stats(stub)["requests"] == 1
    assert all(job(r, m)["state"] == "queued" for m in more)


def test_hung_call_is_ended_by_the_job_timeout_and_retried(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"hang": True, "fail_times": 1, "key": "h"}}, timeout_ms=400)
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2
    assert "timed out after 400 ms" in j["error"]


def test_dropped_connection_and_refused_connection_are_retryable(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"drop": True, "fail_times": 1, "key": "d"}})
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2


def test_unreachable_service_fails_retryably_until_dead(r, make_worker):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    make_worker(HTTP_Q + "\nmax_attempts = 2", f"http://127.0.0.1:{port}/v1")
    jid = enqueue(r, {})
    j = await_end(r, jid)
    assert j["state"] == "dead" and j["attempts"] == 2
    assert "(attempt 2 of 2)" in j["error"]


def test_answer_larger_than_max_result_is_a_permanent_failure(r, stub, make_worker):
    make_worker(HTTP_Q.replace("max_result = 64K", "max_result = 1K"), stub.url)
    jid = enqueue(r, {"stub": {"size": 5000}})
    j = await_end(r, jid)
    assert j["state"] == "dead"
    assert "larger than max_result" in j["error"]


def test_one_process_runs_its_slots_concurrently(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    ids = [enqueue(r, {"stub": {"delay_ms": 300}}) for _ in range(8)]
    t0 = time.monotonic()
    for jid in ids:
        assert await_end(r, jid)["state"] == "done"
    elapsed = time.monotonic() - t0
    assert stub_stats(stub)["max_inflight"] == 4  # concurrency = 4
    assert elapsed < 8 * 0.3


# --- exec and echo -------------------------------------------------------


@pytest.mark.parametrize("command, state, check", [
    ("tr a-z A-Z", "done", lambda j: j["result"] == '{"A": "B"}'),
    ("/bin/sh -c 'cat >/dev/null; echo oops >&2; exit 3'", "dead",
     lambda j: j["error"] == "exit 3: oops " and j["attempts"] == 1),
    ("/bin/sh -c 'cat >/dev/null; exit 75'", "dead",
     lambda j: j["attempts"] == 2 and j["error"].startswith("exit 75")),
    ("sleep 30", "dead", lambda j: "timed out after 300 ms" in j["error"]),
    ("head -c 5000 /dev/zero", "dead", lambda j: "larger than max_result" in j["error"]),
    ("/nonexistent/tool", "dead", lambda j: j["error"].startswith("exit 127")),
])
def test_exec_handler_outcomes(r, make_worker, command, state, check):
    make_worker(f"handler = exec\ncommand = {command}\nmax_attempts = 2\n"
                "backoff = 50ms..50ms\ntimeout = 300ms\nmax_result = 1K")
    jid = enqueue(r, {"a": "b"})
    j = await_end(r, jid)
    assert j["state"] == state, j
    assert check(j), j


def test_exec_gets_the_payload_on_stdin_and_no_worker_fds(r, make_worker):
    # fd 3 onwards must be closed in the command: it lists its open fds.
    make_worker("handler = exec\n"
                "command = /bin/sh -c 'read -r line; ls /proc/self/fd; echo \"got $line\"'\n"
                "timeout = 5s")
    j = await_end(r, enqueue(r, {"n": 42}))
    assert j["state"] == "done"
    lines = j["result"].split()
    assert lines[-2:] == ["got", '{"n":'] or j["result"].endswith('got {"n": 42}\n'), j
    fds = {int(x) for x in lines if x.isdigit()}
    assert fds <= {0, 1, 2, 3}, fds  # 3 is ls's own directory handle


def test_exec_command_killed_by_a_signal_is_retryable(r, make_worker):
    make_worker("handler = exec\ncommand = /bin/sh -c 'kill -9 $$'\nmax_attempts = 2\n"
                "backoff = 50ms..50ms")
    j = await_end(r, enqueue(r, {}))
    assert j["state"] == "dead" and j["attempts"] == 2
    assert j["error"].startswith("killed by signal 9")


def test_echo_returns_the_payload(r, make_worker):
    make_worker("handler = echo")
    j = await_end(r, enqueue(r, {"hello": ["w", 1]}))
    assert j["state"] == "done" and json.loads(j["result"]) == {"hello": ["w", 1]}


def test_one_worker_serves_several_queues_each_with_its_handler(r, make_worker):
    make_worker("handler = echo\n[queue shout]\nhandler = exec\ncommand = tr a-z A-Z",
                extra=("--queue", Q, "--queue", "shout"))
    wait_until(lambda: r.exists("corral:{shout}:conf"), what="the second queue declared")
    a = enqueue(r, {"x": "quiet"})
    b = r.fcall("corral_enqueue", 1, "shout", json.dumps({"x": "loud"}))
    assert await_end(r, a)["result"] == '{"x": "quiet"}'
    fin = "corral:{shout}:fin:" + b
    assert r.blmove(fin, fin, 10, "RIGHT", "RIGHT") == "done"
    assert json.loads(r.fcall_ro("corral_job", 1, "shout", b))["result"] == '{"X": "LOUD"}'


def test_exec_kill_at_timeout_takes_the_whole_process_group(r, make_worker, tmp_path):
    marker = tmp_path / "grandchild-survived"
    make_worker("handler = exec\n"
                f"command = /bin/sh -c 'sleep 1 && touch {marker} & sleep 30'\n"
                "max_attempts = 1\ntimeout = 200ms")
    j = await_end(r, enqueue(r, {}))
    assert j["state"] == "dead"
    time.sleep(1.3)  # past the moment the grandchild would have written the marker
    assert not marker.exists()


# --- leases, drain, Redis ------------------------------------------------


def test_leases_are_renewed_while_a_job_runs(r, stub, make_worker):
    make_worker(HTTP_Q + "\nlease = 1s", stub.url)
    jid = enqueue(r, {"stub": {"delay_ms": 2500}})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the call to start")
    assert r.fcall("corral_reclaim", 1, Q) == 0
    time.sleep(1.5)  # longer than the lease: only renewal keeps it
    assert r.fcall("corral_reclaim", 1, Q) == 0
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 1


def test_sigterm_finishes_running_jobs_and_exits_0(r, stub, make_worker):
    w = make_worker(HTTP_Q, stub.url)
    ids = [enqueue(r, {"stub": {"delay_ms": 800}}) for _ in range(4)]
    wait_until(lambda: stub_stats(stub)["inflight"] == 4, what="every slot busy")
    later = enqueue(r, {})
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=15) == 0
    assert [job(r, i)["state"] for i in ids] == ["done"] * 4
    assert job(r, later)["state"] == "queued"  # nothing new was taken while draining
    assert stub_stats(stub)["requests"] == 4


def test_second_sigterm_aborts_and_leaves_the_lease_to_expire(r, stub, make_worker):
    w = make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"hang": True}})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the call to start")
    w.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "draining" in w.logs(), what="the worker to start draining")
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=5) == 1
    assert job(r, jid)["state"] == "active"
    assert r.zscore(f"{K}:active", jid) is not None


def test_redis_restarted_under_a_running_worker_loses_nothing(stub, make_worker, aof_redis):
    server, r = aof_redis
    w = make_worker(HTTP_Q, stub.url, socket_path=server.socket)
    first = [enqueue(r, {"stub": {"delay_ms": 300}}) for _ in range(6)]
    wait_until(lambda: stub_stats(stub)["inflight"] >= 1, what="calls to start")
    server.restart(kill=True)  # kill -9, then start from the AOF
    r = server.client(decode_responses=True)
    second = [enqueue(r, {}) for _ in range(4)]
    for jid in first + second:
        assert await_end(r, jid, timeout=60)["state"] == "done"
    assert "connected to redis" in w.logs()
    assert w.stop() == 0


def test_worker_started_before_redis_waits_and_then_works(make_worker, tmp_path):
    server = RedisServer()
    w = make_worker("handler = echo", socket_path=server.socket, ready=False)
    try:
        wait_until(lambda: "cannot connect to redis" in w.logs(), what="a failed connect")
        server.start()
        r = server.client(decode_responses=True)
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker to declare its queue")
        assert await_end(r, enqueue(r, {"x": 1}))["result"] == '{"x": 1}'
        assert w.stop() == 0
    finally:
        server.cleanup()


# --- fd 3 ----------------------------------------------------------------


def test_fd3_channel_reports_ready_busy_done_and_heartbeats(r, make_worker):
    parent, child = socket.socketpair()

    def to_fd3():
        os.dup2(child.fileno(), 3)

    w = make_worker("handler = echo", preexec_fn=to_fd3, pass_fds=(3,))
    child.close()
    parent.settimeout(10)
    buf = b""

    def lines_until(pred):
        nonlocal buf
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = [l.decode() for l in buf.split(b"\n")[:-1]]
            if pred(got):
                return got
            buf += parent.recv(4096)
        raise AssertionError(f"fd 3 lines so far: {buf!r}")

    lines_until(lambda ls: "ready 4" in ls)
    enqueue(r, {})
    got = lines_until(lambda ls: any(l.startswith("done prompts ") for l in ls)
                      and any(l.startswith("heartbeat ") for l in ls))
    done = next(l for l in got if l.startswith("done "))
    assert re.match(r"^done prompts \d+ ok$", done)
    assert any(re.match(r"^heartbeat \d+ 4 \d+ \d+ unwritten=0$", l) for l in got)
    assert w.stop() == 0
    parent.close()



def test_ten_thousand_jobs_then_a_clean_exit(r, make_worker):
    """Under SANITIZE=1 this is the leak check: LeakSanitizer runs at exit
    and the fixture fails on any report in the worker's log."""
    w = make_worker("handler = echo", extra=("--concurrency", "64"))
    pipe = r.pipeline(transaction=False)
    for i in range(10000):
        pipe.fcall("corral_enqueue", 1, Q, json.dumps({"i": i}))
    ids = pipe.execute()
    assert await_end(r, ids[-1], timeout=120)["state"] == "done"
    wait_until(lambda: json.loads(r.fcall_ro("corral_stats", 1, Q))["depth"] == 0
               and r.zcard(f"{K}:active") == 0, timeout=60, what="every job to end")
    assert job(r, ids[0])["state"] == "done"
    assert w.stop() == 0
