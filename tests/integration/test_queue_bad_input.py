"""Bad input is refused with its own clear error reply naming what is wrong,
and the refusal changes nothing: not the queue, not the jobs in it, not even
the counters (the whole database is compared before and after)."""
import json

import pytest
import redis

from conftest import db_snapshot, declare, enqueue, get_job, qkey, reserve

Q = "jobs"
K = qkey(Q)
MAX_DAYS_MS = 366 * 86400000


@pytest.fixture
def q(r):
    """A queue with a job in every state, so a refusal that disturbed any
    of them would show in the snapshot."""
    declare(r, Q, max_payload=1000)
    declare(r, "other")
    enqueue(r, Q, '{"keep": "queued"}', priority="high")
    enqueue(r, Q, '{"keep": "scheduled"}', delay_ms=60000)
    enqueue(r, Q, '{"keep": "active"}')
    reserve(r, Q, 2)
    enqueue(r, Q, '{"keep": "low"}', priority="low", unique_key="u1")
    enqueue(r, "other", '{"keep": "other"}')
    return r


def refused(r, message, *fcall):
    """Runs the FCALL, expects an error reply containing message, and
    checks that nothing in the database changed."""
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall(*fcall)
    text = str(e.value)
    assert message in text
    assert "script:" not in text and "user_function" not in text  # a plain reply
    assert db_snapshot(r) == before
    return text


@pytest.mark.parametrize("queue, message", [
    ("nosuch", 'unknown queue "nosuch": no corrald or corralctl has declared it'),
    ("", 'bad queue name "": use 1-64 characters of A-Z a-z 0-9 _ . : -'),
    ("a" * 65, f'bad queue name "{"a" * 65}"'),
    ("a{b", 'bad queue name "a{b"'),
    ("a}b", 'bad queue name "a}b"'),
    ("a b", 'bad queue name "a b"'),
    ("caf\u00e9", "bad queue name"),
    ("bad prefix:{jobs}", 'bad key prefix "bad prefix"'),
    ("corral:{}", 'bad queue name ""'),
])
def test_a_bad_or_unknown_queue_is_refused(q, queue, message):
    refused(q, message, "corral_enqueue", 1, queue, "{}")


def test_a_call_without_the_queue_key_is_refused(q):
    refused(q, "expected one key: the queue name", "corral_enqueue", 0, "{}")


def test_a_missing_payload_is_refused(q):
    refused(q, 'queue "jobs": missing payload', "corral_enqueue", 1, Q)


def test_a_payload_over_max_payload_names_both_sizes(q):
    payload = json.dumps("x" * 1999)
    refused(q, 'queue "jobs": payload is 2001 bytes, limit is 1000 (max_payload)',
            "corral_enqueue", 1, Q, payload)


@pytest.mark.parametrize("payload", ["{not json", "", " ", "[1,]", '{"a": 1,}', "{}}",
                                     "'single'", '{"a": undefined}'])
def test_a_payload_that_is_not_json_is_refused(q, payload):
    refused(q, 'queue "jobs": payload is not valid JSON', "corral_enqueue", 1, Q, payload)


@pytest.mark.parametrize("payload", ["NaN", "Infinity", "0x10", '{"temperature": NaN}'])
def test_a_payload_with_non_json_numbers_is_refused(q, payload):
    refused(q, 'queue "jobs": payload is not valid JSON', "corral_enqueue", 1, Q, payload)


@pytest.mark.parametrize("options, message", [
    ("{not json", 'queue "jobs": options must be a JSON object'),
    ('"high"', 'queue "jobs": options must be a JSON object'),
    ("5", 'queue "jobs": options must be a JSON object'),
    ('{"prio": "high"}', 'queue "jobs": unknown option "prio" (known: priority, delay_ms, '
     'max_attempts, timeout_ms, service, unique_key, tenant, tokens, deadline_ms)'),
    ('{"priority": "urgent"}',
     'queue "jobs": unknown priority "urgent" (known: high, normal, low, or 0-2)'),
    ('{"priority": 3}', 'unknown priority "3" (known: high, normal, low, or 0-2)'),
    ('{"priority": -1}', 'unknown priority "-1"'),
    ('{"priority": 1.5}', 'unknown priority "1.5"'),
    ('{"priority": "HIGH"}', 'unknown priority "HIGH"'),
    ('{"delay_ms": -5}', f"delay_ms must be an integer from 0 to {MAX_DAYS_MS}, got -5"),
    ('{"delay_ms": 1.5}', "delay_ms must be an integer from 0 to"),
    ('{"delay_ms": 1e30}', "delay_ms must be an integer from 0 to"),
    (json.dumps({"delay_ms": MAX_DAYS_MS + 1}), "delay_ms must be an integer from 0 to"),
    ('{"delay_ms": "soon"}', "delay_ms must be an integer from 0 to"),
    ('{"max_attempts": 0}', "max_attempts must be an integer from 1 to 1000, got 0"),
    ('{"max_attempts": -3}', "max_attempts must be an integer from 1 to 1000, got -3"),
    ('{"max_attempts": 2.5}', "max_attempts must be an integer from 1 to 1000"),
    ('{"max_attempts": 1001}', "max_attempts must be an integer from 1 to 1000, got 1001"),
    ('{"max_attempts": 1e20}', "max_attempts must be an integer from 1 to 1000"),
    ('{"timeout_ms": 0}', "timeout_ms must be an integer from 1 to"),
    ('{"service": "a b"}', 'queue "jobs": bad service name "a b"'),
    ('{"unique_key": ""}', 'queue "jobs": unique_key must be a string of 1 to 256 bytes'),
    ('{"unique_key": 7}', "unique_key must be a string of 1 to 256 bytes"),
    (json.dumps({"unique_key": "k" * 257}), "unique_key must be a string of 1 to 256 bytes"),
])
def test_bad_options_are_refused_each_with_its_own_message(q, options, message):
    refused(q, message, "corral_enqueue", 1, Q, "{}", options)


def test_a_bad_option_next_to_a_unique_key_does_not_claim_the_key(q):
    refused(q, "delay_ms must be an integer", "corral_enqueue", 1, Q, "{}",
            '{"unique_key": "fresh", "delay_ms": -1}')
    assert not q.exists(f"{K}:uniq:fresh")


def test_a_wrong_fail_kind_is_refused(q):
    jid, run = next((j["id"], str(j["run"])) for j in
                    (get_job(q, Q, i) for i in q.zrange(f"{K}:active", 0, -1)))
    refused(q, 'fail: kind must be retry or permanent, got "transient"',
            "corral_fail", 1, Q, "host1:1", jid, run, "transient", "x")


@pytest.mark.parametrize("settings, message", [
    ('{"order": "random"}', "order must be strict or weighted"),
    ('{"priorities": []}', "priorities must be a list of 1 to 16 names"),
    ('{"priorities": ["a b"]}', 'bad priority name "a b"'),
    ('{"lease_ms": 10}', "lease_ms must be an integer from 100 to"),
    ("[", "settings must be a JSON object"),
])
def test_bad_queue_settings_are_refused_and_keep_the_old_ones(q, settings, message):
    refused(q, message, "corral_declare", 1, Q, settings)


def test_every_refusal_leaves_the_queue_working(q):
    for bad in ['{"delay_ms": -1}', '{"priority": 9}', "{x"]:
        with pytest.raises(redis.ResponseError):
            q.fcall("corral_enqueue", 1, Q, "{}", bad)
    jid = enqueue(q, Q, '{"after": true}', priority="high")
    got = [j[0] for j in reserve(q, Q, 10)]
    assert got[0] == jid and len(got) == 2  # this one first, then the low one
