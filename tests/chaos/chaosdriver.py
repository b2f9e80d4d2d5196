"""The chaos driver: a real redis-server (AOF on), two real corrald
processes (as two hosts would) with their real workers, and the AI-service
stand-in, while jobs of every kind flow through two queues and three
priorities and faults are thrown at every part. At the end it checks, from
Redis and from the stand-in's own log, that every job ended as its kind
says, and it explains every job the service answered twice.

Used by tests/chaos/test_chaos.py (the full run), tests/integration/
test_chaos_short.py (a small run inside `make test`) and tests/chaos/soak.py
(time-based). docs/chaos.md describes the run and its figures."""
import ctypes
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (os.path.join(TESTS, "integration"), TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

import redis  # noqa: E402

import aistub  # noqa: E402
# REPO is for the callers (test_chaos.py, soak.py).
from conftest import MODE, REPO, RedisServer, proc_stat, wait_until  # noqa: E402,F401
from test_supervisor import Corrald  # noqa: E402

JOB_QUEUES = ("chat", "embed")  # the producer's jobs
# "brief": served by host B alone, lease 1 s, one attempt; the slow_worker
# and full_redis faults put their own jobs there ("once"), so that a lease
# runs out within the fault and the job ends dead, for good.
BRIEF = "brief"
QUEUES = JOB_QUEUES + (BRIEF,)
PRIORITIES = ("high", "normal", "low")
SVC = "ai"
KINDS = ("fast", "slow", "flaky", "permanent")
PROCESS_FAULTS = ("kill_worker", "stop_worker", "kill_corrald", "restart_redis", "freeze_redis",
                  "slow_worker", "full_redis")
AI_FAULTS = ("ai_fail", "ai_429", "ai_hang")
# Control of calls in flight (docs/protocol.md, "Cancel", "Deadlines"):
# cancel: running jobs cancelled (its own slow job, and a few of the
# producer's), which must end cancelled and stay so; deadline: its own job
# whose answer comes after its deadline_ms, which must end dead "deadline
# exceeded".
CONTROL_FAULTS = ("cancel", "deadline")
FAULTS = PROCESS_FAULTS + AI_FAULTS + CONTROL_FAULTS
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Settings:
    """What a run does; the full chaos run, the short one and the soak
    differ only here."""
    jobs: int = 20000                 # 0 with duration_s: a time-based run
    duration_s: float = 0.0           # soak: enqueue at `rate` for this long
    rate: float = 0.0                 # jobs/s; 0 = spread `jobs` over enqueue_s
    enqueue_s: float = 90.0           # the faults happen while jobs arrive
    seed: int = 1
    mix: dict = field(default_factory=lambda: {"fast": 0.70, "slow": 0.12, "flaky": 0.13,
                                               "permanent": 0.05})
    slow_ms: tuple = (100, 700)
    # Faults: `fault_list` runs exactly these (in this order, spread over
    # the enqueue phase); otherwise one random fault every fault_gap_s.
    fault_list: tuple = ()
    fault_gap_s: tuple = (2.5, 5.0)
    ai_fail_s: float = 10.0
    ai_429_s: float = 5.0
    ai_hang_s: float = 5.0
    # freeze_redis: SIGSTOP redis-server for longer than hang_timeout (and
    # shorter than what is left of a lease at its renewal, lease * 2/3).
    freeze_s: float = 3.0
    # slow_worker: a worker of B holding a "brief" job is SIGSTOPped until
    # that job's lease has run out and it was reclaimed (dead: one
    # attempt), at most this long, then SIGCONTed; B's hang_timeout is
    # longer, so B does not kill it.
    slow_stop_max_s: float = 4.0
    hang_timeout_b: str = "8s"
    # full_redis: maxmemory set to the used memory for this long.
    full_redis_s: float = 4.0
    max_workers: int = 6
    concurrency: int = 4
    hang_timeout: str = "2s"
    job_timeout: str = "3s"
    lease: str = "6s"
    drain_timeout: str = "5s"
    max_attempts: int = 30
    drain_deadline_s: float = 300.0
    # corrald's RSS at the end may exceed the one at the start of the
    # steady state by at most this much (None: measured, not asserted).
    rss_slack_kb: int = 2048
    log_level: str = "info"
    verbose: bool = True


def log(s, msg):
    if s.verbose:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the stand-in, with faults for every request and a log of answers ----


class ChaosHandler(aistub.Handler):
    """aistub's handler, plus: a fleet-wide fault that overrides every
    request's own "stub" (fail, 429, hang), and a log entry per answered
    request: the job's tag, when, the status sent, and which corral-worker
    process sent it (found from the connection's source port)."""

    def setup(self):
        super().setup()
        self.peer_pid = self.server.pid_of_port(self.client_address[1])

    def send_response(self, code, message=None):
        self.sent_code = code
        super().send_response(code, message)

    def do_POST(self):
        if self.path.startswith("/_"):
            return super().do_POST()
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) if length else b""
        try:
            tag = json.loads(raw).get("chaos")
        except (ValueError, AttributeError):
            tag = None
        t0 = time.time()
        self.sent_code = None
        fault = self.server.fault
        t0m = time.monotonic()
        delivered = False
        try:
            if fault is not None and fault[1] > t0m:
                self.fault_answer(fault)
            else:
                body, self.rfile = self.rfile, io.BytesIO(raw)
                try:
                    super().do_POST()
                finally:
                    self.rfile = body
            delivered = True
        finally:
            # An answer whose sending failed (the worker was killed) is
            # logged without its status: it never reached anyone.
            self.server.note(tag, t0, self.sent_code if delivered else None, self.peer_pid,
                             fault[0] if fault is not None and fault[1] > t0m else "job")

    def fault_answer(self, fault):
        kind, until = fault
        if kind == "ai_fail":
            self.send_json(503, {"error": {"message": "chaos: service failing"}})
        elif kind == "ai_429":
            self.send_json(429, {"error": {"message": "chaos: rate limited"}},
                           {"Retry-After": "1"})
        else:  # ai_hang: no answer until the fault ends, then a dropped connection
            time.sleep(max(until - time.monotonic(), 0))
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ChaosStub(aistub.Server):
    def __init__(self, owner_pids):
        super().__init__()
        self.RequestHandlerClass = ChaosHandler
        self.fault = None  # (kind, until monotonic) or None
        self.owner_pids = owner_pids  # () -> pids of this run's workers
        self.sockets = {}  # pid -> set of socket inodes
        self.log_lock = threading.Lock()
        self.entries = {}  # tag -> [(time, code, pid)]
        self.requests = 0
        self.trimmed = 0

    def handle_error(self, request, client_address):
        pass  # connections cut by killed workers are expected here

    def set_fault(self, kind, seconds):
        self.fault = (kind, time.monotonic() + seconds) if kind else None

    def note(self, tag, t, code, pid, via):
        """Logs one request: (arrival, status delivered or None, sender pid,
        "job" when the job's own stub spec answered, else the fault's kind)."""
        with self.log_lock:
            self.requests += 1
            self.entries.setdefault(tag, []).append((t, code, pid, via))
        s = self.stub
        with s.lock:  # aistub keeps every body; a long run needs only counts
            if len(s.bodies) > 1000:
                del s.bodies[:], s.auth[:], s.times[:]

    def answers(self, tag):
        with self.log_lock:
            return list(self.entries.get(tag, ()))

    def forget(self, tags):
        with self.log_lock:
            for t in tags:
                self.entries.pop(t, None)

    def pid_of_port(self, port):
        """The pid of the corral-worker whose socket has this local port on
        loopback, or None: /proc/net/tcp gives the socket's inode, the
        workers' fd tables say who holds it."""
        me = self.server_address[1]
        inode = None
        try:
            with open("/proc/net/tcp") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    lport = int(parts[1].split(":")[1], 16)
                    rport = int(parts[2].split(":")[1], 16)
                    if lport == port and rport == me:
                        inode = parts[9]
                        break
        except OSError:
            return None
        if inode is None:
            return None
        want = f"socket:[{inode}]"
        for refresh in (False, True):
            if refresh:
                self.sockets = {}
                for pid in self.owner_pids():
                    inodes = set()
                    try:
                        for fd in os.listdir(f"/proc/{pid}/fd"):
                            try:
                                inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                            except OSError:
                                pass
                    except OSError:
                        continue
                    self.sockets[pid] = inodes
            for pid, inodes in self.sockets.items():
                if want in inodes:
                    return pid
        return None


# --- processes -------------------------------------------------------------


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def procs_with(text):
    """Live (not zombie) processes whose command line contains text."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        st = proc_stat(int(d))
        if text in cmd and st is not None and st[0] != "Z":
            out.append((int(d), cmd.strip()))
    return out


def set_subreaper(on):
    """Workers of a SIGKILLed corrald are orphans that drain and exit; this
    container's init does not reap, so the driver adopts and reaps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


def sanitized(build):
    with open(os.path.join(build, "corrald"), "rb") as f:
        return b"__asan_init" in f.read()


# --- the run -----------------------------------------------------------------


class Chaos:
    def __init__(self, build, settings, workdir=None):
        self.s = settings
        self.build = build
        self.rng = random.Random(settings.seed)
        self.dir = workdir or tempfile.mkdtemp(prefix="corral-chaos-")
        self.redis = None
        self.stub = None
        self.hosts = {}  # "A"/"B" -> Corrald (B is the one killed and restarted)
        self.corralds = []  # every corrald started
        self.jobs = {}  # tag -> dict(queue, id, kind, prio, fail_times)
        self.jobs_lock = threading.Lock()  # new entries come from two threads
        self.next_tag = 0
        self.events = []  # (time, kind, detail)
        self.killed = {}  # worker pid -> (time, how)
        self.corrald_kills = []  # (time, [worker pids it had])
        self.redis_restarts = []  # (down time, up time)
        self.orphan_status = {}  # pid -> wait status of workers we reaped
        self.counts = {f: 0 for f in FAULTS}
        self.stopped = []  # SIGSTOPped pids not yet seen gone
        self.deck = []  # faults still to come in this round
        self.frozen = None  # redis-server's pid while SIGSTOPped
        self.dup_details = []  # every duplicate: its answers and why
        self.anomalies = []  # allowed, but worth a look: the run's files are kept
        self.lost_enqueues = []  # tags whose acknowledged enqueue Redis lost
        self.expired = []  # jobs whose last error is "lease expired"
        self.slowed = {}  # worker pid -> (SIGSTOP time, SIGCONT time): slow_worker
        self.caught = {}  # tag -> what slow_worker saw of the brief job it let die
        self.full_windows = []  # (start, end) of each full_redis fault
        self.refused = {}  # tag -> the error of an enqueue a full Redis refused
        self.cancelled = {}  # tag -> when the cancel fault cancelled it (time.time())
        self.final_seen = {}  # tag -> (final state, time) when the driver first saw it
        self.next_observe = 0
        self.rss = {}
        self.figures = {}
        self.enqueue_done = threading.Event()
        self.enqueue_error = None
        self.stopping = False
        self.next_reap = 0
        self.on_tick = None  # soak.py: called between faults
        self.t0 = None
        self.san = sanitized(build)

    # -- setup --

    def conf_text(self, key, host):
        s = self.s
        # A kills SIGSTOPped workers as hung (stop_worker); B's hang_timeout
        # outlasts a slow_worker stop, and B alone serves the brief queue,
        # first (a worker reserves queue by queue, in this order: a backlog
        # in the others must not keep a fault's job waiting).
        hang, served = ((s.hang_timeout, JOB_QUEUES) if host == "A" else
                        (s.hang_timeout_b, (BRIEF,) + JOB_QUEUES))
        text = self.redis.redis_section()
        text += (f"[pool]\nmin = 2\nmax = {s.max_workers}\nconcurrency = {s.concurrency}\n"
                 f"drain_timeout = {s.drain_timeout}\nhang_timeout = {hang}\n"
                 f"queues = {', '.join(served)}\n"
                 # The machine is shared: other people's load must not hold
                 # the pool (cpu_ceiling has its own tests).
                 "[scale]\ntick = 250ms\nscale_out_cooldown = 1s\nscale_in_window = 10s\n"
                 "cpu_ceiling = 100%\n")
        for i, q in enumerate(JOB_QUEUES):
            order = "strict" if i == 0 else "weighted\nweights = 6, 3, 1"
            text += (f"[queue {q}]\nhandler = http\nservice = {SVC}\n"
                     f"priorities = {', '.join(PRIORITIES)}\norder = {order}\n"
                     f"max_attempts = {s.max_attempts}\nbackoff = 100ms..1s\n"
                     f"timeout = {s.job_timeout}\nlease = {s.lease}\n")
        # The job timeout outlasts any stop: a resumed worker reports its
        # answer, not a timeout.
        text += (f"[queue {BRIEF}]\nhandler = http\nservice = {SVC}\n"
                 "max_attempts = 1\ntimeout = 60s\nlease = 1s\n")
        text += (f"[service {SVC}]\nurl = {self.stub.url}\napi_key_file = {key}\n"
                 "connect_timeout = 1s\nmax_inflight = 1000\nbreaker_window = 10s\n"
                 "breaker_min_calls = 20\nbreaker_failure_rate = 50%\n"
                 "breaker_open_for = 500ms\nbreaker_open_max = 2s\n"
                 "breaker_half_open_calls = 3\n")
        return text

    def start(self):
        set_subreaper(True)
        self.redis = RedisServer(appendonly=True, mode=MODE)
        self.redis.start()
        self.r = self.redis.client(decode_responses=True, socket_timeout=15)
        self.stub = ChaosStub(self.worker_pids).start()
        key = os.path.join(self.dir, "ai.key")
        with open(key, "w") as f:
            f.write("sk-chaos\n")
        for h in ("A", "B"):
            with open(self.conf(h), "w") as f:
                f.write(self.conf_text(key, h))
            self.start_corrald(h)
        for h in ("A", "B"):
            c = self.hosts[h]
            wait_until(lambda: len(c.workers()) >= 2 or c.proc.poll() is not None,
                       timeout=30, what=f"corrald {h}'s workers")
            assert c.proc.poll() is None, c.logs()[-3000:]
        wait_until(lambda: all(self.r.exists(f"corral:{{{q}}}:conf") for q in QUEUES),
                   timeout=30, what="the queues to be declared")

    def conf(self, h):
        return os.path.join(self.dir, f"host{h}.conf")

    def start_corrald(self, h):
        # Two "hosts" on one machine: each its own heartbeat (HOST@A, HOST@B).
        env = dict(os.environ, CORRAL_LOG_LEVEL=self.s.log_level, CORRAL_INSTANCE=h,
                   CORRAL_WORKER=os.path.join(self.build, "corral-worker"))
        c = Corrald(os.path.join(self.build, "corrald"), self.conf(h),
                    os.path.join(self.dir, f"corrald{h}.log"), env=env)
        self.hosts[h] = c
        self.corralds.append(c)
        return c

    def worker_pids(self):
        return [pid for pid, cmd in procs_with(self.dir) if "corral-worker" in cmd]

    def reap_orphans(self):
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            st = proc_stat(pid)
            if st is None or st[1] != me or any(c.proc.pid == pid for c in self.corralds):
                continue
            if self.redis.proc is not None and self.redis.proc.pid == pid:
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if not f.read().startswith("corral-worker"):
                        continue
                got, status = os.waitpid(pid, os.WNOHANG)
            except (OSError, ChildProcessError):
                continue
            if got == pid:
                self.orphan_status[pid] = status

    def event(self, kind, detail=""):
        t = time.time()
        self.events.append((t, kind, detail))
        log(self.s, f"+{t - self.t0:6.1f}s {kind} {detail}")

    # -- Redis, tolerant of the restarts --

    def retry(self, fn, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
                    redis.ResponseError) as e:
                if isinstance(e, redis.ResponseError) and "LOADING" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- jobs --

    def make_job(self):
        tag = self.new_tag()
        s = self.s
        x = self.rng.random()
        kind = "fast"
        for k in KINDS:
            if x < s.mix[k]:
                kind = k
                break
            x -= s.mix[k]
        payload = {"model": "chaos", "chaos": tag,
                   "messages": [{"role": "user", "content": f"job-{tag}"}]}
        fail_times = 0
        if kind == "slow":
            payload["stub"] = {"delay_ms": self.rng.randint(*s.slow_ms)}
        elif kind == "flaky":
            fail_times = self.rng.randint(1, 3)
            payload["stub"] = {"status": 503, "fail_times": fail_times, "key": f"job-{tag}"}
        elif kind == "permanent":
            payload["stub"] = {"status": 400,
                               "body": {"error": {"message": f"chaos: bad request {tag}"}}}
        q = JOB_QUEUES[tag % 2]
        prio = PRIORITIES[self.rng.randrange(3)]
        with self.jobs_lock:
            self.jobs[tag] = {"queue": q, "id": None, "kind": kind, "prio": prio,
                              "fail_times": fail_times}
        opts = {"priority": prio, "unique_key": f"chaos-{tag}"}
        return tag, q, json.dumps(payload), json.dumps(opts)

    def enqueue_batch(self, batch):
        """One pipeline of enqueues; a batch cut by a Redis restart is sent
        again whole (a loading one, the enqueues it refused): the unique
        keys make the repeats return the same ids. An enqueue refused by a
        full Redis is counted as refused: the application was told, and the
        job must not exist."""
        deadline = time.monotonic() + 120
        while batch:
            def send(batch=batch):
                pipe = self.r.pipeline(transaction=False)
                for _, q, payload, opts in batch:
                    pipe.fcall("corral_enqueue", 1, q, payload, opts)
                return pipe.execute(raise_on_error=False)
            replies = self.retry(send, timeout=120)
            now = time.time()
            again = []
            for job, reply in zip(batch, replies):
                tag = job[0]
                if not isinstance(reply, redis.ResponseError):
                    self.jobs[tag]["id"] = reply
                    self.jobs[tag]["enqueued"] = now
                elif str(reply).startswith("LOADING"):
                    again.append(job)
                elif str(reply).startswith("OOM") and self.in_full(now):
                    self.refused[tag] = str(reply)
                else:
                    raise reply
            batch = again
            if batch:
                if time.monotonic() > deadline:
                    raise AssertionError(f"enqueues still refused after 120 s: {replies[:3]}")
                time.sleep(0.1)

    def new_tag(self):
        with self.jobs_lock:  # the producer thread and the faults make jobs
            self.next_tag += 1
            return self.next_tag - 1

    def make_once(self, delay_ms):
        """A job for the brief queue (one attempt, lease 1 s) whose answer
        comes after delay_ms: a fault's own job, enqueued at once."""
        tag = self.new_tag()
        payload = {"model": "chaos", "chaos": tag, "stub": {"delay_ms": delay_ms},
                   "messages": [{"role": "user", "content": f"job-{tag}"}]}
        with self.jobs_lock:
            self.jobs[tag] = {"queue": BRIEF, "id": None, "kind": "once", "prio": "normal",
                              "fail_times": 0}
        self.enqueue_batch([(tag, BRIEF, json.dumps(payload),
                             json.dumps({"unique_key": f"chaos-{tag}"}))])
        return tag

    def make_own(self, kind, delay_ms, opts):
        """A control fault's own job on the chat queue whose answer comes
        after delay_ms, enqueued at once."""
        tag = self.new_tag()
        payload = {"model": "chaos", "chaos": tag, "stub": {"delay_ms": delay_ms},
                   "messages": [{"role": "user", "content": f"job-{tag}"}]}
        with self.jobs_lock:
            self.jobs[tag] = {"queue": JOB_QUEUES[0], "id": None, "kind": kind,
                              "prio": "high", "fail_times": 0}
        self.enqueue_batch([(tag, JOB_QUEUES[0], json.dumps(payload),
                             json.dumps(dict(opts, unique_key=f"chaos-{tag}",
                                             priority="high")))])
        return tag

    def cancel_fault(self):
        """Cancels the fault's own slow job once it runs (or where it waits
        after 5 s), and up to two of the producer's running jobs."""
        own = self.make_own("cancel", 30000, {})
        deadline = time.monotonic() + 5
        while self.leased_to(own) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        by_id = {(j["queue"], j["id"]): t for t, j in list(self.jobs.items())}
        picked = [own]
        try:
            for q in JOB_QUEUES:
                for i in self.r.zrange(f"corral:{{{q}}}:active", 0, 20):
                    t = by_id.get((q, i))
                    if t is not None and t != own and len(picked) < 3 and \
                            self.jobs[t]["kind"] != "deadline":
                        picked.append(t)
        except redis.RedisError:
            pass
        for t in picked:
            j = self.jobs[t]
            try:
                self.retry(lambda: self.r.fcall("corral_cancel", 1, j["queue"], j["id"]),
                           timeout=30)
                self.cancelled[t] = time.time()
            except redis.ResponseError as e:  # ended in the meantime
                if t == own or not str(e).startswith("FINISHED"):
                    raise
        self.event("cancel", f"jobs {sorted(self.cancelled.keys() & set(picked))}")

    def leased_to(self, tag):
        """The pid of the worker a job is leased to while it is active, or
        None."""
        j = self.jobs[tag]
        if j["id"] is None:
            return None
        st, w = self.r.hmget(f"corral:{{{j['queue']}}}:job:{j['id']}", "state", "worker")
        if st != "active" or not w or ":" not in w:
            return None
        return int(w.rsplit(":", 1)[1])

    def producer(self):
        s = self.s
        try:
            start = time.monotonic()
            if s.duration_s:
                total, rate = None, s.rate
            else:
                total = s.jobs
                rate = s.rate or s.jobs / max(s.enqueue_s, 0.1)
            made = 0
            while not self.stopping:
                elapsed = time.monotonic() - start
                due = int(elapsed * rate) + 1
                if total is not None:
                    due = min(due, total)
                elif elapsed >= s.duration_s:
                    break
                if made < due:
                    batch = [self.make_job() for _ in range(min(due - made, 500))]
                    self.enqueue_batch(batch)
                    made += len(batch)
                elif total is not None and made >= total:
                    break
                else:
                    time.sleep(0.02)
        except Exception as e:  # reported by the main loop
            self.enqueue_error = e
        finally:
            self.enqueue_done.set()

    # -- faults --

    def busy_workers(self):
        """Pids of workers (children of a live corrald) holding a lease."""
        mine = {}
        for h, c in self.hosts.items():
            if c.proc.poll() is None:
                for p in c.workers():
                    mine[p] = h
        holders = set()
        try:
            for q in QUEUES:
                K = f"corral:{{{q}}}"
                ids = self.r.zrange(f"{K}:active", 0, 99)
                pipe = self.r.pipeline(transaction=False)
                for i in ids:
                    pipe.hget(f"{K}:job:{i}", "worker")
                for w in pipe.execute():
                    if w and ":" in w:
                        holders.add(int(w.rsplit(":", 1)[1]))
        except redis.RedisError:
            pass
        return mine, sorted(p for p in holders if p in mine)

    def fault(self, kind):
        self.counts[kind] += 1
        if kind == "kill_worker":
            # A busy one if any becomes busy soon (none is while the
            # breaker holds every call back).
            deadline = time.monotonic() + 3
            while True:
                mine, busy = self.busy_workers()
                if busy or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            pool = busy or sorted(mine)
            if not pool:
                self.counts[kind] -= 1
                return
            pid = self.rng.choice(pool)
            os.kill(pid, signal.SIGKILL)
            self.killed[pid] = (time.time(), "SIGKILL")
            self.event(kind, f"pid {pid} of {mine[pid]}{' (busy)' if busy else ' (idle)'}")
        elif kind == "stop_worker":
            # Only host A's: A is never killed, so it is there to see the
            # hang and kill the worker; a stopped orphan would stay forever.
            mine, busy = self.busy_workers()
            pool = [p for p in busy if mine[p] == "A"] or \
                [p for p in mine if mine[p] == "A"]
            if not pool:
                self.counts[kind] -= 1
                return
            pid = self.rng.choice(sorted(pool))
            os.kill(pid, signal.SIGSTOP)
            self.killed[pid] = (time.time(), "SIGSTOP, then killed as hung")
            self.stopped.append((pid, time.monotonic()))
            self.event(kind, f"pid {pid} of A")
        elif kind == "kill_corrald":
            c = self.hosts["B"]
            had = c.workers()
            c.proc.kill()
            c.proc.wait()
            c.out.close()
            self.corrald_kills.append((time.time(), had))
            self.event(kind, f"corrald B pid {c.proc.pid} with workers {had}")
            time.sleep(self.rng.uniform(0.1, 0.5))  # a supervisor restart, as systemd would
            n = self.start_corrald("B")
            self.event("restart_corrald", f"corrald B pid {n.proc.pid}")
        elif kind == "restart_redis":
            down = time.time()
            self.event(kind, "kill -9, then start from the AOF")
            self.redis.stop(kill=True)
            time.sleep(self.rng.uniform(0.1, 0.8))  # Redis is away a moment
            self.redis.start()
            self.redis_restarts.append((down, time.time()))
            self.event("redis_up", f"after {time.time() - down:.2f} s")
        elif kind == "freeze_redis":
            # A stalled server (swapping, a slow fsync): every client's calls
            # wait. corrald's loop waits in them too; nothing may be killed.
            self.event(kind, f"SIGSTOP redis-server for {self.s.freeze_s:g} s")
            self.frozen = self.redis.proc.pid
            os.kill(self.frozen, signal.SIGSTOP)
            try:
                time.sleep(self.s.freeze_s)
            finally:
                os.kill(self.frozen, signal.SIGCONT)
                self.frozen = None
            self.event("redis_thawed")
        elif kind == "cancel":
            self.cancel_fault()
        elif kind == "deadline":
            tag = self.make_own("deadline", 5000, {"deadline_ms": 400})
            self.event(kind, f"job {tag}: answer after 5 s, deadline 400 ms")
        elif kind == "slow_worker":
            self.slow_worker()
        elif kind == "full_redis":
            self.full_redis()
        else:
            secs = {"ai_fail": self.s.ai_fail_s, "ai_429": self.s.ai_429_s,
                    "ai_hang": self.s.ai_hang_s}[kind]
            self.stub.set_fault(kind, secs)
            self.ai_fault_until = time.monotonic() + secs
            self.event(kind, f"for {secs:g} s")

    def slow_worker(self):
        """A worker slow but alive: SIGSTOP the worker of B that runs a
        brief job (one attempt, lease 1 s) until the job's lease ran out
        and B reclaimed it, dead, then SIGCONT. Its answer is waiting for
        it, and its lease timer is overdue: its late renewal and outcome
        must be refused, and the job must stay dead."""
        # Answered after 1 s: the worker is stopped before its answer comes
        # (an answer that came first would be acked before the stop).
        tag = self.make_once(1000)
        deadline = time.monotonic() + 10  # an open breaker holds it back a while
        pid = None
        while pid is None and time.monotonic() < deadline:
            pid = self.leased_to(tag)
            if pid is None:
                time.sleep(0.02)
        workers_b = self.hosts["B"].workers() if self.hosts["B"].proc.poll() is None else []
        if pid is None or pid not in workers_b:
            self.counts["slow_worker"] -= 1
            self.event("slow_worker", f"skipped: brief job {tag} not taken by a worker of B")
            return
        os.kill(pid, signal.SIGSTOP)
        t_stop = time.time()
        self.event("slow_worker", f"SIGSTOP pid {pid} of B, holding brief job {tag}")
        state = None
        try:
            j = self.jobs[tag]
            until = time.monotonic() + self.s.slow_stop_max_s
            while time.monotonic() < until:
                state = self.r.hget(f"corral:{{{BRIEF}}}:job:{j['id']}", "state")
                if state == "dead":
                    break
                time.sleep(0.02)
        finally:
            os.kill(pid, signal.SIGCONT)
            self.slowed[pid] = (t_stop, time.time())
        if state == "dead":
            self.final_seen[tag] = ("dead", time.time())
            self.caught[tag] = {"pid": pid, "stopped_s": round(time.time() - t_stop, 2)}
        self.event("slow_worker_resumed", f"pid {pid}; brief job {tag} was {state}")

    def full_redis(self):
        """Redis at maxmemory for a while (noeviction): enqueues are refused
        with an error the application sees, so are the workers' writes,
        while a call that finds a little room may get through. A brief job
        is running when it starts, so a lease runs out meanwhile."""
        tag = self.make_once(500)
        deadline = time.monotonic() + 5
        while self.leased_to(tag) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        used = int(self.r.info("memory")["used_memory"])
        window = [time.time(), None]
        self.full_windows.append(window)
        self.r.config_set("maxmemory-policy", "noeviction")
        self.r.config_set("maxmemory", used)
        try:
            try:
                self.r.set("chaos:full-probe", "x" * 1024)
                probe = "a 1 KB SET got through"
            except redis.ResponseError as e:
                probe = f"a 1 KB SET refused: {e}"
            self.event("full_redis", f"maxmemory {used} for {self.s.full_redis_s:g} s ({probe}); "
                                     f"brief job {tag}")
            time.sleep(self.s.full_redis_s)
        finally:
            self.r.config_set("maxmemory", 0)
            window[1] = time.time()
            self.r.delete("chaos:full-probe")
        self.event("redis_has_room", f"{len(self.refused)} enqueues refused so far")

    def in_full(self, t, after=1.0):
        """Whether t falls in a full_redis fault (or just after it)."""
        return any(a <= t <= (b if b is not None else t) + after for a, b in self.full_windows)

    def observe(self):
        """Notes the first final state the driver sees of each job, to
        check at the end that none changed (done, dead, cancelled are
        final)."""
        with self.jobs_lock:  # the producer thread adds jobs meanwhile
            tags = [t for t, j in self.jobs.items()
                    if j["id"] is not None and t not in self.final_seen]
        try:
            for i in range(0, len(tags), 2000):
                chunk = tags[i:i + 2000]
                pipe = self.r.pipeline(transaction=False)
                for t in chunk:
                    j = self.jobs[t]
                    pipe.hget(f"corral:{{{j['queue']}}}:job:{j['id']}", "state")
                now = time.time()
                for t, st in zip(chunk, pipe.execute()):
                    if st in ("done", "dead", "cancelled"):
                        self.final_seen[t] = (st, now)
        except redis.RedisError:
            pass  # Redis is away or loading: next time

    def housekeeping(self):
        """Between faults: reap orphans, see that SIGSTOPped workers were
        killed as hung within hang_timeout plus a margin."""
        if time.monotonic() >= self.next_reap:
            self.reap_orphans()
            self.next_reap = time.monotonic() + 0.5
        if time.monotonic() >= self.next_observe:
            self.observe()
            self.next_observe = time.monotonic() + 1.0
        if self.on_tick is not None:
            self.on_tick(self)
        if self.enqueue_error is not None:
            raise self.enqueue_error
        for c in self.hosts.values():
            assert c.proc.poll() is None, f"corrald exited: {c.proc.returncode}\n" + \
                c.logs()[-3000:]
        still = []
        for pid, t in self.stopped:
            st = proc_stat(pid)
            if st is None or st[0] == "Z":
                continue
            assert time.monotonic() - t < 30, f"SIGSTOPped worker {pid} was never killed as hung"
            still.append((pid, t))
        self.stopped = still

    def pick_fault(self):
        """The next fault from a shuffled deck of all kinds (so each comes
        round again and again), skipping the stand-in's faults while one is
        under way."""
        ai_busy = time.monotonic() < getattr(self, "ai_fault_until", 0)
        for _ in range(2):
            for i, kind in enumerate(self.deck):
                if not (ai_busy and kind in AI_FAULTS):
                    return self.deck.pop(i)
            self.deck += self.rng.sample(FAULTS, len(FAULTS))
        return self.rng.choice(PROCESS_FAULTS)

    # -- the run --

    def run(self):
        s = self.s
        self.stopping = False
        self.t0 = time.time()
        self.start()
        log(s, f"dir {self.dir}, redis {self.redis.dir}, stub {self.stub.url}, mode {MODE}, "
               f"sanitizer {self.san}")
        prod = threading.Thread(target=self.producer, daemon=True)
        prod.start()
        # Steady state: the pool has started and jobs flow.
        wait_until(lambda: self.done_count() >= max(20, min(self.s.jobs or 200, 2000) // 20),
                   timeout=60, interval=0.1, what="the first jobs to complete")
        self.sample_rss("start")
        faults = list(s.fault_list)
        if faults:
            span = s.enqueue_s if not s.duration_s else s.duration_s
            gap = span / (len(faults) + 1)
            next_at = time.monotonic() + gap * 0.5
        else:
            next_at = time.monotonic() + self.rng.uniform(*s.fault_gap_s)
        while True:
            self.housekeeping()
            finished = self.enqueue_done.is_set()
            now = time.monotonic()
            if s.fault_list:
                if not faults and finished:
                    break
                if faults and now >= next_at:
                    self.fault(faults.pop(0))
                    next_at = time.monotonic() + gap
                    continue
            else:
                if finished:
                    break
                if now >= next_at:
                    self.fault(self.pick_fault())
                    next_at = time.monotonic() + self.rng.uniform(*s.fault_gap_s)
                    continue
            time.sleep(0.05)
        if self.enqueue_error is not None:
            raise self.enqueue_error
        self.enqueued_at = time.time()
        # Any fault of the stand-in still under way ends on its own clock;
        # the faults are over once it has.
        while time.monotonic() < getattr(self, "ai_fault_until", 0):
            self.housekeeping()
            time.sleep(0.05)
        self.stub.set_fault(None, 0)
        self.faults_over_at = time.time()
        self.event("faults over", f"{len(self.jobs)} jobs enqueued")
        self.drain()
        self.sample_rss("end")

    def done_count(self):
        try:
            return sum(int(self.r.hget(f"corral:{{{q}}}:st:{m}", "done") or 0)
                       for q in QUEUES for m in self.minutes())
        except redis.RedisError:
            return 0

    def minutes(self):
        now = int(time.time() // 60)
        return range(int(self.t0 // 60) - 1, now + 2)

    def states(self, tags):
        def read():
            pipe = self.r.pipeline(transaction=False)
            for t in tags:
                j = self.jobs[t]
                pipe.hget(f"corral:{{{j['queue']}}}:job:{j['id']}", "state")
            return pipe.execute()
        return dict(zip(tags, self.retry(read)))

    def drain(self):
        """Waits until every job is done or dead, with a deadline."""
        open_tags = [t for t in self.jobs if t not in self.refused]
        deadline = time.monotonic() + self.s.drain_deadline_s
        next_note = time.monotonic() + 5
        while open_tags:
            self.housekeeping()
            st = self.states(open_tags)
            now = time.time()
            for t in open_tags:
                if st[t] in ("done", "dead", "cancelled") and t not in self.final_seen:
                    self.final_seen[t] = (st[t], now)
            # A job gone from Redis ends here when a kill -9 may have lost
            # its enqueue (verify counts it); otherwise it stays open.
            open_tags = [t for t in open_tags
                         if st[t] not in ("done", "dead", "cancelled") and not (
                             st[t] is None and self.aof_loss(self.jobs[t]["enqueued"]))]
            if not open_tags:
                break
            if time.monotonic() >= next_note:
                next_note += 5
                by = {}
                for t in open_tags:
                    by[st[t]] = by.get(st[t], 0) + 1
                b = json.loads(self.retry(lambda: self.r.fcall_ro("corral_breaker", 1, SVC)))
                hb = self.retry(lambda: self.r.hget(f"corral:host:{socket.gethostname()}@A",
                                                    "last_decision"))
                log(self.s, f"draining: {len(open_tags)} jobs open {by}; breaker {b['state']}; "
                            f"workers {len(self.worker_pids())}; corrald A's last decision: {hb}")
            if time.monotonic() > deadline:
                stuck = [(t, self.jobs[t], self.job(t)) for t in open_tags[:20]]
                raise AssertionError(
                    f"{len(open_tags)} jobs did not end within {self.s.drain_deadline_s} s "
                    f"after the faults; first ones (tag, job, Redis state):\n" +
                    "\n".join(map(str, stuck)))
            time.sleep(0.25)
        self.drained_at = time.time()
        self.event("drained", f"{self.drained_at - self.faults_over_at:.1f} s after the faults")

    def job(self, tag):
        j = self.jobs[tag]
        raw = self.retry(lambda: self.r.fcall_ro("corral_job", 1, j["queue"], j["id"]))
        return json.loads(raw) if raw else None

    def sample_rss(self, when):
        a = self.hosts["A"].proc.pid
        self.rss[when] = {"A": proc_rss_kb(a), "B": proc_rss_kb(self.hosts["B"].proc.pid),
                          "workers": sorted(filter(None, (proc_rss_kb(p)
                                                          for p in self.worker_pids())))}
        log(self.s, f"RSS {when}: corrald A {self.rss[when]['A']} kB, B {self.rss[when]['B']} "
                    f"kB, workers {self.rss[when]['workers']} kB")

    # -- the checks --

    def verify(self):
        """Every job's end state and reason, the stand-in's log against
        Redis, duplicates and their causes. Returns the figures; raises
        AssertionError naming every job that is wrong."""
        problems = self.check_deaths()
        tags = sorted(t for t in self.jobs if t not in self.refused)
        problems += self.check_refused()
        full = {}
        for i in range(0, len(tags), 1000):
            chunk = tags[i:i + 1000]

            def read(chunk=chunk):
                pipe = self.r.pipeline(transaction=False)
                for t in chunk:
                    j = self.jobs[t]
                    pipe.fcall_ro("corral_job", 1, j["queue"], j["id"])
                return pipe.execute()
            for t, raw in zip(chunk, self.retry(read)):
                full[t] = json.loads(raw) if raw else None
        dups = []
        reasons = {}
        done = dead = cancelled = 0
        for t in tags:
            j, rj = self.jobs[t], full[t]
            answers = self.stub.answers(t)
            ok = [a for a in answers if a[1] is not None and 200 <= a[1] < 300]
            if rj is None:
                if self.aof_loss(j["enqueued"]):
                    # Acknowledged, then lost with the kill -9: with
                    # appendfsync everysec Redis may hold writes back while a
                    # slow fsync runs, and answers anyway (up to 2 s).
                    self.anomalies.append(f"job {t}: enqueue lost with redis-server's AOF")
                    self.lost_enqueues.append(t)
                else:
                    problems.append(f"job {t} ({j}): gone from Redis")
                continue
            if t in self.final_seen and rj["state"] != self.final_seen[t][0]:
                seen, when = self.final_seen[t]
                what = (f"job {t} ({j['kind']}): final state changed: {seen} at "
                        f"+{when - self.t0:.1f} s, {rj['state']} at the end: {rj}")
                if self.aof_loss(when):
                    self.anomalies.append(what + " (a kill -9 of redis-server right after)")
                else:
                    problems.append(what)
            if t in self.caught and (rj["state"] != "dead" or
                                     not str(rj.get("error", "")).startswith("lease expired")):
                problems.append(f"job {t} (once): its worker was stopped past its lease and the "
                                f"job reclaimed dead; a late renewal or outcome of that run must "
                                f"be refused, but the job is {rj['state']}: {rj}")
            if t in self.cancelled:
                if rj["state"] == "cancelled":
                    cancelled += 1
                    continue
                what = f"job {t} ({j['kind']}): cancelled, but {rj['state']} at the end: {rj}"
                if not self.aof_loss(self.cancelled[t], after=2.0):
                    problems.append(what)
                    continue
                self.anomalies.append(what + " (a kill -9 of redis-server right after)")
                del self.cancelled[t]
            if j["kind"] == "deadline":
                if rj["state"] != "dead" or rj.get("error") != "deadline exceeded":
                    problems.append(f"job {t} (deadline) should be dead, deadline exceeded: {rj}")
                dead += rj["state"] == "dead"
                continue
            if j["kind"] == "once" and rj["state"] == "dead":
                # One attempt: a lease that ran out (slow_worker, full_redis)
                # or a worker killed under it ends it dead, and that is final.
                dead += 1
                continue
            if j["kind"] == "permanent":
                if rj["state"] != "dead" or not str(rj.get("error", "")).startswith("HTTP 400"):
                    problems.append(f"job {t} ({j['kind']}) should be dead with HTTP 400: {rj}")
                dead += rj["state"] == "dead"
                continue
            err = str(rj.get("error", ""))
            if err.startswith("lease expired"):
                # The last run before the kept one lost its lease without its
                # worker being seen to die: was that worker killed, and did
                # it ever call the service for this job?
                m = re.search(r"worker \S+:(\d+),", err)
                pid = int(m.group(1)) if m else None
                self.expired.append({"tag": t, "queue": j["queue"], "id": j["id"], "pid": pid,
                                     "worker_killed": pid in self.killed,
                                     "worker_called": any(a[2] == pid for a in answers)})
                if pid not in self.killed and pid not in self.slowed and not self.full_windows:
                    self.anomalies.append(f"job {t}: lease of live worker {pid} expired")
            if rj["state"] != "done":
                problems.append(f"job {t} ({j['kind']}) should be done: {rj}")
                continue
            done += 1
            if rj.get("result", "").find(f"echo: job-{t}\"") < 0:
                problems.append(f"job {t}: result is not the service's answer: {rj.get('result')}")
            if not ok:
                problems.append(f"job {t}: done, but the service never answered it 2xx: "
                                f"{answers} {rj}")
                continue
            if j["kind"] == "flaky":
                # The stand-in fails the first fail_times requests that reach
                # the job's own spec (whether or not the answer got through).
                own = sum(1 for a in answers if a[3] == "job")
                if own < j["fail_times"] + 1:
                    problems.append(f"job {t}: flaky x{j['fail_times']} but the service "
                                    f"saw only {own} requests: {answers}")
            if len(ok) > 1:
                why = self.explain(t, rj, ok)
                if why is None:
                    problems.append(f"job {t} answered 2xx {len(ok)} times, not explained by "
                                    f"a crash: answers {ok}, job {rj}")
                else:
                    dups.append((t, len(ok) - 1, why))
                    self.dup_details.append({
                        "tag": t, "queue": j["queue"], "id": j["id"], "causes": why,
                        "answers": [(round(a[0] - self.t0, 3), *a[1:]) for a in answers],
                        "kept_worker": rj.get("worker"), "attempts": rj.get("attempts"),
                        "run": rj.get("run"), "error": str(rj.get("error", ""))[:120]})
                    for w in why:
                        reasons[w] = reasons.get(w, 0) + 1
                        if w.startswith("outcome lost") or w.startswith("lease"):
                            self.anomalies.append(f"job {t}: a duplicate for {w}")
        # Redis's own counters: each job was recorded done, or dead, once.
        counted = {"done": 0, "dead": 0}
        for q in QUEUES:
            for m in self.minutes():
                for f, n in zip(counted, self.r.hmget(f"corral:{{{q}}}:st:{m}", *counted)):
                    counted[f] += int(n or 0)
        if counted["done"] != done:
            problems.append(f"Redis counted {counted['done']} completions for {done} done jobs")
        if counted["dead"] != dead:
            problems.append(f"Redis counted {counted['dead']} deaths for {dead} dead jobs")
        for q in QUEUES:
            K = f"corral:{{{q}}}"
            left = {k: self.r.zcard(f"{K}:{k}") for k in ("active", "sched")}
            left.update({f"q:{i}": self.r.llen(f"{K}:q:{i}") for i in range(3)})
            if any(left.values()):
                problems.append(f"queue {q} not empty at the end: {left}")
            deadset = set(self.r.lrange(f"{K}:dead", 0, -1))
            want = {self.jobs[t]["id"] for t in tags
                    if self.jobs[t]["queue"] == q and t not in self.lost_enqueues and
                    t not in self.cancelled and
                    (self.jobs[t]["kind"] in ("permanent", "deadline") or
                     self.jobs[t]["kind"] == "once" and full[t]["state"] == "dead")}
            if deadset != want:
                problems.append(f"queue {q}: dead list differs from the permanently failing "
                                f"jobs and the brief jobs that died: extra "
                                f"{sorted(deadset - want)[:20]}, missing "
                                f"{sorted(want - deadset)[:20]}")
        kinds = {k: sum(1 for j in self.jobs.values() if j["kind"] == k)
                 for k in KINDS + ("once",) + CONTROL_FAULTS}
        with self.stub.log_lock:
            every = [a for v in self.stub.entries.values() for a in v]
        unknown = sum(1 for a in every if a[2] is None)
        self.figures["answers_sender_unknown"] = unknown
        if every and unknown > len(every) // 10:
            problems.append(f"the stand-in could not tell the sender of {unknown} of "
                            f"{len(every)} requests")
        self.figures.update({
            "jobs": len(tags), "kinds": kinds, "done": done, "dead": dead, "cancelled": cancelled,
            "requests": self.stub.requests,
            "faults": dict(self.counts),
            "duplicates": sum(n for _, n, _ in dups), "duplicate_jobs": len(dups),
            "duplicate_reasons": reasons,
            "duplicate_details": self.dup_details,
            "lease_expired_jobs": self.expired,
            "enqueues_lost_with_redis": self.lost_enqueues,
            "enqueues_refused_by_full_redis": len(self.refused),
            "brief_jobs_left_dead_by_slow_worker": self.caught,
            "anomalies": self.anomalies,
        })
        assert not problems, f"{len(problems)} problems (seed {self.s.seed}, dir " \
            f"{self.dir}):\n" + "\n".join(problems[:40])
        return self.figures

    def check_refused(self):
        """An enqueue a full Redis refused was answered with an error that
        says so, and created nothing."""
        problems = []
        for t, err in self.refused.items():
            q = self.jobs[t]["queue"]
            if "OOM" not in err or "maxmemory" not in err:
                problems.append(f"job {t}: enqueue refused with an unclear error: {err}")
            if self.retry(lambda: self.r.exists(f"corral:{{{q}}}:uniq:chaos-{t}")):
                problems.append(f"job {t}: its enqueue was refused ({err}), yet it exists")
        return problems

    def explain(self, tag, rj, ok):
        """Why a job was answered 2xx more than once: every answer but one
        from the worker whose result Redis kept must belong to a run that a
        crash cut short. Returns the list of causes, or None."""
        keeper = int(str(rj.get("worker", "0:0")).rsplit(":", 1)[1])
        rest = list(ok)
        for i, a in enumerate(rest):
            if a[2] == keeper:
                del rest[i]
                break
        else:
            rest = rest[1:]  # the kept run's sender was not identified
        causes = []
        for t, code, pid, _ in rest:
            cause = None
            if pid in self.killed and self.killed[pid][0] >= t - 0.5:
                cause = "worker " + ("SIGKILLed" if self.killed[pid][1] == "SIGKILL"
                                     else "SIGSTOPped and killed as hung")
            elif pid in self.hung_unplanned:
                cause = "worker killed as hung by corrald (not stopped by the driver)"
            elif pid is not None and self.orphan_status.get(pid, 0) != 0:
                cause = "worker of a SIGKILLed corrald, stopped by drain_timeout"
            elif pid in self.slowed and t <= self.slowed[pid][1] + 1.0:
                cause = "worker SIGSTOPped past its lease, its job run again meanwhile"
            elif self.in_full(t, after=0.5) or any(a - 1.0 <= t <= a for a, _ in self.full_windows):
                cause = "outcome refused by a full Redis (maxmemory), lease ran out meanwhile"
            elif self.aof_loss(t, before=3.0, after=1.0):
                cause = "outcome lost with redis-server (kill -9, appendfsync everysec)"
            elif f"queue={rj['queue']} id={rj['id']} " in self.lease_lost_lines():
                cause = "lease lost"
            if cause is None:
                return None
            causes.append(cause)
        return causes

    def corrald_logs(self):
        text = ""
        for h in ("A", "B"):
            with open(os.path.join(self.dir, f"corrald{h}.log"), errors="replace") as f:
                text += f.read()
        return text

    def check_deaths(self):
        """Every worker that died was killed by the driver, or SIGSTOPped by
        it and then killed as hung by its corrald: anything else is a crash.
        Workers that corrald killed as hung although nobody stopped them are
        counted (their runs count as cut by a crash)."""
        text = self.corrald_logs()
        problems = []
        self.hung_unplanned = set()
        for pid in map(int, re.findall(r"worker hung: [^\n]* worker=\S+:(\d+) ", text)):
            if pid not in self.killed:
                self.hung_unplanned.add(pid)
        for pid, status in re.findall(r"worker died worker=\S+:(\d+) status=\"([^\"]*)\"", text):
            pid = int(pid)
            if status == "signal 9" and (pid in self.killed or pid in self.hung_unplanned):
                continue
            problems.append(f"worker {pid} died unasked: {status}; its lines:\n" + "\n".join(
                line for line in text.splitlines() if f":{pid} " in line or f"[{pid}]" in line))
        for pid, st in self.orphan_status.items():
            # Workers of a SIGKILLed corrald drain: exit 0, or 1 when
            # drain_timeout cut them short; a signal is a crash, but for the
            # PDEATHSIG SIGTERM that can reach a worker still starting, before
            # its handler is in place (it has no job yet then).
            if os.WIFSIGNALED(st) and pid not in self.killed and \
                    os.WTERMSIG(st) != signal.SIGTERM:
                problems.append(f"orphaned worker {pid} was killed by signal {os.WTERMSIG(st)}")
        orphans = list(self.orphan_status.values())
        self.figures["orphaned_workers"] = {
            "drained (exit 0)": sum(1 for st in orphans if os.WIFEXITED(st) and
                                    os.WEXITSTATUS(st) == 0),
            "cut by drain_timeout (exit 1)": sum(1 for st in orphans if os.WIFEXITED(st) and
                                                 os.WEXITSTATUS(st) == 1),
            "SIGTERM while starting": sum(1 for st in orphans if os.WIFSIGNALED(st) and
                                          os.WTERMSIG(st) == signal.SIGTERM),
            "other": sum(1 for st in orphans if not os.WIFEXITED(st) and not (
                os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGTERM) or
                os.WIFEXITED(st) and os.WEXITSTATUS(st) not in (0, 1))}
        self.figures["workers_killed_as_hung_unasked"] = [
            line for line in text.splitlines() if "worker hung" in line and
            int(line.rsplit(":", 1)[1].split()[0]) in self.hung_unplanned]
        if self.hung_unplanned:
            # A worker is silent on fd 3 only when stopped or wedged: killing
            # a healthy one cuts its runs for nothing (how corrald behaved
            # after its own loop waited on a stalled Redis, before 8dd945e).
            problems.append("workers killed as hung that nobody stopped:\n" + "\n".join(
                self.figures["workers_killed_as_hung_unasked"]))
        # Leases that ran out rather than being handed back when their
        # worker died: a lease granted to a worker that never learnt of it
        # (a reserve whose reply was lost with Redis), or an orphan's.
        self.figures["leases_expired"] = sum(
            int(n) for n in re.findall(r"requeued jobs whose lease expired queue=\S+ jobs=(\d+)",
                                       text))
        return problems

    def aof_loss(self, t, before=3.0, after=0.0):
        """Whether something written at t could have been lost by a kill -9
        of redis-server: with appendfsync everysec, writes made while a slow
        fsync runs are answered but reach the AOF up to 2 s later."""
        return any(d - before <= t <= u + after for d, u in self.redis_restarts)

    def lease_lost_lines(self):
        if not hasattr(self, "_lease_lost"):
            self._lease_lost = "".join(line for line in self.corrald_logs().splitlines(True)
                                       if "lease lost" in line or
                                       "lease was reclaimed" in line)
        return self._lease_lost

    # -- the end --

    def stop(self):
        """SIGTERM to both corralds (each must drain and exit 0), then no
        process of the run may be left. Always tears everything down."""
        errors = []
        self.stopping = True
        try:
            if self.stub is not None:
                self.stub.set_fault(None, 0)
            for h, c in self.hosts.items():
                rc = c.stop(timeout=30) if c.proc.poll() is None else c.proc.returncode
                if rc != 0 and not errors:
                    errors.append(f"corrald {h} exited {rc}")
            deadline = time.monotonic() + 15
            while True:
                self.reap_orphans()
                left = procs_with(self.dir)
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if left:
                errors.append(f"processes left behind: {left}")
            for c in self.corralds:
                text = open(c.log, errors="replace").read()
                if "Sanitizer" in text or "runtime error" in text:
                    errors.append(f"sanitizer report in {c.log}")
        finally:
            for pid, _ in procs_with(self.dir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for c in self.corralds:
                if c.proc.poll() is None:
                    c.proc.kill()
                    c.proc.wait()
                if not c.out.closed:
                    c.out.close()
            self.reap_orphans()
            set_subreaper(False)
            if self.stub is not None:
                self.stub.stop()
            if self.redis is not None:
                self.redis.cleanup()
        return errors

    def report(self):
        f = self.figures
        f["seed"] = self.s.seed
        f["kills"] = {"workers SIGKILLed": self.counts["kill_worker"],
                      "workers SIGSTOPped (killed as hung)": self.counts["stop_worker"],
                      "corrald SIGKILLed and restarted": self.counts["kill_corrald"],
                      "redis-server kill -9 and restarted": self.counts["restart_redis"],
                      "redis-server SIGSTOPped (frozen)": self.counts["freeze_redis"],
                      "workers SIGSTOPped past a lease, then resumed": self.counts["slow_worker"],
                      "redis-server at maxmemory": self.counts["full_redis"]}
        f["ai_faults"] = {k: self.counts[k] for k in AI_FAULTS}
        f["run_s"] = round(self.drained_at - self.t0, 1)
        f["drain_s"] = round(self.drained_at - self.faults_over_at, 1)
        f["rss_kb"] = {w: {"corrald A": v["A"], "corrald B": v["B"],
                           "workers max": max(v["workers"], default=None)}
                       for w, v in self.rss.items()}
        return f

    def check_rss(self):
        a0, a1 = self.rss["start"]["A"], self.rss["end"]["A"]
        if self.s.rss_slack_kb is None or self.san:
            return
        assert a1 <= a0 + self.s.rss_slack_kb, \
            f"corrald A's RSS grew from {a0} kB to {a1} kB (slack {self.s.rss_slack_kb} kB)"


def run(build, settings):
    """A whole run: start, faults, drain, checks, teardown. Returns the
    figures; raises AssertionError on any finding."""
    ch = Chaos(build, settings)
    try:
        ch.run()
        ch.verify()
    except BaseException:
        errors = ch.stop()
        if errors:
            print("also:", errors, file=sys.stderr)
        print(f"logs kept in {ch.dir}", file=sys.stderr)
        raise
    keep = os.environ.get("CHAOS_KEEP") or ch.anomalies
    if keep:
        ch.redis.cleanup = lambda: ch.redis.stop(kill=True)  # keep the AOF too
    errors = ch.stop()
    assert not errors, errors
    fig = ch.report()
    ch.check_rss()
    if settings.verbose:
        print("figures:\n" + "\n".join(f"  {k}: {json.dumps(v)}" for k, v in fig.items()),
              flush=True)
    if keep:
        print(f"kept {ch.dir} and {ch.redis.dir}", flush=True)
    else:
        shutil.rmtree(ch.dir, ignore_errors=True)
    return fig
