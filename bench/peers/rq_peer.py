"""RQ harness: the jobs RQ's workers run (imported by `rq worker` as module
rq_peer) and the client side, run by bench/peers/run.py as
  /usr/bin/python3 rq_peer.py fill N | enqueue N single|bulk | ai N | paced MS RATE:S,.. |
                              latency N GAP_MS | long SECONDS TAG [retry]
PEERS_REDIS_URL names the Redis; the queue is "default"."""
import os
import sys
import time

import redis
from rq import Queue, Retry

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
_conn = None


def conn():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(URL)
    return _conn


def noop():
    pass


def stamp(t_us):
    """Records enqueue-to-start in microseconds (wall clock, one machine)."""
    conn().rpush("peers:lat", int(time.time() * 1e6) - t_us)


def long(seconds, tag):
    conn().rpush("peers:starts:" + tag, f"{time.time()!r} {os.getpid()}")
    time.sleep(seconds)


def sleep_ms(ms):
    time.sleep(ms / 1000)


def call_ai():
    """One call to the AI-service stand-in; a non-2xx answer raises."""
    import urllib.request
    req = urllib.request.Request(os.environ["PEERS_AI_URL"], data=b'{"prompt": "hi"}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def main(argv):
    q = Queue("default", connection=conn())
    cmd, n = argv[0], int(argv[1]) if len(argv) > 1 and argv[0] != "long" else 0
    if cmd == "fill":
        fn = noop if len(argv) < 3 else sleep_ms
        args = () if len(argv) < 3 else (int(argv[2]),)
        for i in range(0, n, 1000):
            q.enqueue_many([Queue.prepare_data(fn, args) for _ in range(min(1000, n - i))])
    elif cmd == "enqueue":
        t0 = time.monotonic()
        if argv[2] == "bulk":
            for i in range(0, n, 1000):
                q.enqueue_many([Queue.prepare_data(noop) for _ in range(min(1000, n - i))])
        else:
            for _ in range(n):
                q.enqueue(noop)
        print(f"{time.monotonic() - t0:.6f}")
    elif cmd == "latency":
        gap = int(argv[2]) / 1000
        for _ in range(n):
            q.enqueue(stamp, int(time.time() * 1e6))
            time.sleep(gap)
    elif cmd == "paced":
        # paced MS RATE:SECONDS,... : jobs of MS ms, one at a time on a timetable
        ms, t0, i = int(argv[1]), time.monotonic(), 0
        print("go", flush=True)
        for phase in argv[2].split(","):
            rate, secs = (float(x) for x in phase.split(":"))
            for k in range(int(rate * secs)):
                i += 1
                t = t0 + k / rate
                time.sleep(max(0.0, t - time.monotonic()))
                q.enqueue(sleep_ms, ms)
            t0 += secs
    elif cmd == "ai":
        # RQ retries nothing by default; Retry with intervals needs the
        # workers started --with-scheduler. 5 attempts, 1 s doubling.
        retry = Retry(max=4, interval=[1, 2, 4, 8])
        for i in range(0, n, 1000):
            q.enqueue_many([Queue.prepare_data(call_ai, retry=retry) for _ in range(min(1000, n - i))])
    elif cmd == "long":
        retry = Retry(max=3) if len(argv) > 3 and argv[3] == "retry" else None
        q.enqueue(long, float(argv[1]), argv[2], retry=retry, job_timeout=600)
    else:
        sys.exit(f"rq_peer: unknown command {cmd}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import rq_peer  # the jobs must be pickled as rq_peer.*, not __main__.*

    rq_peer.main(sys.argv[1:])
