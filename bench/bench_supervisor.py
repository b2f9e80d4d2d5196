#!/usr/bin/env python3
"""corrald's benchmarks: burst to target worker count, fork+exec+ready time
per worker, corrald's own RSS and idle CPU. Each figure is printed beside a
reference measured in the same run. usage: bench_supervisor.py BUILD_DIR"""
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

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
tmp = tempfile.mkdtemp(prefix="corral-bench-sup-")
sock = os.path.join(tmp, "redis.sock")
rs = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", tmp,
                       "--save", "", "--appendonly", "no", "--loglevel", "warning",
                       "--logfile", os.path.join(tmp, "redis.log")])
r = redis.Redis(unix_socket_path=sock, decode_responses=True)
for _ in range(200):
    try:
        r.ping()
        break
    except redis.ConnectionError:
        time.sleep(0.05)
host = socket.gethostname()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def pss_private_kb(pid):
    """(PSS, private) in KiB: shared pages split among the processes mapping
    them, and the pages no other process maps (Private_Clean + Private_Dirty),
    which is what one more such process costs."""
    pss = priv = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                priv += int(line.split()[1])
    return pss, priv


def workers_of(pid):
    """The child processes of pid (corrald's workers)."""
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


conf = os.path.join(tmp, "c.conf")
with open(conf, "w") as f:
    f.write(f"[redis]\nurl = unix://{sock}\n[pool]\nmin = 2\nmax = 20\nconcurrency = 4\n"
            "[scale]\ntick = 1s\n[queue burst]\nhandler = exec\n"
            "command = /bin/sh -c 'sleep 0.5; cat'\n")
try:
    # 1. fork + exec + ready of one worker, vs fork + exec of /bin/true
    times = []
    for _ in range(20):
        a, b = socket.socketpair()
        t0 = time.monotonic()
        p = subprocess.Popen([os.path.join(build, "corral-worker"), "-c", conf],
                             preexec_fn=lambda: os.dup2(b.fileno(), 3), pass_fds=(3,),
                             stderr=subprocess.DEVNULL)
        b.close()
        buf = b""
        while b"ready" not in buf:
            buf += a.recv(4096)
        times.append((time.monotonic() - t0) * 1000)
        p.terminate()
        p.wait()
        a.close()
    true_times = []
    for _ in range(20):
        t0 = time.monotonic()
        subprocess.run(["/bin/true"])
        true_times.append((time.monotonic() - t0) * 1000)
    print(f"1. fork+exec+ready of a worker (connected to Redis, queue declared): "
          f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms")
    print(f"   reference: fork+exec+exit of /bin/true from the same Python: "
          f"median {statistics.median(true_times):.2f} ms")

    # 2. corrald idle: RSS and CPU
    r.flushall()
    log = open(os.path.join(tmp, "corrald.log"), "w")
    d = subprocess.Popen([os.path.join(build, "corrald"), "-c", conf], stderr=log)
    while r.hget(f"corral:host:{host}", "workers") != "2":
        time.sleep(0.05)
    time.sleep(1)
    c0 = cpu_ms(d.pid)
    time.sleep(10)
    c1 = cpu_ms(d.pid)
    drss = rss_kb(d.pid)
    rrss = rss_kb(rs.pid)
    print(f"\n2. corrald idle with 2 workers: RSS {drss} KiB ({drss / 1024:.1f} MiB; goal <= 4 MiB: "
          f"{'met' if drss <= 4096 else 'NOT met'}), CPU {c1 - c0:.0f} ms over 10 s")
    dpss, dpriv = pss_private_kb(d.pid)
    print(f"   corrald's PSS {dpss} KiB, private {dpriv} KiB ({dpriv / 1024:.2f} MiB)")
    for w in workers_of(d.pid):
        wpss, wpriv = pss_private_kb(w)
        print(f"   its worker {w}: RSS {rss_kb(w)} KiB, PSS {wpss} KiB, private {wpriv} KiB "
              f"({wpriv / 1024:.2f} MiB)")
    print(f"   reference: redis-server RSS {rrss} KiB")

    # 3. a 2,000-job burst: time until the pool reaches the scaler's target
    pipe = r.pipeline(transaction=False)
    for i in range(2000):
        pipe.fcall("corral_enqueue", 1, "burst", json.dumps({"i": i}))
    t0 = time.monotonic()
    pipe.execute()
    first = None
    while True:
        hb = r.hgetall(f"corral:host:{host}")
        desired, workers = int(hb.get("desired", 0)), int(hb.get("workers", 0))
        if first is None and desired > 2:
            first = time.monotonic() - t0
        if desired > 2 and workers >= desired and desired == int(hb["max"]):
            reached = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 60:
            reached = float("nan")
            break
        time.sleep(0.01)
    print(f"\n3. 2,000-job burst (0.5 s jobs, tick 1 s, min 2, max 20): first decision after "
          f"{first:.2f} s, {workers} workers running after {reached:.2f} s")
    print(f"   reference: the tick (1 s) and the scale-out cooldown (5 s) between growth "
          f"steps, each step at most doubling the pool (at least +8)")
    d.terminate()
    d.wait(timeout=60)
    log.close()
finally:
    rs.terminate()
    rs.wait()
    shutil.rmtree(tmp, ignore_errors=True)
