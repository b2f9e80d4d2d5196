#!/usr/bin/env python3
"""Control of a call in flight, two figures (bench/README.md):
1. cancel (docs/worker.md, "Cancel"): the time from a corral_cancel of a
   running job to the moment the AI service sees its connection closed, over
   N cancels of streamed calls in flight. The stand-in (tests/aistub.py)
   paces an event stream and records, on its own monotonic clock, when it
   notices the client closed; the cancel's start is read on the same host's
   monotonic clock just before the FCALL. Goal: p99 <= 100 ms. Reference:
   the FCALL's own round trip (a cancel of a queued job).
2. streamed answers (docs/protocol.md, "Streamed answers"): the time from
   the stand-in sending an event with a piece of text to a follower's
   XREAD BLOCK returning that piece, over JOBS x PIECES pieces. The
   stand-in runs as its own process (no shared interpreter lock with the
   follower) and records when it sent each event; the follower reads the
   host's monotonic clock as XREAD returns. This includes the loopback
   delivery to the worker, so it bounds "after the worker got it" from
   above. Goal: p99 <= 2 ms. Reference: XADD by one client to XREAD BLOCK
   of another on the same Redis.
usage: bench_control.py BUILD_DIR [N]   (sh bench/run.sh control)"""
import json
import os
import threading
import urllib.request
import shutil
import subprocess
import sys
import tempfile
import time

import redis

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))
import aistub  # noqa: E402

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
Q = "bench"
SQ = "streamed"
STREAM_JOBS, PIECES, PIECE_MS = 20, 100, 10
tmp = tempfile.mkdtemp(prefix="corral-bench-control-")
sock = os.path.join(tmp, "redis.sock")
procs = []


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit(f"bench_control: timed out waiting for {what}")
        time.sleep(0.0005)


def stream_of(stub, key):
    with stub.stub.lock:
        return next((dict(s) for s in stub.stub.streams if s["key"] == key), None)


def main():
    procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir",
                                   tmp, "--save", "", "--appendonly", "no", "--loglevel",
                                   "warning", "--logfile", os.path.join(tmp, "redis.log")]))
    r = redis.Redis(unix_socket_path=sock, decode_responses=True)
    def up():
        try:
            return r.ping()
        except redis.ConnectionError:
            return False
    wait_for(up, what="redis-server")
    stub = aistub.Server().start()
    key = os.path.join(tmp, "key")
    with open(key, "w") as f:
        f.write("sk-bench\n")
    port_file = os.path.join(tmp, "stub.port")
    procs.append(subprocess.Popen([sys.executable, os.path.join(here, "..", "tests", "aistub.py"),
                                   "--port-file", port_file], stderr=subprocess.DEVNULL))
    wait_for(lambda: os.path.exists(port_file), what="the stand-in process")
    stub2 = f"http://127.0.0.1:{open(port_file).read()}"
    conf = os.path.join(tmp, "c.conf")
    with open(conf, "w") as f:
        f.write(f"[redis]\nurl = unix://{sock}\n[pool]\nconcurrency = 4\n"
                f"[queue {Q}]\nhandler = http\nservice = ai\ntimeout = 60s\n"
                f"[queue {SQ}]\nhandler = http\nservice = ai2\ntimeout = 60s\n"
                f"[service ai]\nurl = {stub.url}\napi_key_file = {key}\n"
                f"[service ai2]\nurl = {stub2}/v1/chat/completions\napi_key_file = {key}\n")
    log = open(os.path.join(tmp, "worker.log"), "w")
    procs.append(subprocess.Popen([os.path.join(build, "corral-worker"), "-c", conf,
                                   "--queue", Q, "--queue", SQ], stderr=log))
    wait_for(lambda: r.exists(f"corral:{{{Q}}}:conf"), what="the worker to declare its queue")
    took, ref = [], []
    for i in range(N):
        k = f"c{i}"
        jid = r.fcall("corral_enqueue", 1, Q, json.dumps(
            {"model": "m", "stub": {"sse": "openai", "chunks": 2000, "chunk_ms": 20, "key": k}}))
        wait_for(lambda: (stream_of(stub, k) or {}).get("events_sent"), what="the stream")
        t0 = time.monotonic()
        assert r.fcall("corral_cancel", 1, Q, jid) == "cancelled"
        s = wait_for(lambda: (stream_of(stub, k) or {}).get("ended") and stream_of(stub, k),
                     what="the worker to close the call")
        assert s["closed_by_client"], s
        took.append((s["ended"] - t0) * 1000)
        # Reference: the cancel call alone, of a queued job.
        qid = r.fcall("corral_enqueue", 1, "ref", "{}") if r.exists("corral:{ref}:conf") else \
            (r.fcall("corral_declare", 1, "ref", "{}"), r.fcall("corral_enqueue", 1, "ref", "{}"))[1]
        t1 = time.monotonic()
        r.fcall("corral_cancel", 1, "ref", qid)
        ref.append((time.monotonic() - t1) * 1000)
    print(f"cancel -> connection closed at the AI service, {N} running calls:")
    print(f"  p50 {pct(took, 50):.2f} ms  p99 {pct(took, 99):.2f} ms  max {max(took):.2f} ms"
          f"  (goal: p99 <= 100 ms)")
    print(f"  reference: corral_cancel of a queued job, round trip p50 {pct(ref, 50):.2f} ms"
          f"  p99 {pct(ref, 99):.2f} ms")
    stub.stop()
    lat, ref2 = stream_figures(r, stub2)
    print(f"stand-in sends a piece -> a follower's XREAD BLOCK returns it, "
          f"{len(lat)} pieces of {STREAM_JOBS} streamed answers:")
    print(f"  p50 {pct(lat, 50):.3f} ms  p99 {pct(lat, 99):.3f} ms  max {max(lat):.3f} ms"
          f"  (goal: p99 <= 2 ms)")
    print(f"  reference: XADD -> XREAD BLOCK of another client, p50 {pct(ref2, 50):.3f} ms"
          f"  p99 {pct(ref2, 99):.3f} ms")
    return 0 if pct(took, 99) <= 100 and pct(lat, 99) <= 2 else 1


def stream_figures(r, stub_base):
    """Figure 2 -> (latencies, reference latencies), in ms."""
    lat = []
    for n in range(STREAM_JOBS):
        k = f"s{n}"
        jid = r.fcall("corral_enqueue", 1, SQ, json.dumps(
            {"max_tokens": PIECES, "stub": {"sse": "openai", "chunks": PIECES,
                                            "chunk_ms": PIECE_MS, "key": k}}))
        sk, last, read_at = f"corral:{{{SQ}}}:stream:{jid}", "0", {}
        f = redis.Redis(unix_socket_path=sock, decode_responses=True)
        done = False
        while not done:
            for _, entries in f.xread({sk: last}, block=5000) or []:
                now = time.monotonic()
                for eid, fields in entries:
                    last = eid
                    if "text" in fields:
                        read_at[int(fields["text"].strip()[1:])] = now
                    done = done or "end" in fields
        f.close()
        with urllib.request.urlopen(stub_base + "/_streams") as resp:
            rec = next(x for x in json.load(resp)["streams"] if x["key"] == k)
        # openai: event 0 is the role chunk, piece i is event i + 1
        for i, at in read_at.items():
            lat.append((at - rec["sent_at"][i + 1]) * 1000)
    # Reference: Redis's own XADD -> XREAD BLOCK between two clients.
    ref, got = [], []
    f = redis.Redis(unix_socket_path=sock, decode_responses=True)

    def reader():
        last = "$"
        while len(got) < 500:
            for _, entries in f.xread({"ref:s": last}, block=5000) or []:
                now = time.monotonic()
                for eid, fields in entries:
                    last = eid
                    got.append((float(fields["t"]), now))
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    for _ in range(500):
        r.xadd("ref:s", {"t": repr(time.monotonic())})
        time.sleep(PIECE_MS / 1000)
    t.join()
    ref = [(b - a) * 1000 for a, b in got]
    return lat, ref


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)
