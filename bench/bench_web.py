#!/usr/bin/env python3
"""corral-web's benchmark: /api/status latency and Redis snapshots per
second with 200 clients polling every 2 s, over a fleet of 50 queues, 20
hosts and 3 services; corral-web's idle RSS. Each figure is printed beside
a reference from the same run: a static file from the same server under
the same load (the server's own floor), `corralctl status --json` (one
snapshot from a fresh process) and the RSS of the redis-server it reads.
usage: bench_web.py BUILD_DIR [SECONDS]   (sh bench/run.sh web)"""
import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
CLIENTS, EVERY_S = 200, 2.0
QUEUES, HOSTS, SERVICES = 50, 20, 3

tmp = tempfile.mkdtemp(prefix="corral-bench-web-")
sock = os.path.join(tmp, "redis.sock")
procs = []


def cleanup():
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    procs.append(subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir",
                                   tmp, "--save", "", "--appendonly", "no", "--loglevel",
                                   "warning", "--logfile", os.path.join(tmp, "redis.log")]))
    r = redis.Redis(unix_socket_path=sock, decode_responses=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                sys.exit("bench_web: redis-server did not start")
            time.sleep(0.05)
    r.execute_command("FUNCTION", "LOAD", "REPLACE",
                      open(os.path.join(build, "gen", "corral.lua")).read())
    # The fleet: 50 queues with jobs and a minute of stats, 20 heartbeats,
    # 3 services.
    for s in range(SERVICES):
        r.fcall("corral_declare_service", 1, f"svc{s}", "{}")
    for q in range(QUEUES):
        name = f"queue{q:02d}"
        r.fcall("corral_declare", 1, name,
                json.dumps({"service": f"svc{q % SERVICES}"}))
        for i in range(20):
            jid = r.fcall("corral_enqueue", 1, name, json.dumps({"i": i}))
            if i < 5:
                res = r.fcall("corral_reserve", 1, name, "bench:1", 1)
                r.fcall("corral_ack", 1, name, "bench:1", res[0][0], res[0][1], "ok")
        assert jid
    now = int(time.time() * 1000)
    for h in range(HOSTS):
        host = f"host{h:02d}"
        r.hset(f"corral:host:{host}", mapping={
            "host": host, "pid": 1000 + h, "workers": 4, "busy": 2, "slots": 16, "min": 2,
            "max": 20, "desired": 4, "last_decision": "steady 4: demand 3.2 workers",
            "heartbeat_ms": now, "version": "bench"})
        r.expire(f"corral:host:{host}", 3600)
        r.zadd("corral:hosts", {host: now})

    port = free_port()
    conf = os.path.join(tmp, "c.conf")
    tok = os.path.join(tmp, "web.token")
    with open(tok, "w") as f:
        f.write(secrets.token_hex(24) + "\n")
    with open(conf, "w") as f:
        f.write(f"[redis]\nurl = unix://{sock}\n[web]\nlisten = 127.0.0.1:{port}\n"
                f"token_file = {tok}\n")
        for s in range(SERVICES):
            f.write(f"[service svc{s}]\nurl = http://127.0.0.1:9/\n")
    web = subprocess.Popen([os.path.join(build, "corral-web"), "-c", conf],
                           stderr=open(os.path.join(tmp, "web.log"), "w"))
    procs.append(web)

    def get(conn, path):
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body

    deadline = time.monotonic() + 10
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            st, body = get(c, "/api/status")
            c.close()
            if st == 200 and len(json.loads(body)["queues"]) == QUEUES:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("bench_web: corral-web did not serve the fleet: " +
                     open(os.path.join(tmp, "web.log")).read())
        time.sleep(0.1)
    snap_bytes = len(body)

    # Idle RSS: after the first snapshots, with nobody asking.
    time.sleep(3)
    web_rss, redis_rss = rss_kb(web.pid), rss_kb(procs[0].pid)
    web_anon, web_file = rss_kb(web.pid, "RssAnon"), rss_kb(web.pid, "RssFile")

    # Reference: one snapshot by corralctl status --json from a fresh process.
    ctl_ms = []
    for _ in range(20):
        t = time.perf_counter()
        subprocess.run([os.path.join(build, "corralctl"), "-c", conf, "status", "--json"],
                       check=True, capture_output=True)
        ctl_ms.append((time.perf_counter() - t) * 1000)

    # 200 clients, each on its own keep-alive connection, polling every 2 s
    # from a random phase; a tenth of the polls fetch a static file instead
    # (the reference: the same server, the same load, no Redis).
    lat = {"status": [], "static": []}
    errors = []
    info0 = r.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0)
    start = time.monotonic() + 0.5
    stop = start + seconds

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t_next = start + (i / CLIENTS) * EVERY_S
        n = 0
        try:
            while True:
                now_ = time.monotonic()
                if t_next >= stop:
                    break
                if t_next > now_:
                    time.sleep(t_next - now_)
                path = "/assets/app.css" if n % 10 == i % 10 else "/api/status"
                t = time.perf_counter()
                st, _ = get(conn, path)
                ms = (time.perf_counter() - t) * 1000
                if st != 200:
                    errors.append(st)
                lat["static" if path.startswith("/assets") else "status"].append(ms)
                n += 1
                t_next += EVERY_S
        except OSError as e:
            errors.append(str(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    info1 = r.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0)
    snaps = (info1 - info0) / elapsed
    busy_rss = rss_kb(web.pid)
    if errors:
        sys.exit(f"bench_web: {len(errors)} failed requests, e.g. {errors[:3]}")

    st = lat["status"]
    sf = lat["static"]
    print(f"corral-web: {QUEUES} queues, {HOSTS} hosts, {SERVICES} services "
          f"(/api/status is {snap_bytes} bytes); {CLIENTS} clients polling every "
          f"{EVERY_S:.0f} s for {elapsed:.0f} s ({len(st) + len(sf)} requests)")
    print(f"{'figure':44} {'corral-web':>12} {'reference':>12}  reference is")
    print(f"{'/api/status p50 (ms)':44} {statistics.median(st):12.2f} "
          f"{statistics.median(sf):12.2f}  a static file, same server and load")
    print(f"{'/api/status p99 (ms)  [goal <= 10]':44} {pct(st, 99):12.2f} {pct(sf, 99):12.2f}"
          "  a static file, same server and load")
    print(f"{'/api/status max (ms)':44} {max(st):12.2f} {max(sf):12.2f}"
          "  a static file, same server and load")
    print(f"{'one snapshot (ms)':44} {'':12} {statistics.median(ctl_ms):12.2f}"
          "  corralctl status --json, whole process, median of 20")
    print(f"{'Redis snapshots per second  [goal <= 1]':44} {snaps:12.2f} "
          f"{(len(st) + len(sf)) / elapsed:12.2f}  requests per second served")
    print(f"{'idle RSS (MiB)  [goal <= 6]':44} {web_rss / 1024:12.2f} {redis_rss / 1024:12.2f}"
          "  redis-server holding the fleet")
    print(f"{'  of which its own memory / mapped files (MiB)':44} {web_anon / 1024:12.2f} "
          f"{web_file / 1024:12.2f}  (files: the binary and shared libraries)")
    # Idle again: the load's connections closed, then the idle refresh.
    time.sleep(12)
    print(f"{'RSS just after the load / idle again (MiB)':44} {busy_rss / 1024:12.2f} "
          f"{rss_kb(web.pid) / 1024:12.2f}")
    # Idle while Prometheus scrapes and a dashboard was open a moment ago:
    # the metrics and history texts are kept too.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    metrics_bytes = len(get(c, "/metrics")[1])
    history_bytes = len(get(c, "/api/history")[1])
    c.close()
    time.sleep(3)
    print(f"{'RSS idle with metrics and history kept (MiB)':44} {rss_kb(web.pid) / 1024:12.2f}"
          f"{'':12}  (/metrics {metrics_bytes} bytes, /api/history {history_bytes})")


try:
    main()
finally:
    cleanup()
