"""The failover chaos run (make chaos-failover; a short one in make test):
jobs flow over the http stand-in through a real corrald and its workers
while the Redis under them fails over, in two phases.

  sentinel  a master, a replica and three redis-sentinel processes
            (tests/integration/hafixtures.py); corrald finds the master
            through the sentinels. Faults, in turn: SENTINEL FAILOVER; kill -9
            of the master (started again as a replica, as a host that
            reboots); SIGSTOP of the master past down-after-milliseconds,
            then SIGCONT, and the old master found demoted.
  dns       no Sentinel: a master and a replica behind an address that moves
            (tests/integration/tcpswitch.py), swapped with REPLICAOF as a
            managed Redis does; corrald has only the address.

The producer enqueues in batches (corral_enqueue_many) and confirms each
with WAIT 1 (docs/protocol.md, "Durable enqueue", min_replicas = 1), finding
the master again after any error. At the end of each phase it checks, from
the final master and the stand-in's own log:

  * every job whose enqueue was confirmed ends done, none is left queued or
    active, and its record carries the payload it was sent with;
  * a job answered twice by the stand-in had its first run in a failover's
    window (a reservation the new master never saw, or an outcome it
    refused as stale: the at-least-once rule, docs/ha.md); any other is a
    violation;
  * the fleet takes jobs from the new master within 2 s of the switch
    (a marker job enqueued at once on the new master leaves `queued`):
    p50 and max per kind;
  * corrald is alive, no worker died, and the log holds no flood: the
    worst one-second count of log lines around each failover.

docs/chaos.md ("Failover") gives the figures of a run."""
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (os.path.join(TESTS, "integration"), TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

import redis  # noqa: E402

import aistub  # noqa: E402
from conftest import REPO, wait_until  # noqa: E402,F401
from hafixtures import MASTER_NAME, ManagedPair, SentinelCluster  # noqa: E402
from test_supervisor import Corrald  # noqa: E402

Q = "calls"
SENTINEL_KINDS = ("sentinel-failover", "kill-9", "sigstop")
RECOVER_LIMIT_S = 2.0   # issue 18: jobs from the new master within 2 s
FLOOD_LIMIT = 100       # log lines in any one second around a failover
WINDOW_S = 2.0          # a run within this of a failover may be repeated


@dataclass
class Settings:
    sentinel_jobs: int = 3500
    dns_jobs: int = 1500
    rounds: int = 2          # failovers of each kind in the sentinel phase
    dns_switches: int = 3
    rate: float = 60.0       # jobs per second the producer offers
    batch: int = 20          # jobs per corral_enqueue_many + WAIT
    seed: int = 1
    verbose: bool = True


def say(s, msg):
    if s.verbose:
        print(f"[failover {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the stand-in, logging each request's tag and time --------------------


class TagHandler(aistub.Handler):
    def do_POST(self):
        if self.path.startswith("/_"):
            return super().do_POST()
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length) if length else b""
        try:
            tag = json.loads(raw).get("chaos")
        except (ValueError, AttributeError):
            tag = None
        with self.server.tag_lock:
            self.server.tags.setdefault(tag, []).append(time.monotonic())
        body, self.rfile = self.rfile, io.BytesIO(raw)
        try:
            super().do_POST()
        finally:
            self.rfile = body
        with self.server.stub.lock:  # aistub keeps bodies; counts are enough
            if len(self.server.stub.bodies) > 1000:
                del self.server.stub.bodies[:], self.server.stub.auth[:], \
                    self.server.stub.times[:]


class TagStub(aistub.Server):
    def __init__(self):
        super().__init__()
        self.RequestHandlerClass = TagHandler
        self.tag_lock = threading.Lock()
        self.tags = {}

    def handle_error(self, request, client_address):
        pass


# --- one phase -------------------------------------------------------------


class Phase:
    """One Redis set-up (sentinel or dns), one corrald, one producer."""

    def __init__(self, build, s, kind, root, stub):
        self.build, self.s, self.kind, self.root, self.stub = build, s, kind, root, stub
        self.rng = random.Random(f"{s.seed}-{kind}")
        self.jobs = s.sentinel_jobs if kind == "sentinel" else s.dns_jobs
        self.confirmed = {}     # tag -> id, WAIT 1 confirmed
        self.unconfirmed = 0    # batches whose fate is not known (error or WAIT 0)
        self.failovers = []     # dicts: kind, t_fault, t_switch, t_recovered
        self.lines = []         # (monotonic, log line count)
        self.stop_flag = threading.Event()
        self.faults_done = threading.Event()
        self.errors = []
        self.prefix = f"{kind[0]}"

    # set-up ----------------------------------------------------------------

    def start(self):
        if self.kind == "sentinel":
            self.cluster = SentinelCluster(self.root, down_after_ms=1000,
                                           failover_timeout_ms=3000).start()
            redis_conf = (f"url = redis:///0\nsentinels = {self.cluster.sentinel_addrs()}\n"
                          f"sentinel_master = {MASTER_NAME}\n")
        else:
            self.pair = ManagedPair(self.root)
            redis_conf = f"url = redis://{self.pair.addr[0]}:{self.pair.addr[1]}/0\n"
        key = os.path.join(self.root, f"{self.kind}.key")
        with open(key, "w") as f:
            f.write("sk-failover\n")
        conf = os.path.join(self.root, f"{self.kind}.conf")
        with open(conf, "w") as f:
            f.write(f"[redis]\n{redis_conf}min_replicas = 1\n"
                    "[pool]\nmin = 2\nmax = 2\nconcurrency = 16\n"
                    "[scale]\ntick = 250ms\ncpu_ceiling = 100%\n"
                    f"[queue {Q}]\nhandler = http\nservice = ai\nmax_attempts = 10\n"
                    "backoff = 50ms..500ms\ntimeout = 10s\n"
                    f"[service ai]\nurl = {self.stub.url}\napi_key_file = {key}\n"
                    "max_inflight = 1000\n")
        self.log_path = os.path.join(self.root, f"corrald-{self.kind}.log")
        env = dict(os.environ, CORRAL_WORKER=os.path.join(self.build, "corral-worker"),
                   CORRAL_INSTANCE=self.kind)
        self.corrald = Corrald(os.path.join(self.build, "corrald"), conf, self.log_path, env=env)
        wait_until(lambda: self.master_client(probe=True) is not None and
                   self.master_client().exists(f"corral:{{{Q}}}:conf"), timeout=30,
                   what=f"corrald ({self.kind}) to declare its queue\n" + self.corrald.logs())

    def master_addr(self):
        if self.kind == "sentinel":
            for i in range(len(self.cluster.sentinels)):
                a = self.cluster.master_addr(i)
                if a is not None:
                    return a
            return None
        return self.pair.addr

    def master_client(self, probe=False):
        """A client on the master's TCP address as a producer finds it, or
        None (probe) when it is not (yet) a writable master."""
        a = self.master_addr()
        if a is None:
            return None
        c = redis.Redis(host=a[0], port=a[1], decode_responses=True, socket_timeout=2,
                        socket_connect_timeout=1)
        if not probe:
            return c
        try:
            if c.execute_command("ROLE")[0] == "master":
                return c
        except (redis.RedisError, OSError):
            pass
        c.close()
        return None

    def node_client(self, node):
        return node.client()

    # the producer --------------------------------------------------------

    def producer(self):
        c = None
        sent = 0
        gap = self.s.batch / self.s.rate
        next_at = time.monotonic()
        # Jobs arrive through every fault: the producer goes on at its rate
        # until the faults are over and `jobs` enqueues were confirmed.
        while not self.stop_flag.is_set() and (
                not self.faults_done.is_set() or len(self.confirmed) < self.jobs):
            n = self.s.batch
            tags = [f"{self.prefix}{sent + i}" for i in range(n)]
            payloads = [json.dumps({"chaos": t, "stub": {"delay_ms": self.rng.randint(5, 40)}})
                        for t in tags]
            try:
                if c is None:
                    c = self.master_client(probe=True)
                    if c is None:
                        time.sleep(0.05)
                        continue
                ids = c.fcall("corral_enqueue_many", 1, Q, "", *payloads)
                got = c.execute_command("WAIT", 1, 1000)
                if got >= 1:
                    self.confirmed.update(zip(tags, ids))
                else:
                    self.unconfirmed += 1
                sent += n
            except (redis.RedisError, OSError):
                # The batch may or may not exist: not confirmed, not
                # counted; it is sent again under new tags.
                self.unconfirmed += 1
                sent += n
                if c is not None:
                    c.close()
                c = None
                continue
            next_at += gap
            time.sleep(max(0.0, next_at - time.monotonic()))
        if c is not None:
            c.close()

    def log_sampler(self):
        while not self.stop_flag.is_set():
            try:
                with open(self.log_path, "rb") as f:
                    n = f.read().count(b"\n")
            except OSError:
                n = 0
            self.lines.append((time.monotonic(), n))
            time.sleep(0.1)

    # the faults ----------------------------------------------------------

    def recovered_after(self, client, t_switch, label):
        """Enqueues a marker on the new master and returns the seconds from
        t_switch until a worker takes it."""
        jid = client.fcall("corral_enqueue", 1, Q,
                           json.dumps({"chaos": f"marker-{label}", "stub": {"delay_ms": 1}}))

        def taken():
            raw = client.fcall_ro("corral_job", 1, Q, jid)
            return raw is not None and json.loads(raw)["state"] != "queued"

        wait_until(taken, timeout=30, interval=0.01,
                   what=f"a worker to take a job from the new master after {label}\n" +
                        self.corrald.logs()[-3000:])
        return time.monotonic() - t_switch

    def sentinel_fault(self, kind, i):
        cl = self.cluster
        cl.wait_ready(timeout=60)
        t_fault = time.monotonic()
        if kind == "sentinel-failover":
            old, new = cl.failover()
            t_switch = time.monotonic()
            rec = self.recovered_after(new.client(), t_switch, f"{kind}-{i}")
        elif kind == "kill-9":
            old = cl.master()
            old.kill()
            new = cl.wait_switched(old)
            t_switch = time.monotonic()
            rec = self.recovered_after(new.client(), t_switch, f"{kind}-{i}")
            old.start(replicaof=new)
        else:
            old = cl.master()
            old.freeze()
            try:
                new = cl.wait_switched(old)
                t_switch = time.monotonic()
                rec = self.recovered_after(new.client(), t_switch, f"{kind}-{i}")
                rest = (cl.down_after_ms + 500) / 1000.0 - (time.monotonic() - t_fault)
                if rest > 0:
                    time.sleep(rest)  # the freeze's length is the fault itself
            finally:
                old.thaw()
            wait_until(lambda: old.role() == "slave", timeout=40, interval=0.1,
                       what=f"{old.name} to be demoted after SIGCONT")
        self.failovers.append(dict(kind=kind, t_fault=t_fault, t_switch=t_switch,
                                   t_recovered=t_switch + rec, recovered_s=rec))
        say(self.s, f"{kind}: switch {t_switch - t_fault:.2f} s after the fault, jobs from "
                    f"the new master {rec:.3f} s after the switch")

    def dns_fault(self, i):
        time.sleep(0.5)
        t_fault = time.monotonic()
        old, new = self.pair.switch()
        t_switch = time.monotonic()
        rec = self.recovered_after(new.client(), t_switch, f"dns-{i}")
        self.failovers.append(dict(kind="dns-switch", t_fault=t_fault, t_switch=t_switch,
                                   t_recovered=t_switch + rec, recovered_s=rec))
        say(self.s, f"dns-switch: jobs from the new master {rec:.3f} s after the switch")

    def faults(self):
        try:
            time.sleep(2.0)  # jobs flowing first
            if self.kind == "sentinel":
                for i in range(self.s.rounds):
                    for kind in SENTINEL_KINDS:
                        self.sentinel_fault(kind, i)
            else:
                for i in range(self.s.dns_switches):
                    self.dns_fault(i)
                    time.sleep(1.0)
        except BaseException as e:  # reported by run()
            self.errors.append(e)
        finally:
            self.faults_done.set()

    # the run and its checks ---------------------------------------------

    def run(self):
        t0 = time.monotonic()
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (self.producer, self.log_sampler)]
        for t in threads:
            t.start()
        fault_thread = threading.Thread(target=self.faults, daemon=True)
        fault_thread.start()
        fault_thread.join()
        if self.errors:
            self.stop_flag.set()
            raise self.errors[0]
        threads[0].join()
        say(self.s, f"{self.kind}: {len(self.confirmed)} jobs confirmed, "
                    f"{self.unconfirmed} batches not, in {time.monotonic() - t0:.1f} s")
        fig = self.check()
        self.stop_flag.set()
        threads[1].join()
        fig["flood"] = self.flood()
        fig["wall_s"] = time.monotonic() - t0
        return fig

    def final_states(self, c, ids):
        out = {}
        items = list(ids.items())
        for k in range(0, len(items), 500):
            pipe = c.pipeline(transaction=False)
            for _, jid in items[k:k + 500]:
                pipe.fcall_ro("corral_job", 1, Q, jid)
            for (tag, jid), raw in zip(items[k:k + 500], pipe.execute()):
                out[tag] = json.loads(raw) if raw is not None else None
        return out

    def check(self):
        c = self.master_client(probe=True)
        assert c is not None, "no master at the end"

        def drained():
            st = json.loads(c.fcall_ro("corral_stats", 1, Q))
            return st["depth"] == 0 and st["inflight"] == 0 and st["scheduled"] == 0 and st

        st = wait_until(drained, timeout=120, interval=0.25,
                        what=f"the {self.kind} queue to drain\n" + self.corrald.logs()[-3000:])
        jobs = self.final_states(c, self.confirmed)
        lost = [t for t, j in jobs.items() if j is None]
        wrong = [t for t, j in jobs.items()
                 if j is not None and json.loads(j["payload"]).get("chaos") != t]
        not_done = [t for t, j in jobs.items() if j is not None and j["state"] != "done"]
        twice, unexplained = [], []
        with self.stub.tag_lock:
            seen = {t: list(v) for t, v in self.stub.tags.items()
                    if t is not None and t in self.confirmed}
        twice_by = {}
        for t, times in seen.items():
            if len(times) > 1:
                twice.append(t)
                first = times[0]
                near = [f["kind"] for f in self.failovers
                        if f["t_fault"] - WINDOW_S <= first <= f["t_recovered"] + WINDOW_S]
                if not near:
                    unexplained.append(t)
                else:
                    twice_by[near[0]] = twice_by.get(near[0], 0) + 1
        never = [t for t in self.confirmed if t not in seen]
        alive = self.corrald.proc.poll() is None
        logs = self.corrald.logs()
        died = logs.count("worker died") + logs.count("worker crashed")
        c.close()
        return dict(kind=self.kind, confirmed=len(self.confirmed),
                    unconfirmed_batches=self.unconfirmed, stats=st, lost=lost,
                    wrong_payload=wrong, not_done=not_done, never_ran=never, twice=len(twice),
                    twice_by_failover=twice_by,
                    twice_unexplained=unexplained, corrald_alive=alive, workers_died=died,
                    sanitizer="Sanitizer" in logs or "runtime error" in logs,
                    failovers=[dict(kind=f["kind"], recovered_s=round(f["recovered_s"], 3),
                                    switch_s=round(f["t_switch"] - f["t_fault"], 2))
                               for f in self.failovers])

    def flood(self):
        """The worst one-second count of log lines in each failover's window
        (from the fault to 2 s after recovery), in lines per second."""
        out = []
        for f in self.failovers:
            pts = [(t, n) for t, n in self.lines
                   if f["t_fault"] - 0.5 <= t <= f["t_recovered"] + WINDOW_S]
            worst = 0
            for i, (t, n) in enumerate(pts):
                for t2, n2 in pts[i:]:
                    if t2 - t > 1.0:
                        break
                    worst = max(worst, n2 - n)
            out.append(dict(kind=f["kind"], worst_lines_per_s=worst))
        return out

    def cleanup(self):
        self.stop_flag.set()
        if getattr(self, "corrald", None) is not None:
            try:
                self.corrald.stop(timeout=20)
            except Exception:  # noqa: BLE001 -- best effort at the end
                self.corrald.proc.kill()
        if getattr(self, "cluster", None) is not None:
            self.cluster.cleanup()
        if getattr(self, "pair", None) is not None:
            self.pair.cleanup()


def summary(figs):
    """p50/max of failover -> recovered per kind, and the worst log rate."""
    by = {}
    for fig in figs:
        for f in fig["failovers"]:
            by.setdefault(f["kind"], []).append(f["recovered_s"])
    rec = {k: dict(n=len(v), p50=round(statistics.median(v), 3), max=round(max(v), 3))
           for k, v in by.items()}
    flood = max((f["worst_lines_per_s"] for fig in figs for f in fig["flood"]), default=0)
    return rec, flood


def run(build, s, phases=("sentinel", "dns")):
    """Runs the phases and returns their figures; raises on a broken check."""
    root = tempfile.mkdtemp(prefix="corral-failover-")
    stub = TagStub().start()
    figs = []
    try:
        for kind in phases:
            ph = Phase(build, s, kind, os.path.join(root, kind), stub)
            os.makedirs(ph.root)
            try:
                ph.start()
                figs.append(ph.run())
            finally:
                ph.cleanup()
    finally:
        stub.stop()
    rec, flood = summary(figs)
    total = sum(f["confirmed"] for f in figs)
    print(f"\nfailover chaos: {total} confirmed jobs "
          f"({', '.join(str(f['kind']) + ' ' + str(f['confirmed']) for f in figs)}), "
          f"{sum(len(f['failovers']) for f in figs)} failovers, seed {s.seed}")
    for kind, v in rec.items():
        print(f"  {kind:<18} n={v['n']}  failover->recovered p50 {v['p50']:.3f} s  "
              f"max {v['max']:.3f} s")
    print(f"  lost {sum(len(f['lost']) for f in figs)}, not done "
          f"{sum(len(f['not_done']) for f in figs)}, run twice "
          f"{sum(f['twice'] for f in figs)} (unexplained "
          f"{sum(len(f['twice_unexplained']) for f in figs)}; by failover "
          f"{[f['twice_by_failover'] for f in figs]}), worst log rate around a "
          f"failover {flood} lines/s")
    shutil.rmtree(root, ignore_errors=True)
    return dict(phases=figs, recovered=rec, flood=flood, total=total)


def assert_figures(res, min_jobs):
    for fig in res["phases"]:
        name = fig["kind"]
        assert not fig["lost"], f"{name}: confirmed jobs lost: {fig['lost'][:10]}"
        assert not fig["wrong_payload"], f"{name}: ids reused: {fig['wrong_payload'][:10]}"
        assert not fig["not_done"], f"{name}: not done: {fig['not_done'][:10]}"
        assert not fig["never_ran"], f"{name}: never ran: {fig['never_ran'][:10]}"
        assert not fig["twice_unexplained"], \
            f"{name}: run twice outside a failover: {fig['twice_unexplained'][:10]}"
        assert fig["corrald_alive"] and fig["workers_died"] == 0 and not fig["sanitizer"], fig
        for f in fig["failovers"]:
            assert f["recovered_s"] < RECOVER_LIMIT_S, f
    assert res["flood"] <= FLOOD_LIMIT, f"log flood: {res['flood']} lines/s"
    assert res["total"] >= min_jobs
    kinds = set(res["recovered"])
    assert kinds >= {"dns-switch"} | (set(SENTINEL_KINDS) if any(
        f["kind"] == "sentinel" for f in res["phases"]) else set())


if __name__ == "__main__":
    build = os.environ.get("CORRAL_BUILD", os.path.join(REPO, "build"))
    print(json.dumps(run(build, Settings()), indent=1, default=str))
