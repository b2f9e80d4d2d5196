"""The queue lives in Redis alone: with AOF on, queued, scheduled and leased
jobs, their run tokens and the Function library survive a Redis restart, and
the run that held a lease before the restart can still report after it."""
import pytest

from conftest import declare, enqueue, get_job, qkey, reserve

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def aof_server(r, redis_server):
    """The session's server, restarted with AOF on; back to AOF off after."""
    yield redis_server
    redis_server.restart(appendonly=False)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_jobs_and_leases_survive_a_redis_restart_with_aof(r, aof_server, kill):
    declare(r, Q, lease_ms=60000)
    queued = enqueue(r, Q, '{"n": 1}', priority="high")
    later = enqueue(r, Q, delay_ms=60000)
    leased = enqueue(r, Q, '{"n": 2}', priority="low")
    queued2 = enqueue(r, Q, '{"n": 3}', priority="low")
    assert reserve(r, Q, 1)[0][0] == queued
    aof_server.restart(appendonly=True)  # turns AOF on; the data so far survives

    c = aof_server.client(decode_responses=True)
    leased_run = reserve(c, Q, 1, worker="host1:5")[0][1]
    assert leased_run
    c.close()
    aof_server.restart(kill=kill)  # with AOF on

    c = aof_server.client(decode_responses=True)
    try:
        assert c.fcall_ro("corral_version", 0) >= 1  # the library is still loaded
        assert get_job(c, Q, queued)["state"] == "active"
        assert get_job(c, Q, later)["state"] == "scheduled"
        assert c.zscore(f"{K}:sched", later) is not None
        assert get_job(c, Q, queued2)["state"] == "queued"
        j = get_job(c, Q, leased)
        assert j["state"] == "active" and j["worker"] == "host1:5"
        assert c.zscore(f"{K}:active", leased) is not None
        # the run from before the restart reports; nothing runs twice
        assert c.fcall("corral_ack", 1, Q, "host1:5", leased, leased_run, "ok") == ["done"]
        assert get_job(c, Q, leased)["state"] == "done"
        assert [x[0] for x in reserve(c, Q, 10)] == [queued2]
    finally:
        c.close()
