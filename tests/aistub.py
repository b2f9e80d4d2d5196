#!/usr/bin/env python3
"""A stand-in for an AI service (OpenAI-style chat completions) on loopback,
for tests and benchmarks. It can be told to be slow, fail, hang, drop the
connection or answer 429, per request or globally, and it counts what it got.

Per request, a "stub" object in the JSON body says what to do:
  {"stub": {"delay_ms": 500, "status": 503, "body": "...", "size": 5000,
            "headers": {"x-ratelimit-reset-tokens": "6m0s"},
            "retry_after": "2", "hang": true, "drop": true,
            "fail_times": 2, "key": "job-1"}}
status/body/headers/retry_after: the failure answer (retry_after is the
Retry-After header; size makes the answer, good or bad, that many bytes).
hang: never answer. drop: close the connection without an answer.
fail_times: the first N requests carrying the same "key" fail as told;
later ones succeed. Globally: POST /_control with {"default": {...}}
applies to requests without a stub ({} resets). GET /_stats returns the
counts, the peak of concurrent requests, and for each request whether an
Authorization header came and its SHA-256 (the key itself is never shown).
POST /_reset clears counts. A request whose JSON body has a top-level
"tenant" string is counted per tenant: /_stats has "tenants", for each its
calls, requests in flight now and their peak, and "tenant_starts", the
tenant and arrival (time.monotonic()) of each request, in order.

Malformed answers (for the bad-input tests), status 200 unless "status" says:
  "body_hex": "ff00..." the answer body as raw bytes (e.g. invalid UTF-8);
  "content_length": N   the Content-Length header says N, whatever is sent;
  "cut_after": N, "cut": "stall" | "reset" | "close"   send the headers and
      N bytes of the body, then hold the connection open until the client
      gives up (stall), reset it (RST), or close it;
  "endless": true       a chunked body that never ends ("chunk_ms" apart);
  "raw_hex": "..."      these bytes instead of an HTTP answer, then close.

A service that echoes credentials (tests/integration/test_secrets.py):
  "echo_secrets": FORM  the answer (the failure answer when "status" is
      given, else the completion) quotes the request's Authorization header
      and every header whose name looks like a credential (auth, cookie,
      key, token, secret, passw, session, signature), in its body and in
      X-Echo-<name> response headers (and, for a 3xx, in a Location URL).
      FORM: "raw"; "json_slash" (JSON with "/" written "\\/"); "url"
      (percent-encoded); "lower" (lower-cased); "html" (HTML entities).
  "echo_pad": N        N bytes of padding before the echo in the body (to
      put a credential across a cut made by the client).
  "echo_type": "..."   the error's "type" (e.g. "insufficient_quota").
AI answers with usage, token rate limits and streams (docs/tokens.md):
  "usage": SHAPE       answer as SHAPE: "openai" (a chat completion),
      "responses" (OpenAI Responses) or "anthropic" (a Messages answer),
      with its model and usage. Tokens: "input_tokens" (default: the request
      body's bytes / 4, rounded up) and "output_tokens" (default: the
      payload's max_tokens, max_completion_tokens or max_output_tokens, else
      16); the answer's text is that many words. "model": the model the
      answer names (default: the payload's, else "stub-model").
  The failure modes above come first: with "status" and "fail_times", the
  first N requests of a key fail as told and later ones answer with usage.
  "usage_body": V      the answer's usage object is V instead (any JSON:
      negative, strings, huge; null leaves usage out); the stub still
      counts the tokens it served.
  POST /_control {"tpm": {"limit": N, "window_ms": 60000, "headers":
      "openai" | "anthropic", "retry_after": true | false}} enforces N tokens
      per fixed window (counted from that call) on usage and stream answers
      ({"tpm": null} turns it off; "default" is left as it was unless given).
      Each such answer carries the window in rate-limit headers (OpenAI:
      x-ratelimit-limit/remaining/reset-tokens with Go durations; Anthropic:
      anthropic-ratelimit-tokens-limit/remaining/reset with an RFC 3339
      time; "headers" defaults to the answer's shape). A request whose input
      plus output tokens do not fit what is left gets a token-type 429
      instead (OpenAI: error type "tokens", "... on tokens per min (TPM) ...";
      Anthropic: rate_limit_error, tokens remaining 0), with Retry-After
      when retry_after (default: true for anthropic, false for openai), and
      its tokens are not counted.
  GET /_tokens         the stub's own exact count: {"total": {"input",
      "output", "calls", "rejected"}, "windows": [{"index", "input",
      "output", "calls", "rejected"}], "calls": [{"key", "input", "output",
      "window", "status", "at"}]} ("key" is the stub key, else ""). A call
      whose client closed its connection before the answer (a killed
      worker) is not served: status "gone", counted nowhere.
  "sse": SHAPE         answer as a text/event-stream of SHAPE ("openai",
      "responses", "anthropic"), chunked: the start, "chunks" text events
      (default 5), the usage (OpenAI: a chunk with usage unless the payload's
      stream_options.include_usage is false; Anthropic: message_start and
      message_delta; Responses: response.completed) and the end ([DONE],
      message_stop), "chunk_ms" apart (default 0).
  "cut_after_events": K  send K events, then half of the next one, and end
      the body there: the HTTP answer is complete, its event stream is cut
      mid-event.
  GET /_streams        every stream: {"key", "shape", "started", "ended"
      (time.monotonic() seconds, comparable across processes on one host),
      "started_wall", "ended_wall", "events_sent", "events_total",
      "closed_by_client", "sent_at" (when each event was sent, time.monotonic())}. While pacing, the stub waits on the socket, so a
      client that closes is noticed at once and its "ended" is that moment.

Run alone: aistub.py [--port N] [--port-file FILE]
"""
import argparse
import hashlib
import html
import datetime
import json
import math
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stub:
    def __init__(self):
        self.lock = threading.Lock()
        self.default = {}
        self.requests = 0
        self.auth = []
        self.bodies = []
        self.keys = {}
        self.inflight = 0
        self.max_inflight = 0
        self.times = []  # arrival of each request, time.monotonic()
        self.tenants = {}  # tenant -> {"calls", "inflight", "peak"}
        self.tenant_starts = []  # [tenant, arrival]
        self.tpm = None  # {"limit", "window_ms", "headers", "retry_after", "start"}
        self.token_windows = {}  # window index -> {"input", "output", "calls", "rejected"}
        self.token_calls = []
        self.streams = []

    def window(self, now):
        """The TPM window of time.monotonic() now: (index, its counts, ms left)."""
        t = self.tpm
        elapsed_ms = (now - t["start"]) * 1000
        index = int(elapsed_ms // t["window_ms"])
        left_ms = t["window_ms"] - (elapsed_ms - index * t["window_ms"])
        counts = self.token_windows.setdefault(
            index, {"index": index, "input": 0, "output": 0, "calls": 0, "rejected": 0})
        return index, counts, left_ms

    def admit(self, key, input_tokens, output_tokens):
        """Counts a call's tokens, or refuses it when the TPM window has no
        room. Returns (admitted, window state for the headers)."""
        now = time.monotonic()
        with self.lock:
            if self.tpm is None:
                self.token_calls.append({"key": key, "input": input_tokens,
                                         "output": output_tokens, "window": None,
                                         "status": 200, "at": now})
                return True, None
            index, counts, left_ms = self.window(now)
            used = counts["input"] + counts["output"]
            want = input_tokens + output_tokens
            ok = used + want <= self.tpm["limit"]
            if ok:
                counts["input"] += input_tokens
                counts["output"] += output_tokens
                counts["calls"] += 1
                used += want
            else:
                counts["rejected"] += 1
            self.token_calls.append({"key": key, "input": input_tokens if ok else 0,
                                     "output": output_tokens if ok else 0, "window": index,
                                     "status": 200 if ok else 429, "at": now})
            return ok, {"limit": self.tpm["limit"], "remaining": max(0, self.tpm["limit"] - used),
                        "reset_ms": left_ms, "used": used, "requested": want,
                        "headers": self.tpm["headers"], "retry_after": self.tpm["retry_after"]}

    def token_report(self):
        with self.lock:
            windows = [dict(w) for _, w in sorted(self.token_windows.items())]
            calls = [dict(c) for c in self.token_calls]
        total = {"input": 0, "output": 0, "calls": 0, "rejected": 0}
        for c in calls:
            if c["status"] == 200:
                total["input"] += c["input"]
                total["output"] += c["output"]
                total["calls"] += 1
            elif c["status"] == 429:
                total["rejected"] += 1
        return {"total": total, "windows": windows, "calls": calls}


CREDENTIAL_WORDS = ("auth", "cookie", "key", "token", "secret", "passw", "session", "signature")


def credentials(headers):
    """The request's headers whose names look like credentials, in order."""
    return [(k, v) for k, v in headers.items()
            if any(w in k.lower() for w in CREDENTIAL_WORDS)]


def encode_echo(value, form):
    if form == "url":
        return urllib.parse.quote(value, safe="")
    if form == "lower":
        return value.lower()
    if form == "html":
        return "".join(f"&#{ord(c)};" if c in "/+=-" else html.escape(c) for c in value)
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, obj, headers=None):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        stub = self.server.stub
        if self.path == "/_stats":
            with stub.lock:
                self.send_json(200, {"requests": stub.requests,
                                     "auth_present": [a is not None for a in stub.auth],
                                     "auth_sha256": [hashlib.sha256(a.encode()).hexdigest()
                                                     if a is not None else None
                                                     for a in stub.auth],
                                     "bodies": stub.bodies[-100:],
                                     "max_inflight": stub.max_inflight,
                                     "inflight": stub.inflight,
                                     "tenants": stub.tenants,
                                     "tenant_starts": stub.tenant_starts})
        elif self.path == "/_tokens":
            self.send_json(200, stub.token_report())
        elif self.path == "/_streams":
            with stub.lock:
                self.send_json(200, {"streams": [dict(r) for r in stub.streams]})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        stub = self.server.stub
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) if length else b""
        self.request_len = len(raw)
        if self.path == "/_control":
            ctl = json.loads(raw or b"{}")
            try:
                tpm = tpm_settings(ctl["tpm"]) if "tpm" in ctl else None
            except (KeyError, TypeError, ValueError) as e:
                return self.send_json(400, {"error": f"tpm: {e}"})
            with stub.lock:
                if "tpm" in ctl:
                    stub.tpm = tpm
                    stub.token_windows = {}
                if "default" in ctl or "tpm" not in ctl:
                    stub.default = ctl.get("default", {})
            return self.send_json(200, {"ok": True})
        if self.path == "/_reset":
            with stub.lock:
                stub.requests, stub.auth, stub.bodies, stub.keys = 0, [], [], {}
                stub.max_inflight, stub.times = 0, []
                stub.tenants, stub.tenant_starts = {}, []
                stub.token_windows, stub.token_calls, stub.streams = {}, [], []
                if stub.tpm is not None:
                    stub.tpm["start"] = time.monotonic()
            return self.send_json(200, {"ok": True})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        spec = body.get("stub") if isinstance(body, dict) else None
        tenant = body.get("tenant") if isinstance(body, dict) else None
        tenant = tenant if isinstance(tenant, str) else None
        with stub.lock:
            if tenant is not None:
                t = stub.tenants.setdefault(tenant, {"calls": 0, "inflight": 0, "peak": 0})
                t["calls"] += 1
                t["inflight"] += 1
                t["peak"] = max(t["peak"], t["inflight"])
                stub.tenant_starts.append([tenant, time.monotonic()])
            stub.requests += 1
            stub.times.append(time.monotonic())
            stub.auth.append(self.headers.get("Authorization"))
            stub.bodies.append(raw.decode("utf-8", "replace")[:200])
            stub.inflight += 1
            stub.max_inflight = max(stub.max_inflight, stub.inflight)
            if spec is None:
                spec = dict(stub.default)
            fail = True
            if "fail_times" in spec:
                key = spec.get("key", "")
                seen = stub.keys.get(key, 0)
                stub.keys[key] = seen + 1
                fail = seen < spec["fail_times"]
        try:
            self.answer(spec, body, fail)
        finally:
            with stub.lock:
                stub.inflight -= 1
                if tenant is not None:
                    stub.tenants[tenant]["inflight"] -= 1

    def client_gone(self):
        """True when the client has closed its end (the request is read, so
        a readable socket with nothing to read is the client's EOF)."""
        ready, _, _ = select.select([self.connection], [], [], 0)
        if not ready:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def wait_for_close(self, limit_s=3600):
        """Holds the connection open until the client closes it."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.connection], [], [], 1.0)
            if ready:
                try:
                    if not self.connection.recv(4096):
                        break
                except OSError:
                    break
        self.close_connection = True

    def malformed(self, spec):
        """The malformed answers of the module docstring."""
        conn = self.connection
        if "raw_hex" in spec:
            conn.sendall(bytes.fromhex(spec["raw_hex"]))
            conn.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        status = spec.get("status", 200)
        if spec.get("endless"):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b'{"x": "' + b"y" * 1000 + b'"}'
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    time.sleep(spec.get("chunk_ms", 0) / 1000)
            except OSError:
                pass
            self.close_connection = True
            return
        data = bytes.fromhex(spec["body_hex"]) if "body_hex" in spec else b'{"choices": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(spec.get("content_length", len(data))))
        self.end_headers()
        cut = spec.get("cut_after")
        self.wfile.write(data if cut is None else data[:cut])
        self.wfile.flush()
        how = spec.get("cut")
        if how == "stall":
            self.wait_for_close()
        elif how == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            self.close_connection = True
        elif how == "close" or "content_length" in spec:
            conn.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def answer(self, spec, body, fail):
        if spec.get("delay_ms"):
            time.sleep(spec["delay_ms"] / 1000)
        if fail and any(k in spec for k in ("body_hex", "content_length", "cut_after",
                                            "endless", "raw_hex")):
            return self.malformed(spec)
        if fail and spec.get("hang"):
            time.sleep(3600)
            return
        if fail and spec.get("drop"):
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if spec.get("echo_secrets") and (fail or not spec.get("status")):
            return self.echo_secrets(spec, body, spec.get("status", 200) if fail else 200)
        if fail and spec.get("status"):
            payload = spec.get("body", {"error": {"message": "stub failure",
                                                  "code": spec["status"]}})
            if spec.get("size"):
                payload = "e" * spec["size"]
            if isinstance(payload, str):
                payload = payload.encode()
            headers = dict(spec.get("headers") or {})
            if "retry_after" in spec:
                headers["Retry-After"] = spec["retry_after"]
            return self.send_json(spec["status"], payload, headers)
        if spec.get("usage") or spec.get("sse"):
            return self.answer_with_usage(spec, body, raw_len=self.request_len)
        content = ""
        if isinstance(body, dict) and body.get("messages"):
            content = str(body["messages"][-1].get("content", ""))
        if spec.get("size"):
            content = "x" * spec["size"]
        self.send_json(200, {
            "id": "chatcmpl-stub", "object": "chat.completion", "model": body.get("model", "stub")
            if isinstance(body, dict) else "stub",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "echo: " + content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def answer_with_usage(self, spec, body, raw_len):
        """An answer with usage, under the TPM limit, whole or streamed
        (module docstring)."""
        stub = self.server.stub
        body = body if isinstance(body, dict) else {}
        shape = spec.get("sse") or spec.get("usage")
        if shape not in ("openai", "responses", "anthropic"):
            return self.send_json(400, {"error": {"message": f"stub: unknown shape {shape!r}"}})
        input_tokens = int(spec.get("input_tokens", (raw_len + 3) // 4))
        output_tokens = int(spec.get("output_tokens", output_cap(body) or 16))
        model = spec.get("model") or (body.get("model") if isinstance(body.get("model"), str)
                                      else None) or "stub-model"
        if self.client_gone():
            # The client went before its answer (killed): nothing served, as a
            # provider that stops when its client does; recorded, not counted.
            with stub.lock:
                stub.token_calls.append({"key": spec.get("key", ""), "input": 0, "output": 0,
                                         "window": None, "status": "gone",
                                         "at": time.monotonic()})
            self.close_connection = True
            return
        ok, win = stub.admit(spec.get("key", ""), input_tokens, output_tokens)
        if not ok:
            return self.token_429(shape, model, win)
        headers = ratelimit_headers(win, shape)
        words = [f"w{i}" for i in range(output_tokens)]
        if spec.get("sse"):
            opts = body.get("stream_options")
            include = not (isinstance(opts, dict) and opts.get("include_usage") is False)
            evs = sse_events(shape, model, split_text(words, int(spec.get("chunks", 5))),
                             input_tokens, output_tokens, include)
            return self.stream(spec, shape, evs, headers)
        text = " ".join(words)
        usage = ({"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens} if shape == "openai" else
                 {"input_tokens": input_tokens, "output_tokens": output_tokens})
        if shape == "openai":
            answer = {"id": "chatcmpl-stub", "object": "chat.completion", "model": model,
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": text}}]}
        elif shape == "responses":
            usage["total_tokens"] = input_tokens + output_tokens
            answer = {"id": "resp_stub", "object": "response", "model": model,
                      "status": "completed",
                      "output": [{"type": "message", "id": "msg_stub", "role": "assistant",
                                  "content": [{"type": "output_text", "text": text}]}]}
        else:
            answer = {"id": "msg_stub", "type": "message", "role": "assistant", "model": model,
                      "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
        if "usage_body" in spec:
            usage = spec["usage_body"]
        if usage is not None:
            answer["usage"] = usage
        self.send_json(200, answer, headers)

    def token_429(self, shape, model, win):
        """A token-type 429 for a request the TPM window has no room for."""
        style = win["headers"] or ("anthropic" if shape == "anthropic" else "openai")
        wait_ms = win["reset_ms"]
        if style == "anthropic":
            headers = {"anthropic-ratelimit-tokens-limit": win["limit"],
                       "anthropic-ratelimit-tokens-remaining": 0,
                       "anthropic-ratelimit-tokens-reset": rfc3339_in(wait_ms)}
            payload = {"type": "error", "error": {
                "type": "rate_limit_error",
                "message": f"This request would exceed the rate limit for your organization "
                           f"of {win['limit']} tokens per minute."}}
            retry_after = win["retry_after"] is not False
        else:
            headers = ratelimit_headers(win, shape)
            payload = {"error": {
                "message": f"Rate limit reached for {model} in organization org-stub on tokens "
                           f"per min (TPM): Limit {win['limit']}, Used {win['used']}, "
                           f"Requested {win['requested']}. Please try again in "
                           f"{go_duration(wait_ms)}.",
                "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}
            retry_after = bool(win["retry_after"])
        if retry_after:
            headers["retry-after"] = max(1, int(math.ceil(wait_ms / 1000)))
        self.send_json(429, payload, headers)

    def stream(self, spec, shape, events, headers):
        """events as a chunked text/event-stream, "chunk_ms" apart, noticing
        a client that closes while the stub waits (module docstring)."""
        stub = self.server.stub
        rec = {"key": spec.get("key", ""), "shape": shape, "started": time.monotonic(),
               "started_wall": time.time(), "ended": None, "ended_wall": None,
               "events_sent": 0, "events_total": len(events), "closed_by_client": False,
               "sent_at": []}
        with stub.lock:
            stub.streams.append(rec)
        pace = spec.get("chunk_ms", 0) / 1000
        cut = spec.get("cut_after_events")
        conn = self.connection

        def ended(closed):
            with stub.lock:
                rec["ended"], rec["ended_wall"] = time.monotonic(), time.time()
                rec["closed_by_client"] = closed
            self.close_connection = True

        def send(data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            for i, (name, data) in enumerate(events):
                if i > 0 and pace > 0:
                    # Wait on the socket: readable now means the client closed.
                    ready, _, _ = select.select([conn], [], [], pace)
                    if ready:
                        try:
                            gone = not conn.recv(1, socket.MSG_PEEK)
                        except OSError:
                            gone = True
                        if gone:
                            return ended(True)
                chunk = sse_bytes(name, data)
                if cut is not None and i == cut:
                    # Half an event, then a clean end of the HTTP body: the
                    # transfer is complete, the event stream is not.
                    send(chunk[:len(chunk) // 2])
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return ended(False)
                send(chunk)
                with stub.lock:
                    rec["events_sent"] += 1
                    rec["sent_at"].append(time.monotonic())
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            ended(False)
        except OSError:
            ended(True)

    def echo_secrets(self, spec, body, status):
        """An answer quoting the request's credentials (module docstring)."""
        form = spec["echo_secrets"]
        creds = credentials(self.headers)
        echo = {k: encode_echo(v, form) for k, v in creds}
        pad = "p" * spec.get("echo_pad", 0)
        if status == 200:
            obj = {"id": "chatcmpl-stub", "object": "chat.completion",
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant",
                                            "content": pad + "you sent " + json.dumps(echo)}}]}
        else:
            auth = echo.get("Authorization", "")
            obj = {"error": {"message": f"{pad}Incorrect API key provided: {auth}",
                             "echo": echo, "code": status}}
            if "echo_type" in spec:
                obj["error"]["type"] = spec["echo_type"]
        text = json.dumps(obj, ensure_ascii=False)
        if form == "json_slash":
            text = text.replace("/", "\\/")
        headers = dict(spec.get("headers") or {})
        for k, v in creds:
            headers["X-Echo-" + k] = v
        if 300 <= status < 400:
            headers["Location"] = "https://login.example/retry?" + urllib.parse.urlencode(
                {k: v for k, v in creds})
        if "retry_after" in spec:
            headers["Retry-After"] = spec["retry_after"]
        return self.send_json(status, text.encode(), headers)


def tpm_settings(t):
    """POST /_control's "tpm" object, checked, with the window started now."""
    if t is None:
        return None
    limit, window_ms = int(t["limit"]), int(t.get("window_ms", 60000))
    if limit < 1 or window_ms < 1:
        raise ValueError("tpm: limit and window_ms must be positive")
    headers = t.get("headers")
    return {"limit": limit, "window_ms": window_ms, "headers": headers,
            "retry_after": t.get("retry_after"), "start": time.monotonic()}


def go_duration(ms):
    """Milliseconds as OpenAI writes a reset: "20ms", "1.5s", "6m0s"."""
    ms = max(0, int(math.ceil(ms)))
    if ms < 1000:
        return f"{ms}ms"
    m, rest = divmod(ms, 60000)
    sec = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{m}m{sec}s" if m else f"{sec}s"


def rfc3339_in(ms):
    """The wall-clock time ms from now, as Anthropic writes a reset."""
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(milliseconds=ms)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def ratelimit_headers(win, shape):
    """Token rate-limit headers for a TPM window state (Stub.admit)."""
    if win is None:
        return {}
    style = win["headers"] or ("anthropic" if shape == "anthropic" else "openai")
    if style == "anthropic":
        return {"anthropic-ratelimit-tokens-limit": win["limit"],
                "anthropic-ratelimit-tokens-remaining": win["remaining"],
                "anthropic-ratelimit-tokens-reset": rfc3339_in(win["reset_ms"])}
    return {"x-ratelimit-limit-tokens": win["limit"],
            "x-ratelimit-remaining-tokens": win["remaining"],
            "x-ratelimit-reset-tokens": go_duration(win["reset_ms"])}


def output_cap(body):
    for k in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        v = body.get(k) if isinstance(body, dict) else None
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def split_text(words, n):
    """words as n pieces of nearly equal word counts (fewer when short)."""
    n = max(1, min(n, len(words))) if words else 0
    out, start = [], 0
    for i in range(n):
        end = start + (len(words) - start) // (n - i)
        out.append(" ".join(words[start:end]) + (" " if end < len(words) else ""))
        start = end
    return out


def sse_events(shape, model, text_pieces, input_tokens, output_tokens, include_usage):
    """The (event name or None, data) pairs of a streamed answer in shape."""
    text = "".join(text_pieces)
    if shape == "anthropic":
        evs = [("message_start", {"type": "message_start", "message": {
            "id": "msg_stub", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"})]
        evs += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": p}})
                for p in text_pieces]
        evs += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": output_tokens}}),
                ("message_stop", {"type": "message_stop"})]
        return evs
    if shape == "responses":
        evs = [("response.created", {"type": "response.created", "response": {
            "id": "resp_stub", "model": model, "status": "in_progress", "usage": None}})]
        evs += [("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": "msg_stub", "output_index": 0,
            "content_index": 0, "delta": p}) for p in text_pieces]
        evs += [("response.output_text.done", {"type": "response.output_text.done",
                                               "item_id": "msg_stub", "text": text}),
                ("response.completed", {"type": "response.completed", "response": {
                    "id": "resp_stub", "model": model, "status": "completed",
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                              "total_tokens": input_tokens + output_tokens}}})]
        return evs
    head = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": model}
    evs = [(None, dict(head, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None}]))]
    evs += [(None, dict(head, choices=[{"index": 0, "delta": {"content": p},
                                        "finish_reason": None}])) for p in text_pieces]
    evs += [(None, dict(head, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))]
    if include_usage:
        evs += [(None, dict(head, choices=[], usage={
            "prompt_tokens": input_tokens, "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}))]
    evs += [(None, "[DONE]")]
    return evs


def sse_bytes(name, data):
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {name}\n" if name else "").encode() + b"data: " + text.encode() + b"\n\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), Handler)
        self.stub = Stub()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1/chat/completions"

    def start(self):
        t = threading.Thread(target=self.serve_forever, daemon=True)
        t.start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    args = ap.parse_args()
    srv = Server(args.port)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(srv.server_address[1]))
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"aistub listening on {srv.url}", file=sys.stderr, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
