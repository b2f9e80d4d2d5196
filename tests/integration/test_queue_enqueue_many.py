"""corral_enqueue_many (queue/lua/jobs.lua, docs/protocol.md): up to 1,000
payloads in one call with one set of options, all or nothing, ids in the
order of the payloads; each refusal begins with its code word."""
import json

import pytest
import redis

from conftest import db_snapshot, declare, get_job, reserve, stats

Q = "bulk"
K = "corral:{bulk}"


@pytest.fixture
def q(r):
    declare(r, Q, max_payload=100)
    return r


def many(client, options, *payloads):
    return client.fcall("corral_enqueue_many", 1, K, options, *payloads)


def refusal(client, options, *payloads):
    with pytest.raises(redis.ResponseError) as e:
        many(client, options, *payloads)
    return str(e.value)


def test_ids_come_back_in_the_order_of_the_payloads(q):
    ids = many(q, "{}", *[json.dumps({"n": i}) for i in range(50)])
    assert ids == [str(i) for i in range(1, 51)]
    for i, jid in enumerate(ids):
        assert json.loads(get_job(q, Q, jid)["payload"]) == {"n": i}
    # and a worker takes them first in, first out
    assert [j[0] for j in reserve(q, Q, 50)] == ids


def test_options_apply_to_every_job_of_the_call(q):
    ids = many(q, json.dumps({"priority": "high", "max_attempts": 2, "timeout_ms": 1234,
                              "service": "svc"}), "1", "2", "3")
    for jid in ids:
        j = get_job(q, Q, jid)
        assert (j["priority"], j["prio"], j["max_attempts"], j["timeout_ms"], j["service"]) == \
            ("high", 0, 2, 1234, "svc")
        assert j["state"] == "queued"
    assert q.llen(f"{K}:q:0") == 3


def test_delay_ms_schedules_every_job_of_the_call(q):
    ids = many(q, '{"delay_ms": 60000}', "1", "2")
    assert [get_job(q, Q, i)["state"] for i in ids] == ["scheduled", "scheduled"]
    assert q.zcard(f"{K}:sched") == 2 and reserve(q, Q, 10) == []


def test_no_options_is_an_empty_string_or_an_empty_object(q):
    assert many(q, "", "1") == ["1"]
    assert many(q, "{}", "2") == ["2"]
    assert get_job(q, Q, "1")["priority"] == "normal"


def test_every_job_is_counted_and_wakes_workers(q):
    many(q, "{}", *["{}"] * 10)
    assert stats(q, Q)["depth"] == 10
    assert q.llen(f"{K}:wake") >= 1


def test_one_bad_payload_refuses_the_whole_call_naming_its_position(q):
    many(q, "{}", "{}")
    before = db_snapshot(q)
    assert refusal(q, "{}", "{}", "[1]", "{not json", "{}") == \
        'BADPAYLOAD queue "bulk": payload 3 of 4 is not valid JSON'
    assert refusal(q, "{}", "{}", "x" * 101) == \
        'TOOBIG queue "bulk": payload 2 of 2 is 101 bytes, limit is 100 (max_payload)'
    assert refusal(q, "{}", "{}", '{"a": 1}\x00junk') == \
        'BADPAYLOAD queue "bulk": payload 2 of 2 is not valid JSON'
    assert db_snapshot(q) == before


def test_bad_options_refuse_the_whole_call_with_corral_enqueues_messages(q):
    before = db_snapshot(q)
    cases = {
        "{not json": 'BADOPTION queue "bulk": options must be a JSON object',
        '"high"': 'BADOPTION queue "bulk": options must be a JSON object',
        '{"prio": 1}': 'BADOPTION queue "bulk": unknown option "prio" (known: priority, delay_ms, '
                       'max_attempts, timeout_ms, service, unique_key, tenant, tokens, deadline_ms)',
        '{"priority": "urgent"}': 'BADOPTION queue "bulk": unknown priority "urgent" (known: high, '
                                  'normal, low, or 0-2)',
        '{"delay_ms": -5}': "BADOPTION delay_ms must be an integer from 0 to 31622400000, got -5",
        '{"max_attempts": 2.5}': "BADOPTION max_attempts must be an integer from 1 to 1000, got 2.5",
        '{"service": "a b"}': 'BADOPTION queue "bulk": bad service name "a b"',
        '{"unique_key": ""}': 'BADOPTION queue "bulk": unique_key must be a string of 1 to 256 bytes',
    }
    for options, message in cases.items():
        assert refusal(q, options, "{}", "{}") == message
    assert db_snapshot(q) == before
    # the same options through corral_enqueue answer the same words
    for options, message in cases.items():
        with pytest.raises(redis.ResponseError) as e:
            q.fcall("corral_enqueue", 1, K, "{}", options)
        assert str(e.value) == message


def test_a_thousand_payloads_are_taken_and_one_more_is_refused(q):
    assert len(many(q, "{}", *["1"] * 1000)) == 1000
    before = db_snapshot(q)
    assert refusal(q, "{}", *["1"] * 1001) == \
        'BADARG queue "bulk": corral_enqueue_many takes at most 1000 payloads, got 1001'
    assert db_snapshot(q) == before


def test_no_payload_is_refused(q):
    assert refusal(q, "{}") == 'BADPAYLOAD queue "bulk": missing payload'
    assert q.get(f"{K}:seq") is None


def test_an_unknown_or_bad_queue_is_refused(r):
    with pytest.raises(redis.ResponseError, match='^NOQUEUE unknown queue "nosuch"'):
        r.fcall("corral_enqueue_many", 1, "corral:{nosuch}", "{}", "1")
    with pytest.raises(redis.ResponseError, match='^BADNAME bad queue name "a{b"'):
        r.fcall("corral_enqueue_many", 1, "corral:{a{b}", "{}", "1")


def test_unique_key_gives_every_payload_the_one_job_that_holds_it(q):
    first = q.fcall("corral_enqueue", 1, K, "{}", '{"unique_key": "k"}')
    ids = many(q, '{"unique_key": "k"}', "1", "2")
    assert ids == [first, first]
    fresh = many(q, '{"unique_key": "new"}', "1", "2", "3")
    assert len(set(fresh)) == 1 and get_job(q, Q, fresh[0])["payload"] == "1"
    assert stats(q, Q)["depth"] == 2


def test_a_job_of_enqueue_many_has_the_record_corral_enqueue_writes(q):
    clock = ("id", "created_ms", "run_at_ms", "queued_ms", "created_us")
    for options in ('{"priority": "low", "max_attempts": 3, "service": "svc"}',
                    '{"delay_ms": 60000, "timeout_ms": 5000}', '{"unique_key": "same"}'):
        one = q.fcall("corral_enqueue", 1, K, '"p"', options)
        a = q.hgetall(f"{K}:job:{one}")
        if "unique_key" in options:
            q.delete(f"{K}:job:{one}")  # let enqueue_many make its own
        (other,) = many(q, options, '"p"')
        b = q.hgetall(f"{K}:job:{other}")
        assert a.keys() == b.keys() and a["id"] == one and b["id"] == other
        assert {k: v for k, v in a.items() if k not in clock} == \
            {k: v for k, v in b.items() if k not in clock}
