"""corral_enqueue and corral_job through FCALL: ids, the job record, priority
by name and index, delays, options, and the custom key prefix form."""
import json

import pytest
import redis

from conftest import (declare, enqueue, get_job, qkey, reserve, server_ms,
                      wait_until)

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q)
    return r


def test_enqueue_returns_a_new_id_for_every_job(q):
    ids = [enqueue(q, Q, json.dumps({"n": i})) for i in range(20)]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 20
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert q.llen(f"{K}:q:1") == 20


def test_job_record_holds_every_documented_field_as_json(q):
    t0 = server_ms(q)
    jid = enqueue(q, Q, '{"messages": [{"role": "user", "content": "hi"}]}')
    t1 = server_ms(q)
    raw = q.fcall_ro("corral_job", 1, Q, jid)
    j = json.loads(raw)
    assert j["id"] == jid and j["queue"] == Q
    assert j["state"] == "queued"
    assert j["payload"] == '{"messages": [{"role": "user", "content": "hi"}]}'
    assert j["attempts"] == 0 and j["max_attempts"] == 5  # the queue default
    assert j["timeout_ms"] == 60000
    assert t0 <= j["created_ms"] <= t1
    assert j["run_at_ms"] == j["created_ms"]
    assert "started_ms" not in j and "finished_ms" not in j and "worker" not in j

    jobs = reserve(q, Q, worker="w1:7")
    j = get_job(q, Q, jid)
    assert j["state"] == "active" and j["worker"] == "w1:7" and j["attempts"] == 1
    assert j["started_ms"] >= j["created_ms"]

    assert q.fcall("corral_ack", 1, Q, "w1:7", jid, jobs[0][1], '{"ok": 1}') == ["done"]
    j = get_job(q, Q, jid)
    assert j["state"] == "done" and j["result"] == '{"ok": 1}'
    assert j["finished_ms"] >= j["started_ms"]


def test_job_of_an_unknown_id_is_nil(q):
    assert q.fcall_ro("corral_job", 1, Q, "12345") is None


def test_default_priority_is_the_middle_level(r):
    declare(r, Q)  # high, normal, low
    assert get_job(r, Q, enqueue(r, Q))["priority"] == "normal"
    declare(r, "five", priorities=["p0", "p1", "p2", "p3", "p4"])
    jid = enqueue(r, "five")
    assert get_job(r, "five", jid)["priority"] == "p2"
    assert r.lrange(f"{qkey('five')}:q:2", 0, -1) == [jid]


def test_priority_by_name_and_by_index(q):
    by_name = {p: enqueue(q, Q, priority=p) for p in ["high", "normal", "low"]}
    by_index = {i: enqueue(q, Q, priority=i) for i in [0, 1, 2]}
    for level, name in enumerate(["high", "normal", "low"]):
        assert get_job(q, Q, by_name[name])["priority"] == name
        assert get_job(q, Q, by_index[level])["priority"] == name
        assert q.lrange(f"{K}:q:{level}", 0, -1) == [by_name[name], by_index[level]]


def test_options_max_attempts_timeout_and_service_are_stored_and_handed_to_the_worker(q):
    jid = enqueue(q, Q, '{"x": 1}', max_attempts=2, timeout_ms=1500, service="openai")
    j = get_job(q, Q, jid)
    assert (j["max_attempts"], j["timeout_ms"], j["service"]) == (2, 1500, "openai")
    got = reserve(q, Q)[0]
    assert got[0] == jid
    assert got[2:] == [1, 2, 1500, "normal", "openai", '{"x": 1}']


def test_delayed_job_is_scheduled_and_not_reservable_before_its_delay(q):
    t0 = server_ms(q)
    jid = enqueue(q, Q, delay_ms=60000)
    j = get_job(q, Q, jid)
    assert j["state"] == "scheduled"
    assert j["run_at_ms"] == j["created_ms"] + 60000 >= t0 + 60000
    assert q.zscore(f"{K}:sched", jid) == j["run_at_ms"]
    assert q.llen(f"{K}:q:1") == 0
    assert reserve(q, Q, 10) == []
    assert q.fcall("corral_promote", 1, Q) == 0
    assert get_job(q, Q, jid)["state"] == "scheduled"


def test_delayed_job_becomes_reservable_after_its_delay(q):
    jid = enqueue(q, Q, delay_ms=200)
    assert reserve(q, Q) == []
    got = wait_until(lambda: reserve(q, Q), timeout=5, what="the delayed job to come due")
    assert got[0][0] == jid
    j = get_job(q, Q, jid)
    # reserve promoted it itself, and only once the server clock passed run_at
    assert j["started_ms"] >= j["run_at_ms"] == j["created_ms"] + 200
    assert q.zcard(f"{K}:sched") == 0


def test_promote_makes_due_jobs_ready_in_their_level(q):
    jid = enqueue(q, Q, delay_ms=100, priority="high")
    wait_until(lambda: q.fcall("corral_promote", 1, Q) == 1, timeout=5, what="promotion")
    j = get_job(q, Q, jid)
    assert j["state"] == "queued"
    assert q.lrange(f"{K}:q:0", 0, -1) == [jid]
    assert q.zcard(f"{K}:sched") == 0


def test_zero_delay_is_queued_at_once(q):
    jid = enqueue(q, Q, delay_ms=0)
    assert get_job(q, Q, jid)["state"] == "queued"
    assert reserve(q, Q)[0][0] == jid


def test_payload_of_exactly_max_payload_bytes_is_accepted(r):
    declare(r, Q, max_payload=100)
    payload = json.dumps("x" * 98)  # 100 bytes with the quotes
    assert len(payload) == 100
    jid = enqueue(r, Q, payload)
    assert get_job(r, Q, jid)["payload"] == payload


def test_queue_name_of_64_characters_is_accepted(r):
    name = "a" * 60 + "_.:-"
    declare(r, name)
    jid = enqueue(r, name)
    assert get_job(r, name, jid)["queue"] == name


def test_custom_prefix_key_form_keeps_every_key_under_that_prefix(r):
    key = "myapp:{jobs}"
    declare(r, key, lease_ms=1000)
    jid = enqueue(r, key, '{"a": 1}', priority="high")
    assert r.lrange("myapp:{jobs}:q:0", 0, -1) == [jid]
    got = reserve(r, key)
    assert got[0][0] == jid
    assert r.zscore("myapp:{jobs}:active", jid) is not None
    assert r.fcall("corral_ack", 1, key, "host1:1", jid, got[0][1], "ok") == ["done"]
    assert get_job(r, key, jid)["state"] == "done"
    assert r.sismember("myapp:queues", "jobs")
    assert r.keys("corral:*") == []
    # the bare name is another queue, under the default prefix
    with pytest.raises(redis.ResponseError, match='unknown queue "jobs"'):
        enqueue(r, "jobs")


def test_a_numeric_string_option_is_taken_as_its_number(q):
    jid = q.fcall("corral_enqueue", 1, Q, "{}", '{"max_attempts": "5"}')
    assert get_job(q, Q, jid)["max_attempts"] == 5


def test_redeclare_with_fewer_levels_keeps_every_job_reachable(r):
    declare(r, Q)
    low = enqueue(r, Q, "{}", priority="low")
    later = enqueue(r, Q, "{}", priority="low", delay_ms=100)
    declare(r, Q, priorities=["high", "normal"])
    assert get_job(r, Q, low)["priority"] == "normal"
    got = []

    def both():
        got.extend(j[0] for j in reserve(r, Q, n=5))
        return len(got) == 2

    wait_until(both, timeout=5, what="the scheduled job to be promoted to a live level")
    assert sorted(got) == sorted([low, later])
