"""The Redis Cluster chaos run (make chaos-cluster; docs/chaos.md,
"Redis Cluster"): a real cluster of three primaries and three replicas
(tests/integration/clusterfixtures.py), two corralds (two hosts, as
CORRAL_INSTANCE makes them) serving four queues without a service spread
over the shards (exec handler, one worker a queue each) and a fifth,
"infer", with a service (handler = http calling the stand-in
tests/aistub.py through service "ai", whose keys live under {svc:ai}: the
service gate, docs/protocol.md), an enqueuer
feeding jobs through `corralctl enqueue` (confirmed with WAIT by
min_replicas = 1), and, at random times drawn from the seed:

  failover      kill -9 of the primary of a busy queue's slot (an even
                seed: of the service's slot), a replica promoted
                (Cluster.fail_over); the killed node is started again and
                rejoins as a replica of the new primary
  migrate       a live migration of a busy queue's slot (an odd seed: of
                the service's slot) to another primary
                (Cluster.migrate_slot, a few keys a step, jobs flowing)
  kill_worker   SIGKILL of a worker of either host (twice; the second a
                worker of the service queue, one holding a permit at the
                gate if one does within 3 s: its permits left to expire)
  restart_corrald  SIGTERM of one host's corrald and a new one started
  kill_corrald  SIGKILL of one host's corrald (its workers drain, as
                orphans this process reaps) and a new one started

At the end, after the drain, it checks:
  * every confirmed job (enqueue answered an id) is done at its queue's
    node, its result its payload (infer's: the stand-in's echo of it), and
    ran at least once (the run log; infer's: the stand-in's requests); a
    job run more than once had a run cut by a fault (the at-least-once
    rule: its first run began before a fault's end);
  * nothing is stranded: every job record on every primary is done;
  * no job in two nodes: a primary that does not own a queue's slot (or
    the service's) holds no key of it;
  * the gate let go: once drained, no permit of service ai is held
    ({svc:ai}:pm has only expired entries, or none) and the service's
    in-flight counts (inflight:<host>) are back to 0;
  * corrald and its workers: no sanitizer output nor crash in the logs,
    every worker that died was one the run killed.

CLUSTER_SEED replays a run (the job mix and the fault order and times);
CLUSTER_ENQUEUE_S (default 60) is how long jobs are fed; CLUSTER_KEEP=1
keeps the run's directory (configs, logs) after a passing run too."""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (os.path.join(TESTS, "integration"), TESTS):
    if p not in sys.path:
        sys.path.insert(0, p)

import pytest  # noqa: E402

import aistub  # noqa: E402
from clusterfixtures import CANDIDATES, Cluster  # noqa: E402
from chaosdriver import set_subreaper  # noqa: E402
from conftest import REPO, proc_stat, wait_until  # noqa: E402
from test_cluster_supervisor import Corrald  # noqa: E402

NQUEUES = 4
FAULTS = ("failover", "migrate", "kill_worker", "kill_worker", "restart_corrald",
          "kill_corrald")
PREFIX = "corral"
WINDOW_S = 3.0  # a run this close to a fault may be repeated
STOP_S = 45     # corrald's stop at the end: its workers' drain_timeout (30 s) and more
SVC, SVC_QUEUE = "ai", "infer"  # the service and the queue that calls it (handler = http)
SK = f"{PREFIX}:{{svc:{SVC}}}"  # the service's key: its slot is the gate's
# The service's settings: generous, so that no fault trips the breaker (the
# drain must finish): a failure rate no burst of kills reaches.
SVC_CONF = ("connect_timeout = 1s\nmax_inflight = 1000\nbreaker_window = 10s\n"
            "breaker_min_calls = 100000\nbreaker_failure_rate = 100%\n"
            "breaker_open_for = 500ms\nbreaker_open_max = 2s\n")

# The exec handler: notes each run (tag, start time, pid) in runs.log, then
# echoes its payload as the result.
JOB_SH = """#!/bin/sh
p=$(cat)
t=$(printf '%s' "$p" | sed -e 's/.*"t":"\\([^"]*\\)".*/\\1/')
printf '%s %s %s\\n' "$t" "$(date +%s.%N)" "$$" >> {runs}
sleep 0.$(( $(od -An -N1 -tu1 /dev/urandom) % 3 + 1 ))
printf '%s' "$p"
"""


def say(msg):
    print(f"[chaos-cluster {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ClusterChaos:
    def __init__(self, build, seed, enqueue_s):
        self.build, self.seed, self.enqueue_s = build, seed, enqueue_s
        self.rng = random.Random(seed)
        self.root = tempfile.mkdtemp(prefix="corral-chaoscl-")
        self.cluster = Cluster(self.root)
        self.runs = os.path.join(self.root, "runs.log")
        self.confirmed = {}     # tag -> (queue, job id)
        self.unconfirmed = []   # (tag, queue, exit status, stderr)
        self.faults = []        # (kind, t0, t1, detail)
        self.killed = set()     # worker pids the run killed
        self.corralds = []      # every Corrald started
        self.hosts = {}         # "A", "B" -> its running Corrald
        self.orphan_status = {}  # pid -> wait status of a SIGKILLed corrald's worker
        self.stop_feed = threading.Event()
        self.lock = threading.Lock()
        self.stub = None
        self.gate_left = None    # (permits held, in-flight counts) after the drain
        self.killed_permits = 0  # permits the killed workers of the service queue held

    # --- setting up --------------------------------------------------------

    def spread(self):
        """NQUEUES queues covering the three primaries (one has two)."""
        queues = list(self.cluster.queues_on_primaries(3))
        queues += [q for q in CANDIDATES if q not in queues][:NQUEUES - len(queues)]
        return sorted(queues)

    def write_conf(self):
        script = os.path.join(self.root, "job.sh")
        with open(script, "w") as f:
            f.write(JOB_SH.replace("{runs}", self.runs))
        os.chmod(script, 0o755)
        text = (f"[redis]\ncluster = {self.cluster.seeds.replace(',', ', ')}\n"
                "min_replicas = 1\n\n"
                "[pool]\nmin = 4\nmax = 8\nconcurrency = 2\n\n"
                "[scale]\ntick = 250ms\nscale_out_cooldown = 250ms\nscale_in_window = 5s\n"
                "cpu_ceiling = 100%\n\n")
        for q in self.queues:
            if q == SVC_QUEUE:
                text += (f"[queue {q}]\nhandler = http\nservice = {SVC}\ntimeout = 3s\n"
                         "max_attempts = 30\nbackoff = 100ms..1s\n\n")
            else:
                text += f"[queue {q}]\nhandler = exec\ncommand = {script}\n\n"
        key = os.path.join(self.root, "ai.key")
        with open(key, "w") as f:
            f.write("sk-chaos-cluster\n")
        text += f"[service {SVC}]\nurl = {self.stub.url}\napi_key_file = {key}\n{SVC_CONF}\n"
        self.conf = os.path.join(self.root, "corral.conf")
        with open(self.conf, "w") as f:
            f.write(text)

    def start_corrald(self, h):
        # Two "hosts" on one machine, each its own heartbeat (as
        # chaosdriver.py's): CORRAL_INSTANCE.
        log = os.path.join(self.root, f"corrald{h}{len(self.corralds)}.log")
        env = dict(os.environ, CORRAL_INSTANCE=h)
        c = Corrald([os.path.join(self.build, "corrald"), "-c", self.conf], log, env=env)
        self.corralds.append(c)
        self.hosts[h] = c
        wait_until(lambda: sorted(set(c.workers().values())) == self.queues
                   and "ready" in c.logs(), timeout=60,
                   what="a worker for each queue\n" + c.logs())
        return c

    def workers(self):
        """{pid: queue} of both hosts' live workers."""
        out = {}
        for c in self.hosts.values():
            out.update(c.workers())
        return out

    # --- the enqueuer ------------------------------------------------------

    def ctl(self, *args, timeout=30):
        return subprocess.run([os.path.join(self.build, "corralctl"), "-c", self.conf, *args],
                              capture_output=True, text=True, timeout=timeout)

    def feeder(self, name):
        rng = random.Random(f"{self.seed}-{name}")
        n = 0
        while not self.stop_feed.is_set():
            q = rng.choice(self.queues)
            tag = f"{name}-{n}"
            n += 1
            if q == SVC_QUEUE:  # the tag first: the stand-in keeps 200 bytes of a body
                # The stand-in answers after 0.1-0.3 s, as long as job.sh runs.
                payload = json.dumps({"t": tag, "model": "chaos",
                                      "stub": {"delay_ms": rng.randrange(100, 301)},
                                      "messages": [{"role": "user", "content": f"job-{tag}"}]},
                                     separators=(",", ":"))
            else:
                payload = json.dumps({"t": tag, "q": q, "pad": "x" * rng.randrange(0, 200)},
                                     separators=(",", ":"))
            try:
                p = self.ctl("enqueue", q, payload)
                rc, out, err = p.returncode, p.stdout.strip(), p.stderr.strip()
            except subprocess.TimeoutExpired:
                rc, out, err = -1, "", "timeout"
            with self.lock:
                if rc == 0 and out:
                    self.confirmed[tag] = (q, out, payload)
                else:
                    self.unconfirmed.append((tag, q, rc, err))

    # --- the faults --------------------------------------------------------

    def busy_queue(self):
        return self.rng.choice(self.queues)

    def fault(self, kind):
        t0 = time.time()
        detail = ""
        if kind == "failover":
            # An even seed fails over the service's node (the gate's slot),
            # an odd one a busy queue's.
            q = self.busy_queue()
            key = SK if self.seed % 2 == 0 else f"{PREFIX}:{{{q}}}"
            what = f"service {SVC}" if key == SK else f"queue {q}"
            node = self.cluster.owner(self.cluster.keyslot(key))
            self.cluster.fail_over(node)
            new = self.cluster.owner(self.cluster.keyslot(key))
            detail = f"{what}: primary :{node.port} killed, :{new.port} promoted"
            node.start()  # its nodes.conf: it rejoins as a replica
            wait_until(lambda: node.role() == "slave", timeout=30,
                       what="the killed primary back as a replica")
            self.cluster.wait_ok()
            detail += f"; :{node.port} back as a replica"
        elif kind == "migrate":
            # An odd seed moves the service's slot (the gate's keys: its
            # permits, breaker, in-flight counts), an even one a busy queue's.
            q = self.busy_queue()
            key = SK if self.seed % 2 == 1 else f"{PREFIX}:{{{q}}}"
            slot = self.cluster.keyslot(key)
            src = self.cluster.owner(slot)
            dest = self.rng.choice([n for n in self.cluster.primaries() if n.port != src.port])
            self.cluster.migrate_slot(slot, dest, keys_per_step=5,
                                      pause=lambda: time.sleep(0.5))
            what = f"service {SVC}" if key == SK else f"queue {q}"
            detail = f"{what} slot {slot}: :{src.port} -> :{dest.port}"
        elif kind == "kill_worker":
            # The second kill is of a worker of the service queue, one that
            # holds a permit if one does within 3 s: its permits are left
            # to expire at the gate.
            ws = self.workers()
            second = any(k == "kill_worker" for k, _, _, _ in self.faults)
            pids = sorted(p for p, q in ws.items() if q == SVC_QUEUE or not second)
            if second:
                end = time.time() + 3
                while time.time() < end:
                    holding = sorted(p for p in pids
                                     if any(m.endswith(f":{p}") for m in self.permits()))
                    if holding:
                        pids = holding
                        break
                    time.sleep(0.02)
            if pids:
                pid = self.rng.choice(pids)
                q = self.workers().get(pid, "?")
                self.killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                detail = f"worker {pid} (queue {q})"
                if q == SVC_QUEUE:  # what it leaves at the gate, to expire
                    held = [m for m in self.permits() if m.endswith(f":{pid}")]
                    self.killed_permits += len(held)
                    detail += f", {len(held)} permits held at the gate"
        elif kind == "restart_corrald":
            h = self.rng.choice(sorted(self.hosts))
            st = self.hosts[h].stop()
            assert st == 0, f"corrald {h} exited {st} on SIGTERM\n" + self.hosts[h].logs()
            self.start_corrald(h)
            detail = f"corrald {h} stopped (exit {st}) and started again"
        elif kind == "kill_corrald":
            h = self.rng.choice(sorted(self.hosts))
            c = self.hosts[h]
            had = sorted(c.workers())
            c.proc.kill()
            c.proc.wait()
            c.out.close()
            time.sleep(self.rng.uniform(0.1, 0.5))  # a supervisor restart, as systemd would
            self.start_corrald(h)
            detail = f"corrald {h} killed with its workers {had} left to drain; started again"
        t1 = time.time()
        self.faults.append((kind, t0, t1, detail))
        say(f"fault {kind} ({t1 - t0:.1f}s): {detail}")

    def reap_orphans(self):
        """The workers of a SIGKILLed corrald drain and exit; this process
        is their subreaper (chaosdriver.set_subreaper) and reaps them, by
        pid only: the Popen objects keep their own children. -> how many
        are left running."""
        me, left = os.getpid(), 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            pid = int(d)
            st = proc_stat(pid)
            if st is None or st[1] != me:
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
            else:
                left += 1
        return left

    # --- the run -----------------------------------------------------------

    def run(self):
        self.cluster.start()
        self.stub = aistub.Server().start()
        self.mono_to_wall = time.time() - time.monotonic()
        self.queues = sorted(self.spread() + [SVC_QUEUE])
        self.write_conf()
        say(f"cluster up: primaries {[n.port for n in self.cluster.primaries()]}; "
            f"queues {self.queues}; service {SVC} at :"
            f"{self.cluster.owner(self.cluster.keyslot(SK)).port}")
        self.start_corrald("A")
        self.start_corrald("B")
        feeders = [threading.Thread(target=self.feeder, args=(f"f{i}",), daemon=True)
                   for i in range(2)]
        t_start = time.time()
        for t in feeders:
            t.start()
        # The fault times: drawn from the seed, 5 s apart at least, within
        # the feeding window, in a shuffled order.
        kinds = list(FAULTS)
        self.rng.shuffle(kinds)
        span = max(self.enqueue_s - 10, 5 * len(kinds))
        times = sorted(self.rng.uniform(5, 5 + span) for _ in kinds)
        for kind, at in zip(kinds, times):
            while time.time() < t_start + at:
                self.reap_orphans()
                time.sleep(min(0.2, max(0.0, t_start + at - time.time())))
            self.fault(kind)
        while time.time() < t_start + self.enqueue_s:
            self.reap_orphans()
            time.sleep(0.2)
        self.stop_feed.set()
        for t in feeders:
            t.join(timeout=60)
        self.t_feed_end = time.time()
        say(f"fed {len(self.confirmed)} confirmed jobs, {len(self.unconfirmed)} not "
            f"confirmed, in {self.t_feed_end - t_start:.0f}s")

    # --- the checks --------------------------------------------------------

    def owner_client(self, q):
        return self.cluster.owner(self.cluster.keyslot(f"{PREFIX}:{{{q}}}")).client()

    def states(self):
        """{tag: (state, result)} of the confirmed jobs, read at their
        queue's current node."""
        out = {}
        by_q = {}
        for tag, (q, jid, _) in self.confirmed.items():
            by_q.setdefault(q, []).append((tag, jid))
        for q, jobs in by_q.items():
            c = self.owner_client(q)
            try:
                pipe = c.pipeline(transaction=False)
                for _, jid in jobs:
                    pipe.hmget(f"{PREFIX}:{{{q}}}:job:{jid}", "state", "result")
                for (tag, _), (state, result) in zip(jobs, pipe.execute()):
                    out[tag] = (state, result)
            finally:
                c.close()
        return out

    def drain(self):
        def drained():
            self.reap_orphans()
            st = self.states()
            left = [t for t, (s, _) in st.items() if s != "done"]
            return not left or None

        try:
            wait_until(drained, timeout=180, what="every confirmed job done")
        except AssertionError:
            pass  # the checks below name what is left
        # The gate lets go: a permit is reported when its call ends, or
        # expires (the job's timeout and 5 s) and is swept by the next
        # call of an idle worker (it asks again within a second).
        t0 = time.monotonic()
        try:
            wait_until(lambda: self.gate() == ([], {}) or None, timeout=30,
                       what="no permit held at the gate, no call in flight")
        except AssertionError:
            pass
        self.gate_wait_s = time.monotonic() - t0
        self.gate_left = self.gate()

    def permits(self):
        """The members of the gate's permit set, expired ones too."""
        c = self.cluster.owner(self.cluster.keyslot(SK)).client()
        try:
            return c.zrange(f"{SK}:pm", 0, -1)
        finally:
            c.close()

    def gate(self):
        """At the service's node: ([permits not yet expired], {host field:
        in-flight count} of those not 0)."""
        c = self.cluster.owner(self.cluster.keyslot(SK)).client()
        try:
            sec, usec = c.time()
            now_ms = int(sec) * 1000 + int(usec) // 1000
            held = c.zrangebyscore(f"{SK}:pm", f"({now_ms}", "+inf")
            infl = {k: v for k, v in c.hgetall(SK).items()
                    if k.startswith("inflight:") and int(v) != 0}
            return held, infl
        finally:
            c.close()

    def read_runs(self):
        runs = {}
        with open(self.runs) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    runs.setdefault(parts[0], []).append(float(parts[1]))
        # The service queue's runs: the stand-in's requests (a body starts
        # with its tag), their arrival times made wall-clock times.
        with self.stub.stub.lock:
            got = list(zip(self.stub.stub.bodies, self.stub.stub.times))
        for body, t in got:
            m = re.match(r'\{"t":"([^"]+)"', body)
            if m:
                runs.setdefault(m.group(1), []).append(t + self.mono_to_wall)
        return runs

    def check(self):
        problems = []
        fig = {"seed": self.seed, "confirmed": len(self.confirmed),
               "unconfirmed": len(self.unconfirmed),
               "faults": [(k, round(t1 - t0, 1), d) for k, t0, t1, d in self.faults]}
        st = self.states()
        runs = self.read_runs()
        # Why enqueues were not confirmed: their error lines, counted.
        why = {}
        for _, _, rc, err in self.unconfirmed:
            line = f"exit {rc}: " + re.sub(r"\d+", "N", (err.splitlines() or [""])[-1])[:120]
            why[line] = why.get(line, 0) + 1
        fig["unconfirmed_why"] = why
        not_done = {t: s for t, (s, _) in st.items() if s != "done"}
        if not_done:
            problems.append(f"{len(not_done)} confirmed jobs not done: "
                            f"{sorted(not_done.items())[:10]}")
        def result_ok(t, r):
            q, _, payload = self.confirmed[t]
            if q == SVC_QUEUE:  # the stand-in's answer echoes the message
                return r is not None and f'echo: job-{t}"' in r
            return r == payload

        bad_result = [t for t, (s, r) in st.items() if s == "done" and not result_ok(t, r)]
        if bad_result:
            problems.append(f"{len(bad_result)} jobs whose result is not their payload: "
                            f"{bad_result[:10]}")
        never_ran = [t for t in self.confirmed if t not in runs]
        if never_ran:
            problems.append(f"{len(never_ran)} confirmed jobs the handler never ran: "
                            f"{never_ran[:10]}")
        # At least once: a second run only after a first one that began in
        # a fault's window (its worker killed, its corrald stopped, its node
        # failed over or its slot moved under it): from WINDOW_S before the
        # fault to WINDOW_S after it ended.
        repeated = {t: ts for t, ts in runs.items() if len(ts) > 1}
        unexplained = [t for t, ts in repeated.items()
                       if not any(t0 - WINDOW_S <= ts[0] <= t1 + WINDOW_S
                                  for _, t0, t1, _ in self.faults)]
        fig["ran_twice_or_more"] = len(repeated)
        if unexplained:
            problems.append(f"{len(unexplained)} jobs ran twice with no fault to explain it: "
                            f"{[(t, runs[t]) for t in unexplained[:10]]}")
        # Nothing stranded: every job record on every primary is done.
        stranded = []
        records = 0
        for n in self.cluster.primaries():
            c = n.client()
            try:
                for q in self.queues:
                    slot = self.cluster.keyslot(f"{PREFIX}:{{{q}}}")
                    keys = [k for k in c.execute_command("CLUSTER", "GETKEYSINSLOT", slot,
                                                         1000000)
                            if k.startswith(f"{PREFIX}:{{{q}}}:job:")]
                    if self.cluster.owner(slot).port != n.port:
                        if keys or int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)):
                            problems.append(f"primary :{n.port} holds keys of {q}'s slot "
                                            f"{slot} it does not own: {keys[:5]}")
                        continue
                    pipe = c.pipeline(transaction=False)
                    for k in keys:
                        pipe.hget(k, "state")
                    for k, s in zip(keys, pipe.execute()):
                        records += 1
                        if s != "done":
                            stranded.append((k, s))
            finally:
                c.close()
        # The service's slot: its keys on its owner only.
        svc_slot = self.cluster.keyslot(SK)
        for n in self.cluster.primaries():
            if n.port == self.cluster.owner(svc_slot).port:
                continue
            c = n.client()
            try:
                if int(c.execute_command("CLUSTER", "COUNTKEYSINSLOT", svc_slot)):
                    problems.append(f"primary :{n.port} holds keys of service {SVC}'s slot "
                                    f"{svc_slot} it does not own")
            finally:
                c.close()
        fig["job_records"] = records
        # The service queue and its gate.
        svc_jobs = [t for t, (q, _, _) in self.confirmed.items() if q == SVC_QUEUE]
        held, infl = self.gate_left
        c = self.cluster.owner(svc_slot).client()
        try:
            b = json.loads(c.fcall_ro("corral_breaker", 1, SK))
        finally:
            c.close()
        with self.stub.stub.lock:
            calls = self.stub.stub.requests
        fig["service"] = {"confirmed": len(svc_jobs),
                          "done": sum(1 for t in svc_jobs if st.get(t, ("",))[0] == "done"),
                          "calls": calls,
                          "ran_twice_or_more": sum(1 for t in svc_jobs if len(runs.get(t, [])) > 1),
                          "breaker": b.get("state"), "permits_held": len(held),
                          "permits_of_killed_workers": self.killed_permits,
                          "gate_wait_s": round(self.gate_wait_s, 1),
                          "inflight": infl}
        if not svc_jobs:
            problems.append(f"no confirmed job of the service queue {SVC_QUEUE}")
        if held:
            problems.append(f"{len(held)} permits still held at service {SVC}'s gate after the "
                            f"drain: {held[:10]}")
        if infl:
            problems.append(f"service {SVC}'s in-flight counts not back to 0: {infl}")
        if stranded:
            problems.append(f"{len(stranded)} job records not done: {stranded[:10]}")
        # corrald and its workers.
        logs = ""
        for c in self.corralds:
            logs += c.logs()
        if "Sanitizer" in logs or "runtime error" in logs:
            problems.append("sanitizer output in corrald's log")
        for pid, status in re.findall(r"worker died worker=\S+:(\d+) status=\"([^\"]*)\"", logs):
            if not (int(pid) in self.killed and status == "signal 9"):
                problems.append(f"worker {pid} died unasked: {status}")
        # Orphans of a SIGKILLed corrald drain: exit 0, or 1 when
        # drain_timeout cut them short; a signal is a crash, but for the
        # PDEATHSIG SIGTERM that can reach a worker still starting.
        wait_until(lambda: self.reap_orphans() == 0, timeout=60,
                   what="the orphaned workers to exit")
        for pid, st in self.orphan_status.items():
            if os.WIFSIGNALED(st) and pid not in self.killed and \
                    os.WTERMSIG(st) != signal.SIGTERM:
                problems.append(f"orphaned worker {pid} was killed by signal {os.WTERMSIG(st)}")
            if os.WIFEXITED(st) and os.WEXITSTATUS(st) not in (0, 1):
                problems.append(f"orphaned worker {pid} exited {os.WEXITSTATUS(st)}")
        fig["orphans_reaped"] = len(self.orphan_status)
        for h, c in sorted(self.hosts.items()):
            if c.proc.poll() is not None:
                problems.append(f"corrald {h} exited {c.proc.returncode}")
        fig["reclaims"] = logs.count("requeued the jobs of a dead worker")
        fig["problems"] = problems
        return fig

    def cleanup(self, keep):
        """Stops every corrald (SIGTERM; SIGKILL, with its workers, when it
        has not stopped within STOP_S: its workers' drain_timeout is 30 s)
        and the cluster, whatever happened before."""
        try:
            for c in self.corralds:
                workers = list(c.workers()) if c.proc.poll() is None else []
                if c.proc.poll() is None:
                    try:
                        st = c.stop(timeout=STOP_S)
                        if st != 0:
                            say(f"corrald exited {st} at the end")
                    except subprocess.TimeoutExpired:
                        say(f"corrald {c.proc.pid} did not stop within {STOP_S} s: SIGKILL")
                        c.proc.kill()
                        c.proc.wait()
                for w in workers:
                    try:
                        os.kill(w, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.reap_orphans()
        finally:
            self.cluster.stop()
            if self.stub is not None:
                self.stub.stop()
        if keep:
            say(f"logs kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def run(build, seed, enqueue_s):
    ch = ClusterChaos(build, seed, enqueue_s)
    fig, ok = None, False
    set_subreaper(True)
    try:
        ch.run()
        ch.drain()
        fig = ch.check()
        ok = not fig["problems"]
        return fig
    finally:
        stop_logs = "".join(c.logs() for c in ch.corralds) if ch.corralds else ""
        ch.cleanup(keep=not ok or os.environ.get("CLUSTER_KEEP") == "1")
        set_subreaper(False)
        if fig is not None and ("Sanitizer" in stop_logs or "runtime error" in stop_logs):
            fig["problems"].append("sanitizer output in corrald's log at the stop")


def test_every_confirmed_job_is_done_once_through_failover_and_slot_migration():
    for prog in ("redis-server", "redis-cli"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} is not installed")
    build = os.environ.get("CORRAL_BUILD", os.path.join(REPO, "build"))
    seed = int(os.environ.get("CLUSTER_SEED", int(time.time())))
    print(f"\nchaos-cluster seed {seed} (CLUSTER_SEED={seed} repeats the job mix and the "
          "fault order and times)")
    fig = run(build, seed, float(os.environ.get("CLUSTER_ENQUEUE_S", 60)))
    say("figures: " + json.dumps(fig, indent=1))
    assert fig["confirmed"] > 0
    assert not fig["problems"], "\n".join(fig["problems"])
