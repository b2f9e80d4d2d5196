#!/usr/bin/env python3
"""The full cycle over TLS beside plain TCP, in the same run (issue 18,
docs/benchmarks.md "TLS"): one redis-server with a plain TCP port and a TLS
port (certificates made here with openssl), one corrald with one echo
worker of 4 slots, first over redis://127.0.0.1:PORT, then over
rediss://localhost:TLSPORT through corrald's supervised stunnel4
(docs/ha.md), alternated, each BENCH_TLS_RUNS times (default 3; the best
drain kept, as run.sh keeps the best reference, and the median beside it).

  drain     N echo jobs enqueued while the queue is paused; resumed, timed
            from the first finished job to the last (rows 1 of the peers'
            table are measured the same way)
  latency   the worker idle, 500 jobs enqueued one at a time 10 ms apart:
            started_ms - created_ms, both from Redis's clock

The enqueuer uses a unix socket in both modes: only the worker's side
changes. usage: bench_tls.py BUILD_DIR"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from conftest import load_library  # noqa: E402
from hafixtures import Pki, _tls_server_args  # noqa: E402

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
JOBS = int(os.environ.get("BENCH_TLS_JOBS", 20000))
RUNS = int(os.environ.get("BENCH_TLS_RUNS", 3))
LAT_JOBS = 500
Q = "bench"
for prog in ("stunnel4", "openssl", "redis-server"):
    if shutil.which(prog) is None:
        sys.exit(f"bench_tls: {prog} not found (make deps installs it)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


tmp = tempfile.mkdtemp(prefix="corral-bench-tls-")
pki = Pki(os.path.join(tmp, "pki"))
sock = os.path.join(tmp, "redis.sock")
port, tls_port = free_port(), free_port()
rs = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                       "--tls-port", str(tls_port), "--unixsocket", sock, "--dir", tmp,
                       "--save", "", "--appendonly", "no", "--loglevel", "warning",
                       "--logfile", os.path.join(tmp, "redis.log")] + _tls_server_args(pki))
r = redis.Redis(unix_socket_path=sock, decode_responses=True)
for _ in range(200):
    try:
        r.ping()
        break
    except (redis.ConnectionError, FileNotFoundError):
        time.sleep(0.05)
host = socket.gethostname()
crt, key = pki.paths("client")
URLS = {
    "tcp": f"url = redis://127.0.0.1:{port}/0\n",
    "tls": (f"url = rediss://localhost:{tls_port}/0\ntls_ca_file = {pki.ca}\n"
            f"tls_cert_file = {crt}\ntls_key_file = {key}\n"),
}


def start_corrald(mode):
    conf = os.path.join(tmp, f"{mode}.conf")
    with open(conf, "w") as f:
        f.write(f"[redis]\n{URLS[mode]}[pool]\nmin = 1\nmax = 1\nconcurrency = 4\n"
                f"[scale]\ntick = 1s\n[queue {Q}]\nhandler = echo\n")
    env = dict(os.environ, CORRAL_TLS_DIR=os.path.join(tmp, f"tls-{mode}"),
               CORRAL_WORKER=os.path.join(build, "corral-worker"), CORRAL_LOG_LEVEL="warn")
    log = open(os.path.join(tmp, f"corrald-{mode}.log"), "a")
    d = subprocess.Popen([os.path.join(build, "corrald"), "-c", conf], stderr=log, env=env)
    deadline = time.monotonic() + 30
    while r.hget(f"corral:host:{host}", "workers") != "1":
        if time.monotonic() > deadline or d.poll() is not None:
            raise SystemExit(f"bench_tls: corrald ({mode}) did not start its worker; "
                             f"see {log.name}")
        time.sleep(0.05)
    time.sleep(0.5)  # the worker's first reserve is waiting
    return d, log


def stop(d, log):
    d.terminate()
    d.wait(timeout=60)
    log.close()
    r.delete(f"corral:host:{host}")


def stats():
    return json.loads(r.fcall_ro("corral_stats", 1, Q))


def drain(mode):
    r.flushall()
    load_library(r)
    r.fcall("corral_declare", 1, Q, "{}")
    r.fcall("corral_pause", 1, Q)
    for k in range(0, JOBS, 1000):
        r.fcall("corral_enqueue_many", 1, Q, "", *(["{}"] * min(1000, JOBS - k)))
    d, log = start_corrald(mode)
    try:
        r.fcall("corral_resume", 1, Q)
        first = None
        while True:
            st = stats()
            left = st["depth"] + st["inflight"]
            now = time.monotonic()
            if first is None and left < JOBS:
                first, first_left = now, left
            if left == 0:
                break
            time.sleep(0.005)
        return (first_left - 0) / (now - first) if now > first else float("nan")
    finally:
        stop(d, log)


def latency(mode):
    r.flushall()
    load_library(r)
    r.fcall("corral_declare", 1, Q, "{}")
    d, log = start_corrald(mode)
    try:
        ids = []
        for _ in range(LAT_JOBS):
            ids.append(r.fcall("corral_enqueue", 1, Q, "{}"))
            time.sleep(0.01)
        while stats()["depth"] + stats()["inflight"] > 0:
            time.sleep(0.01)
        lat = []
        for jid in ids:
            j = json.loads(r.fcall_ro("corral_job", 1, Q, jid))
            lat.append(j["started_ms"] - j["created_ms"])
        lat.sort()
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], statistics.mean(lat)
    finally:
        stop(d, log)


try:
    rates = {"tcp": [], "tls": []}
    lats = {"tcp": [], "tls": []}
    for _ in range(RUNS):
        for mode in ("tcp", "tls"):
            rates[mode].append(drain(mode))
            lats[mode].append(latency(mode))
    print(f"TLS (stunnel4, through corrald's proxy) beside plain TCP, same run, "
          f"{RUNS} runs each, alternated; 1 worker x 4 slots, echo jobs")
    for mode, name in (("tcp", "plain TCP"), ("tls", "TLS via stunnel4")):
        p50 = statistics.median(x[0] for x in lats[mode])
        p99 = statistics.median(x[1] for x in lats[mode])
        mean = statistics.median(x[2] for x in lats[mode])
        print(f"  {name:<17} drain best {max(rates[mode]):>8,.0f} jobs/s, median "
              f"{statistics.median(rates[mode]):,.0f} ({JOBS} jobs; runs: "
              f"{', '.join(f'{x:,.0f}' for x in rates[mode])})   "
              f"enqueue->start p50 {p50:.0f} ms, p99 {p99:.0f} ms, mean {mean:.2f} ms "
              f"({LAT_JOBS} jobs; Redis's ms clock)")
    t, s = max(rates["tcp"]), max(rates["tls"])
    print(f"  best TLS drain is {100 * (t - s) / t:.0f}% below the best plain TCP one" if t > s
          else f"  best TLS drain is {100 * (s - t) / t:.0f}% above the best plain TCP one (noise)")
finally:
    rs.terminate()
    rs.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)
