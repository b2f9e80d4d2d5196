"""Error replies as code words: every refusal of the Function library
begins with a stable upper-case word of corral's own (docs/protocol.md,
"Error replies"), never Redis's generic ERR, so callers act on the word;
each kind of refusal has its word, and the words of the library, of the
docs and of the C table (queue/codes.c) are the same list."""
import json
import os
import re

import pytest
import redis

from conftest import LUA, REPO, db_snapshot, declare, enqueue, qkey, reserve

Q = "jobs"
K = qkey(Q)


@pytest.fixture
def q(r):
    declare(r, Q, max_payload=100, service="ai")
    r.fcall("corral_declare_service", 1, "ai", "{}")
    return r


def word_of(r, *fcall):
    """The first word of the error reply to an FCALL, which must change
    nothing."""
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall(*fcall)
    assert db_snapshot(r) == before
    return str(e.value).split(" ", 1)[0]


def test_an_invalid_payload_by_raw_fcall_gets_badpayload_not_err(q):
    raw = q.connection_pool.get_connection("FCALL")
    try:
        raw.send_command("FCALL", "corral_enqueue", 1, Q, "{not json")
        with pytest.raises(redis.ResponseError) as e:
            raw.read_response()
    finally:
        q.connection_pool.release(raw)
    assert str(e.value) == 'BADPAYLOAD queue "jobs": payload is not valid JSON'


@pytest.mark.parametrize("word, fcall", [
    ("BADPAYLOAD", ["corral_enqueue", 1, Q]),
    ("BADPAYLOAD", ["corral_enqueue", 1, Q, "[1,"]),
    ("TOOBIG", ["corral_enqueue", 1, Q, json.dumps("x" * 200)]),
    ("NOQUEUE", ["corral_enqueue", 1, "nosuch", "{}"]),
    ("BADNAME", ["corral_enqueue", 1, "a{b", "{}"]),
    ("BADNAME", ["corral_enqueue", 1, "bad prefix:{jobs}", "{}"]),
    ("BADARG", ["corral_enqueue", 0, "{}"]),
    ("BADARG", ["corral_enqueue", 1, Q, "{}", "{}", "extra"]),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '"high"']),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '{"prio": 1}']),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '{"priority": "urgent"}']),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '{"delay_ms": -5}']),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '{"service": "a b"}']),
    ("BADOPTION", ["corral_enqueue", 1, Q, "{}", '{"unique_key": ""}']),
    ("BADTENANT", ["corral_enqueue", 1, Q, "{}", '{"tenant": "a b"}']),
    ("BADSETTING", ["corral_declare", 1, Q, "not json"]),
    ("BADSETTING", ["corral_declare", 1, Q, '{"max_attempt": 3}']),
    ("BADSETTING", ["corral_declare", 1, Q, '{"lease_ms": 1}']),
    ("BADSETTING", ["corral_declare_service", 1, "ai", '{"failure_rate": 0}']),
    ("BADARG", ["corral_reserve", 1, Q, "", 1]),
    ("BADARG", ["corral_reserve", 1, Q, "h:1", 0]),
    ("BADARG", ["corral_fail", 1, Q, "h:1", "1", "1", "transient", "x"]),
    ("BADARG", ["corral_defer", 1, Q, "h:1", "1", "1", -1, "", ""]),
    ("BADARG", ["corral_defer", 1, Q, "h:1", "1", "1", 5, "later", ""]),
    ("BADARG", ["corral_reclaim", 1, Q, 0]),
    ("BADARG", ["corral_reclaim_worker", 1, Q, "*"]),
    ("BADARG", ["corral_reclaim_worker", 1, Q, "h:*", "keep"]),
    ("BADARG", ["corral_promote", 1, Q, "lots"]),
    ("BADARG", ["corral_stats", 1, Q, 5]),
    ("NOJOB", ["corral_cancel", 1, Q, "404"]),
    ("NOJOB", ["corral_dead_retry", 1, Q, "404"]),
    ("NOSERVICE", ["corral_breaker", 1, "nosuch"]),
    ("NOSERVICE", ["corral_breaker_reset", 1, "nosuch"]),
    ("BADNAME", ["corral_breaker", 1, "a b"]),
    ("BADARG", ["corral_breaker", 0]),
])
def test_each_kind_of_refusal_begins_with_its_own_word(q, word, fcall):
    assert word_of(q, *fcall) == word


@pytest.mark.parametrize("state, word", [("done", "FINISHED"), ("cancelled", "FINISHED")])
def test_a_cancel_names_why_the_job_cannot_be_cancelled(q, state, word):
    jid = enqueue(q, Q)
    if state == "cancelled":
        q.fcall("corral_cancel", 1, Q, jid)
    else:
        run = reserve(q, Q)[0][1]
        if state == "done":
            q.fcall("corral_ack", 1, Q, "host1:1", jid, run, "{}")
    assert word_of(q, "corral_cancel", 1, Q, jid) == word


def test_dead_retry_of_a_job_that_is_not_dead_is_notdead(q):
    jid = enqueue(q, Q)
    assert word_of(q, "corral_dead_retry", 1, Q, jid) == "NOTDEAD"


def lua_words():
    lua = open(LUA).read()
    table = re.search(r"local CODES = \{(.*?)\n\}", lua, re.S).group(1)
    return set(re.findall(r"^\s*([A-Z]+) = true", table, re.M)), lua


def doc_words():
    text = open(os.path.join(REPO, "docs", "protocol.md")).read()
    part = text[text.index("### Error replies"):]
    part = part[:part.index("\n## ")]
    return set(re.findall(r"^\| `([A-Z]+)` \| corral", part, re.M)), \
        set(re.findall(r"^\| `([A-Z]+)` \| Redis", part, re.M))


def c_words():
    text = open(os.path.join(REPO, "queue", "codes.c")).read()
    rows = re.findall(r'\{"([A-Z]+)", (NULL|"[^"]*"), \d, CORRAL_WORD_([A-Z]+), \w+, (\d)\}',
                      text)
    assert all(name == value for name, _, value, _ in rows)
    return rows


def test_every_word_of_the_library_is_documented_and_mapped_in_c_and_used():
    ours, lua = lua_words()
    documented, redis_words = doc_words()
    assert ours == documented
    rows = c_words()
    assert ours == {name for name, text, _, strip in rows if text == "NULL" and strip == "1"
                    and name != "ERR"}
    assert redis_words == {name for name, *_ in rows if name not in ours}
    # Each word is raised somewhere, not only listed; a retired word (no
    # longer answered, still mapped for servers of older library versions)
    # says so in its CODES comment.
    for word in ours:
        if re.search(r"^\s*" + word + r" = true, +-- retired", lua, re.M):
            continue
        assert re.search(r"fail\(.*'" + word + "'", lua) or \
            re.search(r"int_arg\('" + word + "'", lua), word
