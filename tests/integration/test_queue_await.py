"""Awaiting a job's outcome with one blocking Redis command, as application
services do: BLMOVE <prefix>:{Q}:fin:<id> onto itself returns the final
state and leaves it there for every other awaiter."""
import threading
import time

import pytest

from conftest import declare, enqueue, get_job, qkey, reserve, wait_blocked, wait_until

Q = "jobs"
K = qkey(Q)


def await_job(client, jid, timeout=5):
    fin = f"{K}:fin:{jid}"
    return client.blmove(fin, fin, timeout, "RIGHT", "LEFT")


class Waiter(threading.Thread):
    """Awaits a job on its own connection; .result and .elapsed afterwards."""

    def __init__(self, redis_server, jid, timeout=5):
        super().__init__(daemon=True)
        self.client = redis_server.client(decode_responses=True)
        self.jid, self.timeout = jid, timeout
        self.result = self.elapsed = None

    def run(self):
        t0 = time.monotonic()
        self.result = await_job(self.client, self.jid, self.timeout)
        self.elapsed = time.monotonic() - t0
        self.client.close()


@pytest.fixture
def q(r):
    declare(r, Q, result_ttl_ms=1000)
    return r


def finish_with_ack(r, jid):
    run = reserve(r, Q)[0][1]
    assert r.fcall("corral_ack", 1, Q, "host1:1", jid, run, "ok") == ["done"]


def test_await_after_the_end_returns_the_state_without_consuming_it(q, redis_server):
    jid = enqueue(q, Q)
    finish_with_ack(q, jid)
    assert await_job(q, jid, 1) == "done"
    other = redis_server.client(decode_responses=True)
    assert await_job(other, jid, 1) == "done"  # a second awaiter sees it too
    other.close()
    assert q.lrange(f"{K}:fin:{jid}", 0, -1) == ["done"]


def test_a_waiter_blocked_before_the_ack_is_woken_by_it(q, redis_server):
    jid = enqueue(q, Q)
    w = Waiter(redis_server, jid)
    w.start()
    wait_blocked(q, 1, "blmove")
    assert w.is_alive()  # still waiting: nothing has ended yet
    finish_with_ack(q, jid)
    w.join(timeout=5)
    assert w.result == "done"
    assert w.elapsed < 4  # woken by the ack, not by its timeout


def test_every_blocked_waiter_is_woken_by_the_same_end(q, redis_server):
    jid = enqueue(q, Q)
    waiters = [Waiter(redis_server, jid) for _ in range(3)]
    for w in waiters:
        w.start()
    wait_blocked(q, 3, "blmove")
    finish_with_ack(q, jid)
    for w in waiters:
        w.join(timeout=5)
    assert [w.result for w in waiters] == ["done"] * 3
    assert get_job(q, Q, jid)["result"] == "ok"


@pytest.mark.parametrize("end", ["dead", "cancelled"])
def test_await_returns_dead_and_cancelled_too(q, redis_server, end):
    jid = enqueue(q, Q)
    w = Waiter(redis_server, jid)
    w.start()
    wait_blocked(q, 1, "blmove")
    if end == "dead":
        run = reserve(q, Q)[0][1]
        q.fcall("corral_fail", 1, Q, "host1:1", jid, run, "permanent", "HTTP 400")
    else:
        q.fcall("corral_cancel", 1, Q, jid)
    w.join(timeout=5)
    assert w.result == end


def test_await_times_out_on_a_job_that_has_not_ended(q):
    jid = enqueue(q, Q)
    reserve(q, Q)
    assert await_job(q, jid, 0.2) is None
    assert get_job(q, Q, jid)["state"] == "active"


def test_a_retried_dead_job_is_awaited_again_until_its_new_end(q, redis_server):
    jid = enqueue(q, Q)
    run = reserve(q, Q)[0][1]
    q.fcall("corral_fail", 1, Q, "host1:1", jid, run, "permanent", "no")
    assert await_job(q, jid, 1) == "dead"
    q.fcall("corral_dead_retry", 1, Q, jid)
    w = Waiter(redis_server, jid)
    w.start()
    wait_blocked(q, 1, "blmove")
    finish_with_ack(q, jid)
    w.join(timeout=5)
    assert w.result == "done"


def test_the_outcome_and_the_job_expire_after_result_ttl(q):
    jid = enqueue(q, Q)
    finish_with_ack(q, jid)
    assert q.exists(f"{K}:fin:{jid}") and get_job(q, Q, jid) is not None
    assert 0 < q.pttl(f"{K}:job:{jid}") <= 1000
    wait_until(lambda: not q.exists(f"{K}:fin:{jid}", f"{K}:job:{jid}"), timeout=5,
               what="result_ttl to pass")
    assert get_job(q, Q, jid) is None
