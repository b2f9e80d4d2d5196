#!/usr/bin/python3
"""make bench-peers: corral beside RQ, Celery, Sidekiq and BullMQ on one
private redis-server (TCP on 127.0.0.1, a free port, no persistence), each
peer in its idiomatic setup for 4 execution slots, then docs/benchmarks.md
with the table and docs/img/*.svg plots (gnuplot).

  /usr/bin/python3 bench/peers/run.py [--rows 1,3,4,5,2] [--peers corral,rq,...]
                                      [--small] [--jobs N] [--runs N] ...

Run with Debian's /usr/bin/python3 (its python3-rq, python3-celery and
python3-redis). CORRAL_BUILD is the build directory (default build/).
Results go to bench/peers/results.json, merged with earlier runs there, so
one row or one peer can be measured again alone; docs/benchmarks.md is
always written from the whole file (--report-only only writes it).
Harnesses: rq_peer.py, celery_peer.py, sidekiq_peer.rb, bullmq_peer.cjs (the
peers' jobs and clients, in their languages); corral's side is in this file.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("CORRAL_BUILD", os.path.join(REPO, "build")))
PY = "/usr/bin/python3"
RESULTS = os.path.join(HERE, "results.json")
DOC = os.path.join(REPO, "docs", "benchmarks.md")
IMG = os.path.join(REPO, "docs", "img")
SLOTS = 4
BLOCKING = {"blpop", "brpop", "bzpopmin", "bzpopmax", "blmove", "brpoplpush", "bzmpop", "blmpop"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench-peers: {what} not within {timeout:.0f} s")
        time.sleep(interval)


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def mem_kb(pid):
    """(RSS, PSS, private) in KiB of one process: private is Private_Clean +
    Private_Dirty, the pages no other process maps (what one more such
    process costs)."""
    rss = pss = priv = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                priv += int(line.split()[1])
    return rss, pss, priv


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


class Env:
    """The private redis-server and the temp dir every run shares."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="corral-peers-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.tmp,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.tmp, "redis.log")],
            start_new_session=True)
        self.r = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        wait_until(self._ping, 10, "redis-server answering PING")
        self.env = dict(os.environ, PEERS_REDIS_URL=self.url, REDIS_URL=self.url,
                        PYTHONPATH=HERE, PYTHONDONTWRITEBYTECODE="1")

    def _ping(self):
        try:
            return self.r.ping()
        except redis.ConnectionError:
            return False

    def blocked_clients(self):
        return sum(1 for c in self.r.client_list() if c.get("cmd") in BLOCKING)

    def close(self):
        self.redis.terminate()
        self.redis.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Procs:
    """Processes a peer runs, each in its own session, stopped by group."""

    def __init__(self, env, name):
        self.env, self.name, self.procs = env, name, []

    def start(self, argv, cwd=HERE):
        out = open(os.path.join(self.env.tmp, f"{self.name}.log"), "a")
        p = subprocess.Popen(argv, cwd=cwd, env=self.env.env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def stop(self, timeout=20):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the group: forked children too
            except ProcessLookupError:
                pass
            p.wait()
        self.procs = []


class Peer:
    """One system under test. Subclasses say how to run its workers with
    SLOTS execution slots, how its harness is called, and how to count its
    finished jobs in Redis."""
    name = ""
    harness = []
    bulk = True  # has a bulk enqueue API
    restart_after_kill = False  # no supervisor of its own: the harness plays systemd

    def __init__(self, env):
        self.env, self.r = env, env.r
        self.procs = Procs(env, self.name)

    def run_harness(self, *args, timeout=600):
        p = subprocess.run(self.harness + [str(a) for a in args], cwd=HERE, env=self.env.env,
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{self.name} harness {args}: {p.stderr.strip()[-2000:]}")
        return p.stdout.strip()

    def reset(self):
        self.r.flushall()

    def fill(self, n, ms=None):
        self.run_harness("fill", n, *([ms] if ms else []))

    def ready_blocked(self):
        return 1

    def wait_ready(self):
        wait_until(lambda: self.env.blocked_clients() >= self.ready_blocked(), 60,
                   f"{self.name} workers waiting for jobs")
        time.sleep(2)  # the rest of the pool, and start-up work after the first poll

    def enqueue(self, n, mode):
        return float(self.run_harness("enqueue", n, mode))

    def latency(self, n, gap_ms):
        self.run_harness("latency", n, gap_ms, timeout=n * gap_ms / 1000 + 120)
        wait_until(lambda: self.r.llen("peers:lat") >= n, 60, f"{self.name}: {n} latency jobs started")
        return [int(float(x)) for x in self.r.lrange("peers:lat", 0, -1)]

    def long_job(self, seconds, tag, variant):
        self.run_harness("long", seconds, tag, *([variant] if variant else []))

    def starts(self, tag):
        """[(time, pid)] of each start of the crash job."""
        return [(float(a), int(b)) for a, b in
                (x.split() for x in self.r.lrange("peers:starts:" + tag, 0, -1))]

    def mem(self):
        """(supervisor pid or None, [worker pids])."""
        raise NotImplementedError

    def gone(self, variant):
        """True when the peer's own state shows the killed job will never
        run again (it holds no copy of it anywhere), so row 5 can stop
        waiting early; False when unsure."""
        return False

    def outcome(self):
        """(jobs done, jobs dead) of the outage row."""
        return int(self.r.get("peers:done") or 0), int(self.r.get("peers:dead") or 0)

    def enqueue_ai(self, n):
        self.run_harness("ai", n)

    def done(self):
        return int(self.r.get("peers:done") or 0)


class Corral(Peer):
    name = "corral"
    version = ""

    def __init__(self, env):
        super().__init__(env)
        self.version = subprocess.run([os.path.join(BUILD, "corrald"), "--version"],
                                      capture_output=True, text=True).stdout.split()[-1]

    def conf(self, mn=1, mx=1, concurrency=SLOTS, queue="handler = echo\n", extra=""):
        path = os.path.join(self.env.tmp, "corral.conf")
        with open(path, "w") as f:
            f.write(f"[redis]\nurl = {self.env.url}\n[pool]\nmin = {mn}\nmax = {mx}\n"
                    f"concurrency = {concurrency}\n{extra}[scale]\ntick = 1s\n"
                    f"[queue default]\n{queue}")
        return path

    def reset(self, **kw):
        self.r.flushall()
        self.cfg = self.conf(**kw)
        subprocess.run([os.path.join(BUILD, "corralctl"), "-c", self.cfg, "status"],
                       capture_output=True, check=True)  # loads the Function library
        self.r.fcall("corral_declare", 1, "default", "{}")

    def start(self, slots=SLOTS):
        self.procs.start([os.path.join(BUILD, "corrald"), "-c", self.cfg])

    def paced(self, ms, phases):
        """The same timetable as the harnesses' paced command, in a thread."""
        import threading
        go = threading.Event()

        def run():
            r = redis.Redis(host="127.0.0.1", port=self.env.port)
            r.ping()
            self.total = 0  # done() is enqueued so far less what is left
            t0 = time.monotonic()
            go.set()
            for phase in phases.split(","):
                rate, secs = (float(x) for x in phase.split(":"))
                for k in range(int(rate * secs)):
                    time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
                    r.fcall("corral_enqueue", 1, "default", "{}")
                    self.total += 1
                t0 += secs

        t = threading.Thread(target=run, daemon=True)
        t.start()
        go.wait()
        return t

    def fill(self, n, ms=None):
        for i in range(0, n, 1000):
            p = self.r.pipeline(transaction=False)
            for _ in range(min(1000, n - i)):
                p.fcall("corral_enqueue", 1, "default", "{}")
            p.execute()

    def enqueue(self, n, mode):
        """Row 2: one corral_enqueue per job, or in bulk corral_enqueue_many
        with batches of 1,000 payloads (library version 5, docs/protocol.md),
        as the peers' bulk calls (push_bulk, enqueue_many, addBulk)."""
        t0 = time.monotonic()
        if mode == "bulk":
            for i in range(0, n, 1000):
                self.r.fcall("corral_enqueue_many", 1, "default", "", *["{}"] * min(1000, n - i))
        else:
            for _ in range(n):
                self.r.fcall("corral_enqueue", 1, "default", "{}")
        return time.monotonic() - t0

    def remaining(self):
        s = json.loads(self.r.fcall("corral_stats", 1, "default", "60", "lean"))
        return s["depth"] + s["inflight"]

    def done(self):
        return self.total - self.remaining()

    def latency(self, n, gap_ms):
        ids = []
        for _ in range(n):
            ids.append(self.r.fcall("corral_enqueue", 1, "default", "{}"))
            time.sleep(gap_ms / 1000)
        wait_until(lambda: self.remaining() == 0, 60, "corral: latency jobs done")
        p = self.r.pipeline(transaction=False)
        for i in ids:
            p.hmget(f"corral:{{default}}:job:{i}", "created_us", "started_us")
        return [int(s) - int(c) for c, s in p.execute()]

    def mem(self):
        sup = self.procs.procs[0].pid
        return sup, children(sup)

    def enqueue_ai(self, n):
        self.fill(n)
        self.total = n

    def outcome(self):
        s = json.loads(self.r.fcall("corral_stats", 1, "default", "60", "lean"))
        left = s["depth"] + s["inflight"] + s["scheduled"]
        return self.total - left - s["dead"], s["dead"]

    def long_job(self, seconds, tag, variant):
        self.crash_id = self.r.fcall("corral_enqueue", 1, "default", "{}")

    def starts(self, tag):
        # Each reserve of the job stamps started_ms; the worker holding it is
        # the executing process (the handler runs inside it).
        st = self.r.hmget(f"corral:{{default}}:job:{self.crash_id}", "started_ms", "worker", "attempts")
        if st[0] is None:
            return []
        seen = getattr(self, "_seen", [])
        if not seen or seen[-1][0] != float(st[0]) / 1000:
            kids = children(self.procs.procs[0].pid)
            seen.append((float(st[0]) / 1000, kids[0] if kids else 0))
        self._seen = seen
        return list(seen)


class RQ(Peer):
    name = "rq"
    harness = [PY, "rq_peer.py"]

    scheduler = False

    slots = SLOTS

    def start(self, slots=SLOTS):
        self.slots = slots
        # RQ 1.13 has no worker pool: one `rq worker` per slot, each forking a
        # work horse per job (RQ's default). Retries with intervals need
        # --with-scheduler (the outage row).
        for _ in range(slots):
            self.procs.start(["/usr/bin/rq", "worker", "-u", self.env.url, "default"] +
                             (["--with-scheduler"] if self.scheduler else []))

    def outcome(self):
        return self.r.zcard("rq:finished:default"), self.r.zcard("rq:failed:default")

    def gone(self, variant):
        # In the failed registry, nothing queued, scheduled or started.
        return (variant is None and self.r.zcard("rq:failed:default") == 1 and
                self.r.llen("rq:queue:default") == 0 and self.r.zcard("rq:scheduled:default") == 0
                and self.r.zcard("rq:wip:default") == 0)

    def ready_blocked(self):
        return self.slots

    def done(self):
        return self.r.zcard("rq:finished:default")

    def mem(self):
        return None, [p.pid for p in self.procs.procs]


class Celery(Peer):
    name = "celery"
    harness = [PY, "celery_peer.py"]
    bulk = False

    def start(self, slots=SLOTS):
        # The prefork pool (Celery's default): a main process and one child
        # per slot.
        self.procs.start([PY, "-m", "celery", "-A", "celery_peer", "worker", "-c", str(slots),
                          "-P", "prefork"])

    def mem(self):
        sup = self.procs.procs[0].pid
        return sup, children(sup)

    def enqueue(self, n, mode):
        return float(self.run_harness("enqueue", n, mode))

    def gone(self, variant):
        # The message was acknowledged when the task started (the default):
        # no copy in the queue nor among kombu's unacked messages.
        return (variant is None and self.r.llen("celery") == 0 and self.r.hlen("unacked") == 0
                and self.r.zcard("unacked_index") == 0)


class Sidekiq(Peer):
    name = "sidekiq"
    harness = ["ruby", "sidekiq_peer.rb"]
    restart_after_kill = True

    def start(self, slots=SLOTS):
        # One process with a thread per slot (Sidekiq's model).
        self.procs.start(["sidekiq", "-c", str(slots), "-q", "default", "-r",
                          os.path.join(HERE, "sidekiq_peer.rb")])

    def mem(self):
        return None, [self.procs.procs[-1].pid]

    def outcome(self):
        return int(self.r.get("peers:done") or 0), self.r.zcard("dead")

    def gone(self, variant):
        # BasicFetch (Sidekiq's free edition) took it off the list with BRPOP:
        # no copy in the queue, retry, schedule or dead sets once restarted.
        return (len(self.procs.procs) > 1 and self.r.llen("queue:default") == 0 and
                self.r.zcard("retry") == 0 and self.r.zcard("schedule") == 0 and self.r.zcard("dead") == 0)


class BullMQ(Peer):
    name = "bullmq"
    harness = ["node", "bullmq_peer.cjs"]
    restart_after_kill = True

    def start(self, slots=SLOTS):
        # One Node process with concurrency = slots (BullMQ's model).
        self.procs.start(["node", "bullmq_peer.cjs", "worker", str(slots)])

    def done(self):
        return self.r.zcard("bull:default:completed")

    def mem(self):
        return None, [self.procs.procs[-1].pid]

    def outcome(self):
        return self.r.zcard("bull:default:completed"), self.r.zcard("bull:default:failed")


class StandIn:
    """The AI service: answers 503 until recover_at (monotonic), then 200,
    and counts both."""

    def __init__(self):
        import http.server
        import threading
        st = self
        self.recover_at = float("inf")
        self.failed = self.ok = 0
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY a
            # keep-alive client waits out a delayed ACK (40 ms) per call.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                up = time.monotonic() >= st.recover_at
                with st.lock:
                    if up:
                        st.ok += 1
                    else:
                        st.failed += 1
                body = b'{"choices": [{"message": {"content": "ok"}}]}' if up else b'{"error": "down"}'
                self.send_response(200 if up else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/chat/completions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


PEERS = {"corral": Corral, "rq": RQ, "celery": Celery, "sidekiq": Sidekiq, "bullmq": BullMQ}


# Row 1's second width: one process with 64 slots, for the peers whose
# model is one process with many slots (corral's worker, BullMQ's
# concurrency); 64 processes of RQ or Celery would measure forking.
WIDE, WIDE_PEERS = 64, ("corral", "bullmq")


# Row 1: drain of pre-enqueued no-op jobs, timed from the first completion
# seen to the last (so process start-up, which differs a lot, is not in it).
# The peers take turns run by run (run 1 of each peer and width, then run 2,
# ...), so that a busy moment of the machine falls on all of them alike;
# the median of each peer's runs is kept.
def row_drain(peers, n, runs):
    rates = {}
    for run in range(runs):
        for slots in (SLOTS, WIDE):
            for peer in peers:
                if slots == WIDE and peer.name not in WIDE_PEERS:
                    continue
                rate = drain_once(peer, n, slots)
                rates.setdefault((peer.name, slots), []).append(rate)
                log(f"  {peer.name} drain, {slots} slots, run {run + 1}: {rate:.0f} jobs/s")
    return {(name, slots): {"n": n, "slots": slots, "runs": r, "median": statistics.median(r)}
            for (name, slots), r in rates.items()}


def drain_once(peer, n, slots):
    if isinstance(peer, Corral):
        peer.reset(concurrency=slots)
    else:
        peer.reset()
    peer.fill(n)
    peer.total = n
    peer.start(slots)
    t_first = d_first = None
    deadline = time.monotonic() + 900
    while True:
        d = peer.done()
        now = time.monotonic()
        if d >= 1 and t_first is None:
            t_first, d_first = now, d
        if d >= n:
            break
        if now > deadline:
            raise TimeoutError(f"{peer.name}: {d}/{n} done after 900 s")
        time.sleep(0.005)
    peer.procs.stop()
    return (n - d_first) / (now - t_first) if now > t_first else float("nan")


# Row 2: enqueue rate from one client, one job per call, and in bulk.
def row_enqueue(peer, n):
    out = {"n": n}
    for mode in ("single", "bulk"):
        if mode == "bulk" and not peer.bulk:
            out[mode] = None
            continue
        peer.reset()
        secs = peer.enqueue(n, mode)
        out[mode] = n / secs
        log(f"  {peer.name} enqueue {mode}: {n / secs:.0f} jobs/s")
    return out


# Rows 3 and 4: enqueue-to-start latency with idle workers, then the idle
# memory of the same processes.
def row_latency_mem(peer, n, gap_ms, rows):
    out = {}
    peer.reset()
    peer.total = 0
    peer.start()
    peer.wait_ready()
    if "4" in rows:
        time.sleep(3)
        sup, workers = peer.mem()
        m = {"supervisor": mem_kb(sup) if sup else None,
             "workers": [mem_kb(w) for w in workers]}
        m["total_rss"] = (m["supervisor"][0] if sup else 0) + sum(w[0] for w in m["workers"])
        m["total_pss"] = (m["supervisor"][1] if sup else 0) + sum(w[1] for w in m["workers"])
        m["total_private"] = (m["supervisor"][2] if sup else 0) + sum(w[2] for w in m["workers"])
        out["mem"] = m
        log(f"  {peer.name} idle: supervisor {m['supervisor']}, workers {m['workers']}")
    if "3" in rows:
        lat = peer.latency(n, gap_ms)
        out["latency"] = {"n": n, "gap_ms": gap_ms, "p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99),
                          "max_us": max(lat)}
        log(f"  {peer.name} latency p50 {pct(lat, 0.5)} us p99 {pct(lat, 0.99)} us")
    peer.procs.stop()
    return out


# Row 5: a 20 s job whose executing process is SIGKILLed 2 s into it.
def row_crash(peer, variant, job_s, wait_s):
    tag = f"{peer.name}-{variant or 'default'}"
    if isinstance(peer, Corral):
        peer.reset(queue=f"handler = exec\ncommand = /bin/sleep {job_s:g}\n")
        peer._seen = []
    else:
        peer.reset()
    peer.total = 0
    peer.start()
    peer.wait_ready()
    if variant == "settled":
        # corrald counts a worker that dies within 10 s of its start as
        # crashing at start and re-forks it after a back-off (1 s, doubling);
        # a worker that has been up longer is re-forked on the next tick.
        time.sleep(11)
    peer.long_job(job_s, tag, variant)
    first = wait_until(lambda: peer.starts(tag), 30, f"{peer.name}: the long job starting")[0]
    time.sleep(2)
    pid = first[1]
    os.kill(pid, signal.SIGKILL)
    t_kill = time.time()
    log(f"  {peer.name} {variant or 'default'}: SIGKILLed pid {pid}")
    if peer.restart_after_kill:
        # No supervisor of its own: restart it as systemd (Restart=always)
        # would, here after 1 s.
        time.sleep(1)
        peer.start()
    rerun = gone_at = None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        s = peer.starts(tag)
        if len(s) >= 2:
            rerun = s[1][0] - t_kill
            break
        if peer.gone(variant):
            # Gone for good by the peer's own state; watch 10 s more anyway.
            if gone_at is None:
                gone_at = time.monotonic()
                deadline = min(deadline, gone_at + 10)
        else:
            gone_at = None
        time.sleep(0.05)
    waited = time.time() - t_kill
    peer.procs.stop(timeout=3)  # the re-run job would hold a graceful stop for 20 s
    log(f"  {peer.name} {variant or 'default'}: rerun after {rerun} s" if rerun is not None
        else f"  {peer.name} {variant or 'default'}: not run again within {waited:.0f} s")
    return {"variant": variant or "default", "rerun_s": rerun, "waited_s": round(waited),
            "gone": gone_at is not None}


# Row 6: N jobs calling an AI service that fails (503 at once) for
# outage_s from the first enqueue, then recovers.
def row_outage(peer, n, outage_s, limit_s):
    ai = StandIn()
    peer.env.env["PEERS_AI_URL"] = ai.url
    try:
        if isinstance(peer, Corral):
            peer.reset(queue=f"handler = http\nservice = ai\n[service ai]\nurl = {ai.url}\n")
        else:
            peer.reset()
        if isinstance(peer, RQ):
            peer.scheduler = True
        peer.total = 0
        peer.start()
        peer.wait_ready()
        t0 = time.monotonic()
        ai.recover_at = t0 + outage_s
        peer.enqueue_ai(n)
        t_end = None
        while time.monotonic() - t0 < limit_s:
            done, dead = peer.outcome()
            if done + dead >= n:
                t_end = time.monotonic()
                break
            time.sleep(0.05)
        done, dead = peer.outcome()
        out = {"n": n, "outage_s": outage_s, "failed_calls": ai.failed, "ok_calls": ai.ok,
               "done": done, "dead": dead, "limit_s": limit_s,
               "finish_after_recovery_s": None if t_end is None else t_end - ai.recover_at}
        log(f"  {peer.name} outage: {out}")
        return out
    finally:
        if isinstance(peer, RQ):
            peer.scheduler = False
        peer.procs.stop(timeout=5)
        ai.close()


# Row 7: BASE jobs/s of MS ms jobs for SECS, then 10x BASE for SECS, then
# BASE for SECS; corral scaling between 2 and 20 workers of one slot each,
# each peer at fixed 2 and fixed 20 slots. Figures: time from the burst's
# start until every job enqueued by its end is done (the backlog gone), and
# slot-seconds spent until the last job is done (corral: its live workers,
# sampled every 100 ms).
def row_burst(peer, slots, base, secs, ms):
    phases = f"{base}:{secs},{base * 10}:{secs},{base}:{secs}"
    total = 2 * int(base * secs) + int(base * 10 * secs)
    backlog = int(base * secs) + int(base * 10 * secs)
    if isinstance(peer, Corral):
        peer.reset(mn=2, mx=20, concurrency=1,
                   queue=f"handler = exec\ncommand = /bin/sleep {ms / 1000:g}\n")
        peer.total = 0
        peer.start()
    else:
        peer.reset()
        peer.start(slots=slots)
    peer.wait_ready()
    if isinstance(peer, Corral):
        feeder = peer.paced(ms, phases)
    else:
        feeder = subprocess.Popen(peer.harness + ["paced", str(ms), phases], cwd=HERE, env=peer.env.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        feeder.stdout.readline()  # "go": the timetable starts now
    t0 = time.monotonic()
    t_backlog = None
    slot_s = 0.0
    peak = 0
    last = t0
    while True:
        time.sleep(0.1)
        now = time.monotonic()
        if isinstance(peer, Corral):
            n = len(children(peer.procs.procs[0].pid))
        else:
            n = slots
        peak = max(peak, n)
        slot_s += n * (now - last)
        last = now
        d = peer.done()
        if t_backlog is None and d >= backlog:
            t_backlog = now
        if d >= total:
            break
        if now - t0 > 3 * secs + 300:
            raise TimeoutError(f"{peer.name}: {d}/{total} burst jobs done after {now - t0:.0f} s")
    held = 0
    if isinstance(peer, Corral):
        feeder.join()
        # The scaler's decisions (docs/web.md; a run of held ticks is one
        # entry): a growth held by the host's CPU or memory ceiling is the
        # shared machine's load, not the policy.
        for key in peer.r.scan_iter("*:decisions:*"):
            held += sum("ceiling" in e for e in peer.r.lrange(key, 0, -1))
    else:
        feeder.wait()
    peer.procs.stop(timeout=5)
    out = {"slots": "2..20" if isinstance(peer, Corral) else slots, "phases": phases, "ms": ms,
           "jobs": total, "backlog_gone_s": t_backlog - (t0 + secs), "all_done_s": last - t0,
           "slot_s": slot_s, "peak_slots": peak, "load": round(os.getloadavg()[0], 2)}
    if isinstance(peer, Corral):
        out["ceiling_holds"] = held
    log(f"  {peer.name} burst: {out}")
    return out


def row_burst_median(peer, slots, base, secs, ms, runs):
    """Row 7 RUNS times: the run with the median backlog time, and every
    run's figures beside it."""
    outs = sorted((row_burst(peer, slots, base, secs, ms) for _ in range(runs)),
                  key=lambda o: o["backlog_gone_s"])
    med = dict(outs[len(outs) // 2])
    med["runs"] = [{k: o[k] for k in ("backlog_gone_s", "slot_s", "peak_slots", "load", "ceiling_holds")
                    if k in o} for o in outs]
    return med


CRASH_VARIANTS = {"corral": [None, "settled"], "rq": [None, "retry"], "celery": [None, "acks_late"],
                  "sidekiq": [None], "bullmq": [None]}


def versions():
    v = {}
    for pkg in ("python3-rq", "python3-celery", "python3-kombu", "python3-redis", "ruby-sidekiq",
                "ruby-redis", "redis-server", "ruby", "nodejs"):
        p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        v[pkg] = p.stdout.strip() or "?"
    try:
        with open(os.path.join(HERE, ".node", "node_modules", "bullmq", "package.json")) as f:
            v["bullmq"] = json.load(f)["version"]
    except OSError:
        v["bullmq"] = "?"
    v["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    v["corral"] = subprocess.run([os.path.join(BUILD, "corrald"), "--version"], capture_output=True,
                                 text=True).stdout.strip()
    try:
        v["corral_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return v


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_mib": mem, "kernel": platform.release(),
            "load": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="1,3,4,5,2,6,7")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--small", action="store_true", help="development sizes: 2,000 jobs, 1 run")
    ap.add_argument("--jobs", type=int, help="row 1 jobs (default 20000)")
    ap.add_argument("--runs", type=int, help="rows 1 and 7 runs, median kept (default 3)")
    ap.add_argument("--enqueue-jobs", type=int, help="row 2 jobs (default 5000)")
    ap.add_argument("--lat-jobs", type=int, help="row 3 jobs (default 500)")
    ap.add_argument("--crash-wait", type=int, help="row 5: seconds to wait for a re-run (default 90)")
    ap.add_argument("--outage-jobs", type=int, help="row 6 jobs (default 1000)")
    ap.add_argument("--outage-limit", type=int, help="row 6: seconds to wait for the jobs to end (default 120)")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    jobs = a.jobs or (2000 if a.small else 20000)
    runs = a.runs or (1 if a.small else 3)
    enq = a.enqueue_jobs or (1000 if a.small else 5000)
    lat = a.lat_jobs or (100 if a.small else 500)
    crash_wait = a.crash_wait or (40 if a.small else 90)
    outage_jobs = a.outage_jobs or (300 if a.small else 1000)
    outage_limit = a.outage_limit or 120
    burst_base, burst_secs = 3, (4 if a.small else 5)
    rows = a.rows.split(",")
    try:
        with open(RESULTS) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {"peers": {}}
    if not a.report_only:
        subprocess.run(["sh", os.path.join(HERE, "install.sh")], check=True)
        results["machine"] = machine()
        results["versions"] = versions()
        for k in ("small", "date", "command"):
            results.pop(k, None)
        this = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "command": " ".join(["/usr/bin/python3", "bench/peers/run.py"] + sys.argv[1:]),
                "rows": rows, "peers": a.peers.split(","), "small": a.small,
                "load": round(os.getloadavg()[0], 2)}
        everything = set(rows) >= set("1234567") and set(this["peers"]) >= set(PEERS)
        # A whole run replaces the record of the runs before it.
        results["runs"] = ([] if everything else results.get("runs", [])) + [this]
        t_start = time.monotonic()
        env = Env()
        try:
            if "1" in rows:
                peers = [PEERS[name](env) for name in a.peers.split(",")]
                try:
                    for (name, slots), d in row_drain(peers, jobs, runs).items():
                        res = results["peers"].setdefault(name, {})
                        res["drain" if slots == SLOTS else "drain_wide"] = d
                finally:
                    for peer in peers:
                        peer.procs.stop()
                with open(RESULTS, "w") as f:
                    json.dump(results, f, indent=1)
            for name in a.peers.split(","):
                peer = PEERS[name](env)
                res = results["peers"].setdefault(name, {})
                log(f"{name}")
                try:
                    if "3" in rows or "4" in rows:
                        res.update(row_latency_mem(peer, lat, 10, rows))
                    if "5" in rows:
                        res["crash"] = [row_crash(peer, v, 20, crash_wait) for v in CRASH_VARIANTS[name]]
                    if "2" in rows:
                        res["enqueue"] = row_enqueue(peer, enq)
                    if "7" in rows:
                        if name == "corral":
                            res["burst"] = [row_burst_median(peer, None, burst_base, burst_secs, 300, runs)]
                        else:
                            res["burst"] = [row_burst_median(peer, k, burst_base, burst_secs, 300, runs)
                                            for k in (2, 20)]
                    if "6" in rows:
                        res["outage"] = row_outage(peer, outage_jobs, 30, outage_limit)
                finally:
                    peer.procs.stop()
                this["minutes"] = round((time.monotonic() - t_start) / 60, 1)
                with open(RESULTS, "w") as f:
                    json.dump(results, f, indent=1)
        finally:
            env.close()
    import report
    report.write(results, DOC, IMG)
    log(f"wrote {os.path.relpath(DOC, REPO)}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
