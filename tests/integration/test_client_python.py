"""The Python client (clients/python, corral_client) against a real
redis-server, and corrald with the echo handler where a job must end: every
call, the checks it makes before sending (the library's own messages, and
nothing sent), every error class, wait's timeout, and the example built on
it. In CORRAL_TEST_REDIS=tcp-acl mode the client connects as the
least-privilege ACL user of docs/operations.md."""
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from conftest import ACL_PASSWORD, MODE, REPO, binary_path, db_snapshot, declare, wait_until
from worker_fixtures import HTTP_Q, make_worker, stub  # noqa: F401 (fixtures)
from worker_fixtures import enqueue as worker_enqueue
from worker_fixtures import job as conftest_job

sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import corral_client as cc  # noqa: E402
from corral_client import errors  # noqa: E402

Q = "prompts"
K = "corral:{prompts}"


def client_url(redis_server):
    if MODE == "tcp-acl":
        return f"redis://corral:{ACL_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    return f"unix://{redis_server.socket}"


@pytest.fixture
def q(r):
    """A declared queue (max_payload 1000)."""
    declare(r, Q, max_payload=1000)
    return r


@pytest.fixture
def client(redis_server):
    c = cc.Client(client_url(redis_server))
    yield c
    c.close()


def fcalls(r):
    """How many FCALLs the server has run since CONFIG RESETSTAT."""
    info = r.info("commandstats")
    return sum(info.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("fcall", "fcall_ro"))


@pytest.fixture
def corrald(build_dir, tmp_path, redis_server, r):
    """Starts corrald with one echo worker on queue prompts and waits until
    the queue is declared."""
    exe = binary_path(build_dir, "corrald")
    conf = tmp_path / "corral.conf"
    conf.write_text(redis_server.redis_section() +
                    "[pool]\nmin = 1\nmax = 1\nconcurrency = 4\ndrain_timeout = 5s\n"
                    f"[queue {Q}]\nhandler = echo\n")
    log = open(tmp_path / "corrald.log", "w")
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=log, start_new_session=True)
    wait_until(lambda: r.exists(f"{K}:conf") or proc.poll() is not None,
               what="corrald to declare its queue")
    assert proc.poll() is None, (tmp_path / "corrald.log").read_text()
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
    text = (tmp_path / "corrald.log").read_text()
    assert "Sanitizer" not in text and "runtime error" not in text, text


# --- enqueue -----------------------------------------------------------------


def test_enqueue_returns_the_new_jobs_id_as_an_int_and_stores_the_payload_as_json(q, client):
    jid = client.enqueue(Q, {"messages": [{"role": "user", "content": "héllo"}]})
    assert jid == 1 and client.enqueue(Q, [1, 2]) == 2
    job = client.job(Q, jid)
    assert json.loads(job.payload) == {"messages": [{"role": "user", "content": "héllo"}]}
    assert (job.id, job.queue, job.state, job.priority) == (1, Q, "queued", "normal")


def test_enqueue_options_are_sent_as_corral_enqueues_options(q, client):
    jid = client.enqueue(Q, {}, priority="high", max_attempts=2, timeout_ms=1500,
                         service="svc")
    job = client.job(Q, jid)
    assert (job.priority, job.max_attempts, job.timeout_ms, job.service) == \
        ("high", 2, 1500, "svc")
    assert client.job(Q, client.enqueue(Q, {}, priority=2)).priority == "low"
    assert client.job(Q, client.enqueue(Q, {}, delay_ms=60000)).state == "scheduled"


def test_enqueue_with_a_unique_key_returns_the_job_that_holds_it(q, client):
    first = client.enqueue(Q, {"n": 1}, unique_key="order-42")
    assert client.enqueue(Q, {"n": 2}, unique_key="order-42") == first
    assert client.job(Q, first).unique_key == "order-42"


def test_a_client_with_another_prefix_uses_that_prefixs_keys(r, redis_server):
    r.fcall("corral_declare", 1, "myapp:{jobs}", "{}")
    with cc.Client(f"unix://{redis_server.socket}", prefix="myapp") as c:
        jid = c.enqueue("jobs", {})
        assert r.exists(f"myapp:{{jobs}}:job:{jid}") and c.job("jobs", jid).state == "queued"
    with pytest.raises(cc.InvalidQueueNameError, match='bad key prefix "my app"'):
        cc.Client(f"unix://{redis_server.socket}", prefix="my app")


def test_a_client_on_a_redis_connection_of_its_own_uses_it_and_leaves_it_open(q, redis_server):
    raw = redis.Redis(unix_socket_path=redis_server.socket)  # replies as bytes
    c = cc.Client(raw)
    jid = c.enqueue(Q, {"a": 1})
    assert c.job(Q, jid).state == "queued"
    c.cancel(Q, jid)
    assert c.wait(Q, jid).state == "cancelled"
    c.close()
    assert raw.ping()
    raw.close()


# --- enqueue_many --------------------------------------------------------------


def test_enqueue_many_returns_ids_in_order_with_the_options_applied_to_each(q, client):
    ids = client.enqueue_many(Q, [{"n": i} for i in range(10)], priority="high")
    assert ids == list(range(1, 11))
    for i, jid in enumerate(ids):
        job = client.job(Q, jid)
        assert json.loads(job.payload) == {"n": i} and job.priority == "high"


def test_enqueue_many_sends_batches_of_1000(q, client):
    q.config_resetstat()
    ids = client.enqueue_many(Q, list(range(2500)))
    assert ids == list(range(1, 2501)) and fcalls(q) == 3
    assert json.loads(client.job(Q, 2500).payload) == 2499


def test_enqueue_many_of_an_empty_list_sends_nothing(q, client):
    q.config_resetstat()
    assert client.enqueue_many(Q, []) == [] and fcalls(q) == 0


def test_enqueue_many_refused_by_the_server_writes_nothing_and_names_the_position(q, client):
    before = db_snapshot(q)
    with pytest.raises(cc.PayloadTooLargeError) as e:
        client.enqueue_many(Q, [1, "x" * 2000, 3])
    assert e.value.code == "TOOBIG" and e.value.message == \
        'queue "prompts": payload 2 of 3 is 2002 bytes, limit is 1000 (max_payload)'
    assert e.value.enqueued == [] and e.value.batch_start == 0
    assert db_snapshot(q) == before


def test_enqueue_many_refused_in_a_later_batch_reports_the_earlier_batches_jobs(q, client):
    payloads = [1] * 1500
    payloads[1200] = "x" * 2000
    with pytest.raises(cc.PayloadTooLargeError) as e:
        client.enqueue_many(Q, payloads)
    assert e.value.code == "TOOBIG" and e.value.message == \
        'queue "prompts": payload 201 of 500 is 2002 bytes, limit is 1000 (max_payload)'
    assert e.value.enqueued == list(range(1, 1001)) and e.value.batch_start == 1000
    assert q.get(f"{K}:seq") == "1000"


def test_enqueue_many_with_a_payload_that_is_not_serialisable_sends_nothing(q, client):
    q.config_resetstat()
    before = db_snapshot(q)
    with pytest.raises(cc.InvalidPayloadError) as e:
        client.enqueue_many(Q, [1] * 1500 + [{1, 2}])
    assert e.value.message == ('queue "prompts": payload 1501 of 1501 is not '
                               'JSON-serialisable (Object of type set is not JSON serializable)')
    assert fcalls(q) == 0 and db_snapshot(q) == before


# --- job, cancel, wait --------------------------------------------------------------


def test_job_of_an_unknown_id_is_none(q, client):
    assert client.job(Q, 99) is None and client.job(Q, "99") is None


def test_cancel_ends_a_queued_job_cancelled(q, client):
    jid = client.enqueue(Q, {})
    assert client.cancel(Q, jid) is None
    assert client.job(Q, jid).state == "cancelled"


def test_cancel_of_an_unknown_or_ended_job_raises_the_servers_error(q, client):
    jid = client.enqueue(Q, {})
    client.cancel(Q, jid)
    with pytest.raises(cc.JobFinishedError) as e:
        client.cancel(Q, jid)
    assert isinstance(e.value, cc.JobStateError) and e.value.code == "FINISHED"
    assert e.value.message == f'queue "prompts": job {jid} is cancelled and cannot be cancelled'
    with pytest.raises(cc.NoSuchJobError) as e:
        client.cancel(Q, 99)
    assert e.value.code == "NOJOB" and e.value.message == 'queue "prompts": no job 99'


def test_wait_returns_the_done_job_with_its_result_and_timings(q, client, corrald):
    jid = client.enqueue(Q, {"prompt": "hi"})
    job = client.wait(Q, jid, timeout=15)
    assert job.state == "done" and job.ended
    assert job.result_json() == {"prompt": "hi"} and job.error is None
    assert job.usage is None  # the echo handler reports none
    t = job.timings
    assert t["created_ms"] <= t["started_ms"] <= t["finished_ms"]
    assert t["wait_ms"] >= 0 and t["run_ms"] >= 0


def test_wait_on_a_job_that_already_ended_returns_at_once(q, client):
    jid = client.enqueue(Q, {})
    client.cancel(Q, jid)
    t0 = time.monotonic()
    assert client.wait(Q, jid, timeout=30).state == "cancelled"
    assert time.monotonic() - t0 < 1


def test_wait_that_runs_out_raises_wait_timeout_after_the_timeout(q, client):
    jid = client.enqueue(Q, {})  # no worker: it never ends
    t0 = time.monotonic()
    with pytest.raises(cc.WaitTimeoutError) as e:
        client.wait(Q, jid, timeout=0.3)
    took = time.monotonic() - t0
    assert 0.3 <= took < 2
    assert (e.value.code, e.value.message) == \
        ("TIMEOUT", f'queue "prompts": job {jid} did not end within 300 ms')


def test_wait_on_an_unknown_job_raises_no_such_job_at_once(q, client):
    t0 = time.monotonic()
    with pytest.raises(cc.NoSuchJobError, match="no job 99"):
        client.wait(Q, 99, timeout=30)
    assert time.monotonic() - t0 < 1


def test_wait_with_a_bad_timeout_is_refused(q, client):
    for bad in (0, -1, math.nan, math.inf, "5", True):
        with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
            client.wait(Q, 1, timeout=bad)


def test_a_failed_job_is_returned_dead_with_its_error(q, client, corrald, redis_server):
    # The echo handler ends a job whose payload is not JSON text dead before
    # running it: the one way to a dead job without an AI service.
    raw = redis_server.client()
    jid = int(raw.fcall("corral_enqueue", 1, K, b'"\xff"'))
    raw.close()
    job = client.wait(Q, jid, timeout=15)
    assert job.state == "dead" and "invalid UTF-8" in job.error and job.result is None


# --- checks before the round trip: the server's messages, nothing sent ----------

BAD_OPTIONS = [
    {"prio": 1},
    {"delay_ms": -5},
    {"delay_ms": 31622400001},
    {"delay_ms": 2 ** 63},
    {"delay_ms": 10 ** 400},
    {"delay_ms": 1.5},
    {"delay_ms": None},
    {"delay_ms": True},
    {"max_attempts": 0},
    {"max_attempts": 1001},
    {"max_attempts": 2.5},
    {"timeout_ms": 0},
    {"timeout_ms": 86400001},
    {"timeout_ms": False},
    {"service": "a b"},
    {"service": ""},
    {"service": "x" * 65},
    {"service": 5},
    {"service": None},
    {"unique_key": ""},
    {"unique_key": "x" * 257},
    {"unique_key": 5},
    {"unique_key": None},
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=[json.dumps(o)[:40] for o in BAD_OPTIONS])
def test_bad_options_are_refused_before_sending_with_the_servers_message(q, client, options):
    with pytest.raises(redis.ResponseError) as server:
        q.fcall("corral_enqueue", 1, K, "{}", json.dumps(options))
    q.config_resetstat()
    with pytest.raises(cc.InvalidOptionError) as e:
        client.enqueue(Q, {}, **options)
    assert str(e.value) == str(server.value) and e.value.code == "BADOPTION"
    assert fcalls(q) == 0


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "a b", "x" * 65, "jobsé", "é" * 50])
def test_bad_queue_names_are_refused_before_sending_with_the_servers_message(q, client, name):
    with pytest.raises(redis.ResponseError) as server:
        q.fcall("corral_enqueue", 1, f"corral:{{{name}}}", "{}")
    q.config_resetstat()
    for call in (lambda: client.enqueue(name, {}), lambda: client.enqueue_many(name, [1]),
                 lambda: client.job(name, 1), lambda: client.wait(name, 1, timeout=1),
                 lambda: client.cancel(name, 1)):
        with pytest.raises(cc.InvalidQueueNameError) as e:
            call()
        assert str(e.value) == str(server.value) and e.value.code == "BADNAME"
    assert fcalls(q) == 0


def test_options_the_server_decides_are_passed_on_and_refused_there(q, client):
    # priority names depend on the queue's settings; numbers as text are the
    # server's to read ("5" is 5)
    with pytest.raises(cc.CorralError, match='unknown priority "urgent" .known: high, normal, '
                                             'low, or 0-2.'):
        client.enqueue(Q, {}, priority="urgent")
    assert client.job(Q, client.enqueue(Q, {}, max_attempts="5")).max_attempts == 5


@pytest.mark.parametrize("payload, why", [
    ({1, 2}, "Object of type set is not JSON serializable"),
    (object(), "Object of type object is not JSON serializable"),
    (math.nan, "Out of range float values are not JSON compliant"),
    ({"a": math.inf}, "Out of range float values are not JSON compliant"),
    (b"{}", "Object of type bytes is not JSON serializable"),
])
def test_a_payload_that_is_not_json_serialisable_is_refused_before_sending(q, client, payload,
                                                                           why):
    q.config_resetstat()
    with pytest.raises(cc.InvalidPayloadError) as e:
        client.enqueue(Q, payload)
    assert e.value.message == f'queue "prompts": payload is not JSON-serialisable ({why})'
    assert fcalls(q) == 0 and q.get(f"{K}:seq") is None


def test_server_refusals_pass_through_with_code_and_message(q, client):
    with pytest.raises(cc.UnknownQueueError) as e:
        client.enqueue("nosuch", {})
    assert e.value.code == "NOQUEUE" and e.value.message == \
        'unknown queue "nosuch": no corrald or corralctl has declared it (corral_declare)'
    with pytest.raises(cc.PayloadTooLargeError) as e:
        client.enqueue(Q, "x" * 2000)
    assert e.value.code == "TOOBIG" and \
        e.value.message == 'queue "prompts": payload is 2002 bytes, limit is 1000 (max_payload)'


# --- every code word raises its class ------------------------------------------


def library_words():
    """The code words of the Function library's error replies, from its
    CODES table (queue/lua/prelude.lua; docs/protocol.md lists the same)."""
    with open(os.path.join(REPO, "queue", "lua", "prelude.lua")) as f:
        table = re.search(r"^local CODES = \{\n(.*?)^\}", f.read(), re.S | re.M).group(1)
    return re.findall(r"^\s+([A-Z]+) = true,", table, re.M)


LIBRARY_WORDS = library_words()


def test_the_client_knows_every_word_of_the_library_and_no_other():
    assert len(LIBRARY_WORDS) >= 12
    assert sorted(cc.CODE_CLASSES) == sorted(LIBRARY_WORDS)

# A stand-in "corral" library whose corral_enqueue answers the error reply
# it is given as its payload: the client sees the replies the library sends.
STAND_IN = """#!lua name=corral
redis.register_function('corral_enqueue', function(keys, args)
    return redis.error_reply(cjson.decode(args[1]))
end)
"""


@pytest.mark.parametrize("word", LIBRARY_WORDS + ["ERR", "SOMENEWWORD"])
def test_each_code_word_raises_its_class_with_code_and_message(r, client, word):
    r.execute_command("FUNCTION", "LOAD", "REPLACE", STAND_IN)
    with pytest.raises(cc.CorralError) as e:
        client.enqueue(Q, f"{word} queue \"prompts\": what went wrong")
    assert type(e.value) is cc.CODE_CLASSES.get(word, cc.ServerError)
    assert (type(e.value) is cc.ServerError) == (word not in LIBRARY_WORDS)
    assert (e.value.code, e.value.message) == (word, 'queue "prompts": what went wrong')
    assert str(e.value) == f'{word} queue "prompts": what went wrong'


def test_redis_own_errors_raise_server_error_with_their_word(r, client):
    r.execute_command("FUNCTION", "DELETE", "corral")
    with pytest.raises(cc.ServerError) as e:
        client.enqueue(Q, {})
    assert e.value.code == "ERR" and "Function not found" in e.value.message


def test_the_class_table_is_the_one_errors_module_table():
    assert cc.CODE_CLASSES is errors.CODE_CLASSES
    for word, cls in cc.CODE_CLASSES.items():
        assert issubclass(cls, cc.CorralError) and cls.code == word


# --- AsyncClient ----------------------------------------------------------------


def test_async_client_makes_every_call_with_the_same_results_and_errors(q, redis_server,
                                                                        corrald):
    async def run():
        async with cc.AsyncClient(client_url(redis_server)) as c:
            jid = await c.enqueue(Q, {"n": 1}, priority="high")
            ids = await c.enqueue_many(Q, [{"n": 2}, {"n": 3}], max_attempts=3)
            assert ids == [jid + 1, jid + 2]
            done = await c.wait(Q, jid, timeout=15)
            assert done.state == "done" and done.result_json() == {"n": 1}
            assert (await c.job(Q, ids[1])).max_attempts == 3
            assert await c.job(Q, 999) is None
            later = await c.enqueue(Q, {}, delay_ms=60000)
            await c.cancel(Q, later)
            assert (await c.wait(Q, later, timeout=5)).state == "cancelled"
            with pytest.raises(cc.InvalidOptionError):
                await c.enqueue(Q, {}, prio=1)
            with pytest.raises(cc.InvalidPayloadError):
                await c.enqueue_many(Q, [{1}])
            with pytest.raises(cc.NoSuchJobError):
                await c.wait(Q, 999, timeout=1)
            with pytest.raises(cc.CorralError, match="no job 999"):
                await c.cancel(Q, 999)
            with pytest.raises(cc.CorralError, match='unknown queue "nosuch"'):
                await c.enqueue("nosuch", {})

    asyncio.run(run())


def test_async_wait_that_runs_out_raises_wait_timeout(q, redis_server):
    async def run():
        async with cc.AsyncClient(client_url(redis_server)) as c:
            jid = await c.enqueue(Q, {})
            t0 = time.monotonic()
            with pytest.raises(cc.WaitTimeoutError):
                await c.wait(Q, jid, timeout=0.3)
            assert 0.3 <= time.monotonic() - t0 < 2

    asyncio.run(run())


# --- follow: streamed answers (docs/protocol.md, "Streamed answers") --------------


def stream_ended_at(stub, key):
    """When the stand-in finished sending the stream of that key."""
    with stub.stub.lock:
        return next(s["ended"] for s in stub.stub.streams if s["key"] == key)


def follow_all(kind, redis_server, jid, timeout=20):
    """[(time.monotonic(), piece)] of the follow of a new Client ("sync") or
    AsyncClient ("async")."""
    async def run():
        async with cc.AsyncClient(client_url(redis_server)) as c:
            return [(time.monotonic(), piece) async for piece in c.follow(Q, jid, timeout=timeout)]
    if kind == "async":
        return asyncio.run(run())
    with cc.Client(client_url(redis_server)) as c:
        return [(time.monotonic(), piece) for piece in c.follow(Q, jid, timeout=timeout)]


def test_async_follow_yields_the_pieces_as_the_worker_streams_them(r, redis_server, make_worker,
                                                                   stub):
    make_worker(HTTP_Q, stub.url)
    jid = worker_enqueue(r, {"max_tokens": 6, "stub": {"sse": "openai", "chunks": 3,
                                                        "chunk_ms": 200, "key": "aio"}})

    async def run():
        async with cc.AsyncClient(client_url(redis_server)) as c:
            got = [(time.monotonic(), piece) async for piece in c.follow(Q, int(jid), timeout=20)]
            return got, await c.wait(Q, jid, timeout=10)

    got, done = asyncio.run(run())
    assert [piece for _, piece in got] == ["w0 w1 ", "w2 w3 ", "w4 w5"]
    assert got[0][0] < stream_ended_at(stub, "aio")  # read while the service still streamed
    assert done.state == "done" and done.result_json()["text"] == "w0 w1 w2 w3 w4 w5"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_follow_of_an_answer_that_was_not_streamed_yields_nothing_and_ends_with_the_job(
        r, redis_server, make_worker, stub, kind):
    make_worker(HTTP_Q, stub.url)
    jid = worker_enqueue(r, {"max_tokens": 3, "stub": {"usage": "openai", "delay_ms": 300}})
    assert follow_all(kind, redis_server, jid) == []
    j = conftest_job(r, jid)
    assert j["state"] == "done"
    assert json.loads(j["result"])["choices"][0]["message"]["content"] == "w0 w1 w2"


def test_async_follow_of_a_run_that_failed_for_good_ends_with_the_job(r, redis_server,
                                                                      make_worker, stub):
    make_worker(HTTP_Q.replace("timeout = 5s", "timeout = 5s\nmax_attempts = 1"), stub.url)
    jid = worker_enqueue(r, {"max_tokens": 12, "stub": {"sse": "openai", "chunks": 4,
                                                         "cut_after_events": 3, "key": "cut"}})
    got = follow_all("async", redis_server, jid)
    assert [piece for _, piece in got] == ["w0 w1 w2 ", "w3 w4 w5 "]
    assert conftest_job(r, jid)["state"] == "dead"


def test_async_follow_ends_when_the_running_job_is_cancelled(r, redis_server, make_worker, stub):
    make_worker(HTTP_Q, stub.url)
    jid = worker_enqueue(r, {"max_tokens": 20, "stub": {"sse": "anthropic", "chunks": 10,
                                                         "chunk_ms": 300, "key": "cx"}})

    async def run():
        async with cc.AsyncClient(client_url(redis_server)) as c:
            got = []
            async for piece in c.follow(Q, jid, timeout=20):
                got.append(piece)
                if len(got) == 1:
                    await c.cancel(Q, jid)
            return got

    got = asyncio.run(run())
    assert 1 <= len(got) < 10, got
    assert conftest_job(r, jid)["state"] == "cancelled"
    assert r.xrevrange(f"{K}:stream:{jid}", count=1)[0][1]["end"] == "cancelled"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_follow_goes_on_into_the_next_run_after_a_run_that_failed(q, redis_server, kind):
    # The entries as the worker writes them (corral_stream_append): run 1
    # fails mid-answer, the job is retried, run 2 streams it again.
    jid = int(worker_enqueue(q, {}))
    sk = f"{K}:stream:{jid}"
    q.xadd(sk, {"run": "1", "text": "Hel"})
    q.xadd(sk, {"run": "1", "end": "failed", "error": "event stream cut mid-event: ..."})
    got = []
    t = threading.Thread(target=lambda: got.extend(follow_all(kind, redis_server, jid)))
    t.start()
    try:
        # The follower has read run 1 and its failed end, and waits for more.
        wait_until(lambda: q.info("clients")["blocked_clients"] >= 1 or not t.is_alive(),
                   what="the follower to block on the stream")
        assert t.is_alive(), "follow stopped at the failed end of run 1"
        q.xadd(sk, {"run": "2", "text": "Hello"})
        q.xadd(sk, {"run": "2", "text": ", world"})
        q.xadd(sk, {"run": "2", "end": "complete", "error": ""})
        q.xadd(sk, {"run": "2", "text": "not read: after the end"})
    finally:
        t.join(timeout=10)
    assert not t.is_alive()
    assert [piece for _, piece in got] == ["Hel", "Hello", ", world"]
    assert [piece.run for _, piece in got] == [1, 2, 2]
    assert all(isinstance(piece, cc.Piece) for _, piece in got)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_follow_that_runs_out_raises_wait_timeout_and_an_unknown_job_no_such_job(
        q, redis_server, kind):
    jid = int(worker_enqueue(q, {}))
    q.xadd(f"{K}:stream:{jid}", {"run": "1", "text": "partial"})
    t0 = time.monotonic()
    with pytest.raises(cc.WaitTimeoutError, match=f"job {jid} did not end within 300 ms"):
        follow_all(kind, redis_server, jid, timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2
    with pytest.raises(cc.NoSuchJobError, match="no job 999"):
        follow_all(kind, redis_server, 999, timeout=1)
    with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
        follow_all(kind, redis_server, jid, timeout=0)


# --- the example ------------------------------------------------------------------


def test_the_python_example_enqueues_waits_and_prints_the_result(q, redis_server, corrald):
    res = subprocess.run([sys.executable, os.path.join(REPO, "examples", "enqueue_wait.py"),
                          client_url(redis_server), Q, '{"prompt": "hi"}', "15"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"prompt": "hi"}
    assert res.stderr.startswith("job 1")


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "é", 5, None])
def test_a_bad_tenant_is_refused_before_sending_with_the_servers_message(q, client, tenant):
    with pytest.raises(redis.ResponseError) as server:
        q.fcall("corral_enqueue", 1, K, "{}", json.dumps({"tenant": tenant}))
    q.config_resetstat()
    with pytest.raises(cc.InvalidTenantError) as e:
        client.enqueue(Q, {}, tenant=tenant)
    assert str(e.value) == str(server.value) and e.value.code == "BADTENANT"
    assert isinstance(e.value, cc.InvalidOptionError)
    assert fcalls(q) == 0


def test_a_job_enqueued_with_a_tenant_reads_back_its_tenant(q, client):
    jid = client.enqueue(Q, {"n": 1}, tenant="acme")
    assert client.job(Q, jid).tenant == "acme"
