#!/usr/bin/env python3
"""The Python client's cost over raw redis-py (issue 15: its enqueue costs at
most 10% more than a raw FCALL, measured in the same run).

On a private redis-server (unix socket, no persistence) with the corral
library loaded, one queue declared: rounds of N calls of each, one after
another on one connection, of the raw call,
r.execute_command("FCALL", "corral_enqueue", 1, key, json.dumps(payload)),
and of the client's enqueue(queue, payload) with the same payload (a small
chat request), the two alternating every 500 calls; the best round of each
is kept (the least disturbed by other load on the machine).
The raw call writes the payload as the client does (compact JSON), so the
difference is the client's own code: checks, key, reply to int.
Then enqueue_many of 1,000 payloads beside a pipeline of 1,000 raw FCALLs,
and the AsyncClient's enqueue beside a raw redis.asyncio FCALL.

usage: /usr/bin/python3 bench/bench_clients.py [N] [ROUNDS]   (default 20000 7)
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis
import redis.asyncio as aredis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import corral_client  # noqa: E402

Q = "bench"
KEY = "corral:{bench}"
PAYLOAD = {"model": "gpt-4o-mini", "max_tokens": 256,
           "messages": [{"role": "user", "content": "Summarise the attached chapter in three "
                                                    "sentences."}]}


def dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def library_source():
    """The library the programs embed: build/gen/corral.lua (make), from
    CORRAL_BUILD when set."""
    build = os.environ.get("CORRAL_BUILD", os.path.join(REPO, "build"))
    path = os.path.join(build, "gen", "corral.lua")
    if not os.path.exists(path):
        raise SystemExit(f"bench_clients: {path} not built (make)")
    with open(path) as f:
        return f.read()


def start_redis(d):
    sock = os.path.join(d, "redis.sock")
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", d,
                             "--save", "", "--appendonly", "no", "--logfile",
                             os.path.join(d, "redis.log")])
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(unix_socket_path=sock).ping()
            return proc, sock
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("bench_clients: redis-server did not start")
            time.sleep(0.02)


def fresh(admin):
    admin.flushall()
    admin.execute_command("FUNCTION", "LOAD", "REPLACE", library_source())
    admin.fcall("corral_declare", 1, KEY, json.dumps({"max_payload": 1048576}))


def timed(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6  # us per job


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    d = tempfile.mkdtemp(prefix="corral-bench-clients-")
    proc, sock = start_redis(d)
    try:
        admin = redis.Redis(unix_socket_path=sock)
        raw = redis.Redis(unix_socket_path=sock, decode_responses=True)
        client = corral_client.Client(f"unix://{sock}")

        def raw_enqueue(k):
            for _ in range(k):
                int(raw.execute_command("FCALL", "corral_enqueue", 1, KEY, dumps(PAYLOAD)))

        def client_enqueue(k):
            for _ in range(k):
                client.enqueue(Q, PAYLOAD)

        def raw_pipeline(k):
            for _ in range(k // 1000):
                pipe = raw.pipeline(transaction=False)
                for _ in range(1000):
                    pipe.execute_command("FCALL", "corral_enqueue", 1, KEY, dumps(PAYLOAD))
                pipe.execute()

        def client_many(k):
            for _ in range(k // 1000):
                client.enqueue_many(Q, [PAYLOAD] * 1000)

        best = {}
        fresh(admin)
        raw_enqueue(2000)  # warm both paths
        client_enqueue(2000)
        for _ in range(rounds):
            # the pair under test alternates every 500 calls, so that both
            # see the same load on the machine and the same database size
            fresh(admin)
            total = {"raw": 0.0, "client": 0.0}
            for _ in range(n // 500):
                for name, fn in (("raw", raw_enqueue), ("client", client_enqueue)):
                    total[name] += timed(fn, 500) / (n // 500)
            for name, us in total.items():
                best[name] = min(best.get(name, us), us)
            for name, fn in (("raw_pipe", raw_pipeline), ("client_many", client_many)):
                fresh(admin)
                us = timed(fn, n)
                best[name] = min(best.get(name, us), us)

        async def async_part():
            araw = aredis.Redis(unix_socket_path=sock, decode_responses=True)
            aclient = corral_client.AsyncClient(f"unix://{sock}")

            async def a_raw(k):
                for _ in range(k):
                    int(await araw.execute_command("FCALL", "corral_enqueue", 1, KEY,
                                                   dumps(PAYLOAD)))

            async def a_client(k):
                for _ in range(k):
                    await aclient.enqueue(Q, PAYLOAD)

            k = n // 2
            for _ in range(rounds):
                fresh(admin)
                total = {"async_raw": 0.0, "async_client": 0.0}
                for _ in range(k // 500):
                    for name, fn in (("async_raw", a_raw), ("async_client", a_client)):
                        t0 = time.perf_counter()
                        await fn(500)
                        total[name] += (time.perf_counter() - t0) / k * 1e6
                for name, us in total.items():
                    best[name] = min(best.get(name, us), us)
            await aclient.close()
            await (getattr(araw, "aclose", None) or araw.close)()

        asyncio.run(async_part())
        client.close()
        raw.close()

        def row(what, ref_name, name, ref_label, label):
            ref, got = best[ref_name], best[name]
            print(f"{what:<34} {ref_label:>22} {ref:7.1f} us/job  {label:>22} {got:7.1f} us/job"
                  f"  {100 * (got - ref) / ref:+6.1f}%")

        print(f"bench_clients: redis-py {redis.__version__}, {n} jobs per round, best of "
              f"{rounds} rounds, one connection on a unix socket")
        row("enqueue, one call after another", "raw", "client", "raw FCALL",
            "Client.enqueue")
        row("enqueue, asyncio", "async_raw", "async_client", "raw FCALL (asyncio)",
            "AsyncClient.enqueue")
        row("bulk, 1,000 jobs a round trip", "raw_pipe", "client_many", "pipelined FCALL",
            "Client.enqueue_many")
        goal = 100 * (best["client"] - best["raw"]) / best["raw"]
        print(f"goal: Client.enqueue at most 10% over the raw FCALL: {goal:+.1f}% "
              f"({'met' if goal <= 10 else 'NOT met'})")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
