"""Celery harness: the app and tasks (`python3 -m celery -A celery_peer
worker` imports this module) and the client side, run by bench/peers/run.py as
  /usr/bin/python3 celery_peer.py fill N [MS] | enqueue N single | ai N | paced MS RATE:S,.. |
                                  latency N GAP_MS | long SECONDS TAG [acks_late]
Redis is the broker (PEERS_REDIS_URL); no result backend: the no-op tasks
ignore their results as a no-op task would, so a task counts itself done
with one INCR (Celery keeps no record of a finished task in Redis)."""
import os
import sys
import time

import redis
from celery import Celery

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_peer", broker=URL)
app.conf.task_ignore_result = True
app.conf.broker_connection_retry_on_startup = True
_conn = None


def conn():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(URL)
    return _conn


@app.task
def noop():
    conn().incr("peers:done")


@app.task
def sleep_ms(ms):
    time.sleep(ms / 1000)
    conn().incr("peers:done")


@app.task
def stamp(t_us):
    conn().rpush("peers:lat", int(time.time() * 1e6) - t_us)


@app.task
def long(seconds, tag):
    conn().rpush("peers:starts:" + tag, f"{time.time()!r} {os.getpid()}")
    time.sleep(seconds)


# The at-least-once setting Celery documents: acknowledge after the task ran
# and put the message back when the child executing it dies.
@app.task(acks_late=True, reject_on_worker_lost=True)
def long_late(seconds, tag):
    conn().rpush("peers:starts:" + tag, f"{time.time()!r} {os.getpid()}")
    time.sleep(seconds)


class Counted(app.Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        conn().incr("peers:dead")  # retries exhausted: this task is dead


# Celery retries nothing by default; autoretry with 5 attempts, exponential
# back-off from 1 s with full jitter (retry_backoff, retry_jitter default).
@app.task(base=Counted, autoretry_for=(Exception,), max_retries=4, retry_backoff=True)
def call_ai():
    import urllib.request
    req = urllib.request.Request(os.environ["PEERS_AI_URL"], data=b'{"prompt": "hi"}',
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
    conn().incr("peers:done")


def main(argv):
    cmd = argv[0]
    if cmd == "fill":
        n = int(argv[1])
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                if len(argv) > 2:
                    sleep_ms.apply_async((int(argv[2]),), producer=producer)
                else:
                    noop.apply_async(producer=producer)
    elif cmd == "enqueue":
        n = int(argv[1])
        noop.delay()  # connect first: the figure is the rate, not the set-up
        conn().set("peers:done", 0)
        t0 = time.monotonic()
        for _ in range(n):
            noop.delay()
        print(f"{time.monotonic() - t0:.6f}")
    elif cmd == "latency":
        n, gap = int(argv[1]), int(argv[2]) / 1000
        for _ in range(n):
            stamp.delay(int(time.time() * 1e6))
            time.sleep(gap)
    elif cmd == "paced":
        sleep_ms.delay  # the app is set up; connect before the clock starts
        with app.connection_for_write() as c:
            c.ensure_connection()
        ms, t0 = int(argv[1]), time.monotonic()
        print("go", flush=True)
        for phase in argv[2].split(","):
            rate, secs = (float(x) for x in phase.split(":"))
            for k in range(int(rate * secs)):
                time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
                sleep_ms.delay(ms)
            t0 += secs
    elif cmd == "ai":
        with app.producer_or_acquire() as producer:
            for _ in range(int(argv[1])):
                call_ai.apply_async(producer=producer)
    elif cmd == "long":
        task = long_late if len(argv) > 3 and argv[3] == "acks_late" else long
        task.delay(float(argv[1]), argv[2])
    else:
        sys.exit(f"celery_peer: unknown command {cmd}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import celery_peer

    celery_peer.main(sys.argv[1:])
