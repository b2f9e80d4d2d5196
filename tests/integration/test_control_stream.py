"""Streamed answers (docs/protocol.md, "Streamed answers"): when the AI
service answers text/event-stream, the worker appends each piece of the
text to the job's Redis Stream as it arrives, any client follows it with
XREAD BLOCK, and the result is the assembled text with the usage; a
malformed, endless, oversized or cut stream ends the job failed with a
clear reason, what was streamed kept."""
import json
import os
import subprocess
import time

import pytest

from conftest import binary_path, wait_until
from worker_fixtures import (HTTP_Q, K, Q, await_end, enqueue, job,  # noqa: F401
                             make_worker, stub)


def follow(r, jid, timeout=15):
    """Reads the job's stream as a follower would -> [(read_at, fields)],
    up to and including the entry with "end"."""
    sk, last, out = f"{K}:stream:{jid}", "0", []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = r.xread({sk: last}, block=500)
        for _, entries in got or []:
            for eid, fields in entries:
                last = eid
                out.append((time.monotonic(), fields))
                if "end" in fields:
                    return out
    raise AssertionError(f"no end entry in the stream of job {jid}: {out}")


def stream_rec(srv, key):
    with srv.stub.lock:
        return next(dict(s) for s in srv.stub.streams if s["key"] == key)


def stream_ended(srv, key):
    """When the stand-in finished sending stream key (its monotonic clock).
    The job can end before the stand-in's thread has noted the end (the
    last bytes are out, the note comes after them): wait for the note."""
    return wait_until(lambda: stream_rec(srv, key)["ended"], timeout=10,
                      what=f"the stand-in to note the end of stream {key}")


@pytest.mark.parametrize("shape", ["openai", "anthropic", "responses"])
def test_a_streamed_answer_is_followed_piece_by_piece_and_stored_whole(r, make_worker, stub,
                                                                        shape):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"model": "m", "max_tokens": 12, "stub": {
        "sse": shape, "chunks": 4, "chunk_ms": 150, "key": shape, "input_tokens": 7}})
    entries = follow(r, jid)
    texts = [f for _, f in entries if "text" in f]
    assert len(texts) == 4 and all(f["run"] == "1" for f in texts), entries
    end = entries[-1][1]
    assert end["end"] == "complete" and end["error"] == "", end
    # The first piece was readable while the service was still streaming.
    assert entries[0][0] < stream_ended(stub, shape)
    j = await_end(r, jid)
    assert j["state"] == "done", j
    result = json.loads(j["result"])
    assert result["text"] == "".join(f["text"] for f in texts)
    assert result["text"].split() == [f"w{i}" for i in range(12)]
    assert result["streamed"] is True and result["usage"] == {"input_tokens": 7,
                                                              "output_tokens": 12}, result
    assert 0 < r.pttl(f"{K}:stream:{jid}")


def test_a_stream_cut_mid_event_fails_the_job_and_keeps_what_was_streamed(r, make_worker, stub):
    make_worker(HTTP_Q.replace("timeout = 5s", "timeout = 5s\nmax_attempts = 1"), stub.url)
    jid = enqueue(r, {"max_tokens": 12, "stub": {"sse": "openai", "chunks": 4,
                                                  "cut_after_events": 3, "key": "cut"}})
    j = await_end(r, jid)
    assert j["state"] == "dead", j
    assert "event stream cut mid-event" in j["error"], j
    assert "kept in the job's stream" in j["error"], j
    entries = [f for _, f in follow(r, jid)]
    assert [f["text"] for f in entries if "text" in f] == ["w0 w1 w2 ", "w3 w4 w5 "]
    assert entries[-1]["end"] == "failed" and "cut mid-event" in entries[-1]["error"]


def test_a_malformed_event_fails_the_job_at_once_with_the_event_named(r, make_worker, stub):
    make_worker(HTTP_Q, stub.url)
    good = json.dumps({"choices": [{"delta": {"content": "hello"}}]})
    raw = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
           f"data: {good}\n\ndata: this is not json\n\n").encode()
    jid = enqueue(r, {"stub": {"raw_hex": raw.hex()}})
    j = await_end(r, jid)
    assert j["state"] == "dead" and j["attempts"] == 1, j
    assert "malformed event stream: the data of event 2 is not a JSON object" in j["error"], j
    entries = [f for _, f in follow(r, jid)]
    assert entries[0]["text"] == "hello" and entries[-1]["end"] == "failed"


def test_a_streamed_answer_over_max_result_fails_the_job(r, make_worker, stub):
    make_worker(HTTP_Q.replace("max_result = 64K", "max_result = 200"), stub.url)
    jid = enqueue(r, {"max_tokens": 2000, "stub": {"sse": "anthropic", "chunks": 50,
                                                    "key": "big"}})
    j = await_end(r, jid)
    assert j["state"] == "dead", j
    assert "streamed answer larger than max_result (200 bytes)" in j["error"], j


def test_an_endless_stream_is_stopped_by_the_time_limit(r, make_worker, stub):
    make_worker(HTTP_Q.replace("timeout = 5s", "timeout = 1s\nmax_attempts = 1"), stub.url)
    jid = enqueue(r, {"max_tokens": 2000, "stub": {"sse": "openai", "chunks": 2000,
                                                      "chunk_ms": 20, "key": "endless"}})
    j = await_end(r, jid)
    assert j["state"] == "dead" and "event stream cut: timed out after 1000 ms" in j["error"], j
    assert stream_rec(stub, "endless")["closed_by_client"]


def test_corralctl_wait_follow_prints_the_text_as_it_comes(r, make_worker, stub, build_dir,
                                                          redis_server, tmp_path):
    ctl = binary_path(build_dir, "corralctl")
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"max_tokens": 6, "stub": {"sse": "openai", "chunks": 3, "chunk_ms": 300,
                                                 "key": "f"}})
    p = subprocess.Popen([ctl, "-c", str(conf), "wait", Q, jid, "--follow", "--timeout", "20s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = os.read(p.stdout.fileno(), 100)  # the first piece, before the stream ends
    first_at = time.monotonic()
    rest, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert (first + rest).decode() == "w0 w1 w2 w3 w4 w5\n"
    assert first_at < stream_ended(stub, "f")


def test_corralctl_wait_follow_prints_an_answer_that_was_not_streamed_whole(
        r, make_worker, stub, build_dir, redis_server, tmp_path):
    ctl = binary_path(build_dir, "corralctl")
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"max_tokens": 3, "stub": {"usage": "openai", "delay_ms": 300}})
    out = subprocess.run([ctl, "-c", str(conf), "wait", Q, jid, "--follow", "--timeout", "20s"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "w0 w1 w2"


def test_the_python_clients_follow_yields_the_pieces_as_they_come(r, make_worker, stub,
                                                                   redis_server):
    import sys
    from conftest import REPO
    sys.path.insert(0, os.path.join(REPO, "clients", "python"))
    import corral_client as cc
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"max_tokens": 6, "stub": {"sse": "anthropic", "chunks": 3,
                                                 "chunk_ms": 200, "key": "py"}})
    client = cc.Client(redis_server.client(decode_responses=True))
    got = []
    for piece in client.follow(Q, int(jid), timeout=20):
        got.append((time.monotonic(), piece))
    assert "".join(p for _, p in got) == "w0 w1 w2 w3 w4 w5"
    assert len(got) == 3 and got[0][0] < stream_ended(stub, "py")
    assert client.wait(Q, int(jid), timeout=10).state == "done"
    with pytest.raises(cc.WaitTimeoutError):
        list(client.follow(Q, int(enqueue(r, {"stub": {"delay_ms": 3000}})), timeout=0.3))


def test_a_services_model_setting_rewrites_the_payloads_model(r, stub, build_dir, redis_server,
                                                             tmp_path):
    from worker_fixtures import Worker
    key = tmp_path / "k"
    key.write_text("sk-m\n")
    conf = tmp_path / "m.conf"
    conf.write_text(redis_server.redis_section() + f"[pool]\nconcurrency = 2\n"
                    f"[queue {Q}]\n{HTTP_Q}\n"
                    f"[service ai]\nurl = {stub.url}\napi_key_file = {key}\n"
                    "model = cheap-model-1\n")
    w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "m.log"))
    try:
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker")
        jid = enqueue(r, {"model": "big-model", "max_tokens": 2, "stub": {"usage": "openai"},
                          "messages": [{"role": "user", "content": "hi"}]})
        j = await_end(r, jid)
        assert j["state"] == "done", j
        assert json.loads(j["result"])["model"] == "cheap-model-1"  # the stand-in answers with it
        with stub.stub.lock:
            assert '"model":"cheap-model-1"' in stub.stub.bodies[-1]
        assert json.loads(j["payload"])["model"] == "big-model"  # the job keeps its own
    finally:
        assert w.stop() == 0, w.logs()
