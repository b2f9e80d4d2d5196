"""The AI stand-in's modes for token budgets and streamed answers
(tests/aistub.py, docs/tokens.md), driven with plain HTTP: answers with
usage in each provider's shape, rate-limit headers, a TPM limit enforced
with token-type 429s and counted exactly, event streams at a set pace, and
a client that closes a stream noticed at once."""
import http.client
import json
import os
import socket
import sys
import time

import pytest

from conftest import REPO, wait_until

sys.path.insert(0, os.path.join(REPO, "tests"))
import aistub  # noqa: E402


@pytest.fixture
def stub():
    srv = aistub.Server().start()
    yield srv
    srv.stop()


def conn(srv):
    return http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)


def post(srv, body, path="/v1/chat/completions"):
    """(status, headers as a lower-cased dict, parsed JSON body)."""
    c = conn(srv)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, raw, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data) if data else None


def get(srv, path):
    c = conn(srv)
    c.request("GET", path)
    data = c.getresponse().read()
    c.close()
    return json.loads(data)


def events_of(text):
    """(event name or None, data) of a whole text/event-stream body."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((name, "\n".join(data)))
    return out


def test_openai_usage_answer_counts_the_request_and_the_output_cap(stub):
    body = {"model": "gpt-4o-mini", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}],
            "stub": {"usage": "openai", "model": "gpt-4o-mini-2024-07-18"}}
    raw = json.dumps(body).encode()
    status, _, ans = post(stub, raw)
    assert status == 200
    assert ans["object"] == "chat.completion"
    assert ans["model"] == "gpt-4o-mini-2024-07-18"
    assert ans["usage"] == {"prompt_tokens": (len(raw) + 3) // 4, "completion_tokens": 7,
                            "total_tokens": (len(raw) + 3) // 4 + 7}
    assert ans["choices"][0]["message"]["content"] == " ".join(f"w{i}" for i in range(7))
    tokens = get(stub, "/_tokens")
    assert tokens["total"] == {"input": (len(raw) + 3) // 4, "output": 7, "calls": 1,
                               "rejected": 0}


def test_anthropic_and_responses_answers_have_their_own_shapes(stub):
    _, _, a = post(stub, {"model": "claude-3-5-haiku", "stub": {
        "usage": "anthropic", "input_tokens": 25, "output_tokens": 3}})
    assert a["type"] == "message" and a["model"] == "claude-3-5-haiku"
    assert a["content"] == [{"type": "text", "text": "w0 w1 w2"}]
    assert a["usage"] == {"input_tokens": 25, "output_tokens": 3}
    _, _, r = post(stub, {"max_output_tokens": 2, "stub": {"usage": "responses",
                                                           "input_tokens": 9}})
    assert r["object"] == "response" and r["model"] == "stub-model"
    assert r["output"][0]["content"][0]["text"] == "w0 w1"
    assert r["usage"] == {"input_tokens": 9, "output_tokens": 2, "total_tokens": 11}
    assert get(stub, "/_tokens")["total"]["input"] == 34


def test_a_bad_usage_body_is_sent_as_given_and_the_served_tokens_still_counted(stub):
    _, _, a = post(stub, {"stub": {"usage": "openai", "input_tokens": 5, "output_tokens": 2,
                                   "usage_body": {"prompt_tokens": -1,
                                                  "completion_tokens": "x"}}})
    assert a["usage"] == {"prompt_tokens": -1, "completion_tokens": "x"}
    _, _, b = post(stub, {"stub": {"usage": "anthropic", "input_tokens": 5, "output_tokens": 2,
                                   "usage_body": None}})
    assert "usage" not in b
    assert get(stub, "/_tokens")["total"] == {"input": 10, "output": 4, "calls": 2,
                                              "rejected": 0}


def test_failures_come_first_and_only_answers_with_usage_are_counted(stub):
    spec = {"usage": "openai", "input_tokens": 5, "output_tokens": 1, "status": 503,
            "fail_times": 2, "key": "job-1"}
    assert [post(stub, {"stub": spec})[0] for _ in range(3)] == [503, 503, 200]
    tokens = get(stub, "/_tokens")
    assert tokens["total"] == {"input": 5, "output": 1, "calls": 1, "rejected": 0}
    assert [c["key"] for c in tokens["calls"]] == ["job-1"]


def test_tpm_limit_answers_token_429s_with_openai_headers_and_counts_exactly(stub):
    status, _, _ = post(stub, {"tpm": {"limit": 100, "window_ms": 60000}}, path="/_control")
    assert status == 200
    spec = {"usage": "openai", "input_tokens": 30, "output_tokens": 10}
    s1, h1, _ = post(stub, {"stub": dict(spec, key="a")})
    s2, h2, _ = post(stub, {"stub": dict(spec, key="b")})
    s3, h3, e3 = post(stub, {"stub": dict(spec, key="c")})
    assert (s1, s2, s3) == (200, 200, 429)
    assert h1["x-ratelimit-limit-tokens"] == "100"
    assert h1["x-ratelimit-remaining-tokens"] == "60"
    assert h2["x-ratelimit-remaining-tokens"] == "20"
    assert h3["x-ratelimit-remaining-tokens"] == "20"
    assert h3["x-ratelimit-reset-tokens"].endswith("s")
    assert "retry-after" not in h3
    assert e3["error"]["type"] == "tokens"
    assert e3["error"]["code"] == "rate_limit_exceeded"
    assert "tokens per min (TPM): Limit 100, Used 80, Requested 40" in e3["error"]["message"]
    tokens = get(stub, "/_tokens")
    assert tokens["total"] == {"input": 60, "output": 20, "calls": 2, "rejected": 1}
    assert [(c["key"], c["status"], c["input"]) for c in tokens["calls"]] == [
        ("a", 200, 30), ("b", 200, 30), ("c", 429, 0)]
    assert tokens["windows"] == [{"index": 0, "input": 60, "output": 20, "calls": 2,
                                  "rejected": 1}]


def test_tpm_limit_answers_anthropic_429s_with_tokens_at_zero_and_retry_after(stub):
    post(stub, {"tpm": {"limit": 50, "window_ms": 60000}}, path="/_control")
    spec = {"usage": "anthropic", "input_tokens": 30, "output_tokens": 10}
    s1, h1, _ = post(stub, {"stub": spec})
    s2, h2, e2 = post(stub, {"stub": spec})
    assert (s1, s2) == (200, 429)
    assert h1["anthropic-ratelimit-tokens-remaining"] == "10"
    assert h1["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert h2["anthropic-ratelimit-tokens-remaining"] == "0"
    assert 1 <= int(h2["retry-after"]) <= 60
    assert e2["error"]["type"] == "rate_limit_error"
    assert "50 tokens per minute" in e2["error"]["message"]


def test_a_new_tpm_window_has_room_again_and_is_counted_apart(stub):
    post(stub, {"tpm": {"limit": 40, "window_ms": 400, "headers": "anthropic"}}, path="/_control")
    spec = {"usage": "openai", "input_tokens": 30, "output_tokens": 10}
    assert post(stub, {"stub": spec})[0] == 200
    s, h, _ = post(stub, {"stub": spec})
    assert s == 429 and "anthropic-ratelimit-tokens-remaining" in h
    wait_until(lambda: post(stub, {"stub": spec})[0] == 200, timeout=5,
               what="the next window to admit a call")
    windows = get(stub, "/_tokens")["windows"]
    served = [w for w in windows if w["calls"]]
    assert len(served) == 2 and all(w["input"] == 30 and w["output"] == 10 for w in served)
    assert served[0]["rejected"] >= 1
    # "tpm": null turns it off, and the default answer is untouched by it
    post(stub, {"tpm": None}, path="/_control")
    assert all(post(stub, {"stub": spec})[0] == 200 for _ in range(3))
    assert post(stub, {"messages": [{"content": "x"}]})[2]["choices"][0]["message"][
        "content"] == "echo: x"


def read_stream(srv, body):
    c = conn(srv)
    c.request("POST", "/v1/chat/completions", json.dumps(body).encode(),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/event-stream"
    text = r.read().decode()
    c.close()
    return text


def test_an_openai_stream_sends_text_chunks_then_usage_then_done(stub):
    text = read_stream(stub, {"model": "gpt-4o", "stub": {
        "sse": "openai", "input_tokens": 9, "output_tokens": 6, "chunks": 3}})
    evs = events_of(text)
    assert evs[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in evs[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(p for p in pieces if p) == "w0 w1 w2 w3 w4 w5"
    assert sum(1 for p in pieces if p) == 3
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 6,
                                   "total_tokens": 15}
    # without include_usage, no usage chunk
    text = read_stream(stub, {"stream_options": {"include_usage": False}, "stub": {
        "sse": "openai", "input_tokens": 9, "output_tokens": 6}})
    assert all("usage" not in json.loads(d) for _, d in events_of(text)[:-1])
    assert get(stub, "/_tokens")["total"] == {"input": 18, "output": 12, "calls": 2,
                                              "rejected": 0}


def test_an_anthropic_stream_has_input_at_the_start_and_output_at_the_end(stub):
    text = read_stream(stub, {"stub": {"sse": "anthropic", "input_tokens": 25,
                                       "output_tokens": 4, "chunks": 2}})
    evs = events_of(text)
    names = [n for n, _ in evs]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta",
                     "message_stop"]
    data = [json.loads(d) for _, d in evs]
    assert data[0]["message"]["usage"]["input_tokens"] == 25
    assert "".join(d["delta"]["text"] for d in data[3:5]) == "w0 w1 w2 w3"
    assert data[6]["usage"] == {"output_tokens": 4}
    text = read_stream(stub, {"stub": {"sse": "responses", "input_tokens": 2,
                                       "output_tokens": 2}})
    last = json.loads(events_of(text)[-1][1])
    assert last["type"] == "response.completed"
    assert last["response"]["usage"]["output_tokens"] == 2


def test_a_stream_is_paced_and_its_record_says_when_it_ended(stub):
    t0 = time.monotonic()
    read_stream(stub, {"stub": {"sse": "openai", "output_tokens": 3, "chunks": 3,
                                "chunk_ms": 50, "key": "paced"}})
    took = time.monotonic() - t0
    # The stub records the end just after its last write, which the client
    # may have read first.
    rec = wait_until(lambda: [r for r in get(stub, "/_streams")["streams"]
                              if r["ended"] is not None], timeout=5,
                     what="the stub to record the end")[0]
    assert rec["key"] == "paced" and rec["shape"] == "openai"
    assert rec["events_sent"] == rec["events_total"] == 7  # role, 3 texts, stop, usage, DONE
    assert not rec["closed_by_client"]
    assert 0.3 <= rec["ended"] - rec["started"] <= time.monotonic() - t0


def test_a_client_closing_a_stream_is_noticed_at_once(stub):
    sock = socket.create_connection(("127.0.0.1", stub.server_address[1]))
    body = json.dumps({"stub": {"sse": "anthropic", "output_tokens": 50, "chunks": 50,
                                "chunk_ms": 500, "key": "cancel-me"}}).encode()
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = b""
    while b"message_start" not in got:
        got += sock.recv(4096)
    closed_at = time.monotonic()
    sock.close()
    rec = wait_until(lambda: [r for r in get(stub, "/_streams")["streams"]
                              if r["ended"] is not None], timeout=5,
                     what="the stub to notice the close")[0]
    assert rec["key"] == "cancel-me"
    assert rec["closed_by_client"]
    assert rec["events_sent"] < rec["events_total"]
    # noticed while pacing (500 ms apart), not at the next write
    assert rec["ended"] - closed_at < 0.1
    assert rec["ended_wall"] >= rec["started_wall"]


def test_a_stream_cut_after_some_events_ends_its_body_mid_event(stub):
    text = read_stream(stub, {"stub": {"sse": "openai", "output_tokens": 4,
                                       "cut_after_events": 2}})
    assert text.count("\n\n") == 2
    tail = text.split("\n\n")[2]
    assert tail.startswith("data: {") and not tail.endswith("\n")
    rec = get(stub, "/_streams")["streams"][0]
    assert rec["events_sent"] == 2 and not rec["closed_by_client"]


def test_an_unknown_shape_or_bad_tpm_is_refused(stub):
    assert post(stub, {"stub": {"usage": "gemini"}})[0] == 400
    assert post(stub, {"tpm": {"limit": 0}}, path="/_control")[0] == 400
    assert post(stub, {"tpm": {"window_ms": 5}}, path="/_control")[0] == 400
