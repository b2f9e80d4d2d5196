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
POST /_reset clears counts.

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

Run alone: aistub.py [--port N] [--port-file FILE]
"""
import argparse
import hashlib
import html
import json
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
                                     "inflight": stub.inflight})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        stub = self.server.stub
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) if length else b""
        if self.path == "/_control":
            with stub.lock:
                stub.default = json.loads(raw or b"{}").get("default", {})
            return self.send_json(200, {"ok": True})
        if self.path == "/_reset":
            with stub.lock:
                stub.requests, stub.auth, stub.bodies, stub.keys = 0, [], [], {}
                stub.max_inflight, stub.times = 0, []
            return self.send_json(200, {"ok": True})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        spec = body.get("stub") if isinstance(body, dict) else None
        with stub.lock:
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
