"""The job state machine against a model (docs/invariants.md).

Hypothesis drives random interleavings of enqueue, reserve, renew, ack,
fail, defer, lease expiry (the active zset's score set to 0 with ZADD XX:
no sleeping), reclaim, reclaim_worker (by id, by host, and the keep form),
cancel, dead_retry and promotion against the real Function library on the
real redis-server, keeps a Python model of every job, and after EVERY step
checks the invariants I1-I11 of docs/invariants.md against what Redis
holds. Every outcome and renew is sent with a run handle that may be the
job's current run or any earlier one (reclaimed, already reported, of a
requeued job), or a forged one, and its answer must be the one the model
predicts.

Short in `make test` (a few seconds). CORRAL_MODEL_MINUTES=10 runs it for
that long and prints the figures (steps, examples, invariant checks)."""
import json
import os
import re
import time

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 rule, run_state_machine_as_test)

from conftest import qkey

Q = "model"
K = qkey(Q)
WORKERS = ["h1:1", "h1:2", "h2:1"]
FAR_MS = 3600000  # scheduled jobs come due only when a step makes them due
MAX_RESULT = 8
FINAL = ("done", "dead", "cancelled")
COUNTERS = ("enq", "done", "fail", "dead", "retry", "defer", "lost", "pn")

# Figures for the long run, summed over every example.
FIGURES = {"examples": 0, "steps": 0, "invariant_checks": 0, "outcomes_checked": 0,
           "accepted": 0, "reclaimed_answers": 0, "stale_answers": 0}

# The client the machine uses, set by the test (one per test run).
CLIENT = {}


class Job:
    def __init__(self, jid, level, max_attempts, state):
        self.id = jid
        self.level = level
        self.max_attempts = max_attempts
        self.state = state
        self.attempts = 0
        self.run = 0
        self.worker = None
        self.reclaimed = None  # the run a reclaim took, as run_status reads it
        self.expired = False   # lease due (active only)
        self.due = False       # run_at passed (scheduled only)


class JobModel(RuleBasedStateMachine):
    """The model: every job, the containers in order, the counters."""

    @initialize()
    def setup(self):
        self.r = CLIENT["r"]
        self.r.flushall()
        self.r.fcall("corral_declare", 1, Q,
                     '{"priorities": ["high", "low"], "max_attempts": 3, '
                     f'"backoff_base_ms": {FAR_MS}, "backoff_cap_ms": {FAR_MS}, '
                     f'"lease_ms": {FAR_MS}, "max_result": {MAX_RESULT}}}')
        self.jobs = {}
        self.ready = [[], []]   # per level, front first
        self.dead = []          # newest first
        self.handles = []       # every (id, run, worker) ever handed out
        self.latest = {}        # id -> the handle of its latest run
        self.stats = dict.fromkeys(COUNTERS, 0)
        self.last_id = 0
        self.before = {}        # real states before the step (for I5)
        self.step_kind = None
        FIGURES["examples"] += 1

    # --- helpers ---------------------------------------------------------

    def pick(self, seq, i):
        return seq[i % len(seq)] if seq else None

    def unlink(self, j):
        if j.state == "queued":
            self.ready[j.level].remove(j.id)
        elif j.state == "dead":
            self.dead.remove(j.id)

    def to_dead(self, j):
        j.state = "dead"
        self.dead.insert(0, j.id)
        self.stats["dead"] += 1

    def status(self, jid, run, worker):
        """What run_status must answer for this handle."""
        j = self.jobs.get(jid)
        if j is None or run == "0" or str(j.run) != run or j.worker != worker:
            return "STALE"
        if j.state == "active":
            return "active"
        return "RECLAIMED" if j.reclaimed == j.run else "STALE"

    def begin(self, kind):
        self.step_kind = kind
        self.operated = None
        self.before = {jid: self.r.hget(f"{K}:job:{jid}", "state") for jid in self.jobs}
        FIGURES["steps"] += 1

    def handle(self, i, forge):
        """A run handle: forge 0-4 the run of a job that holds a lease, 5-7
        the latest run of any job that ran (reclaimed, reported or live), 8
        any run ever handed out; 9 a job that does not exist, 10 another
        worker's name, 11 run 0 (never reserved)."""
        if forge == 9 or not self.handles:
            return (str(self.last_id + 1), "1", WORKERS[0])
        live = sorted(jid for jid, j in self.jobs.items() if j.state == "active")
        if forge <= 4 and live:
            j = self.jobs[self.pick(live, i)]
            return (j.id, str(j.run), j.worker)
        if forge <= 7 and self.latest:
            jid, run, worker = self.latest[self.pick(sorted(self.latest), i)]
        else:
            jid, run, worker = self.pick(self.handles, i)
        if forge == 10:
            return (jid, run, self.pick([w for w in WORKERS if w != worker], i))
        if forge == 11:
            return (jid, "0", worker)
        return (jid, run, worker)

    def reclaim_all(self, ids, unseen):
        """reclaim_all: by id, the last first, each to the front of its
        level (so they sit there in id order) or onto the dead list."""
        for jid in sorted(ids, key=int, reverse=True):
            j = self.jobs[jid]
            j.reclaimed = j.run
            j.expired = False
            if unseen:
                j.attempts = max(j.attempts - 1, 0)
            else:
                self.stats["lost"] += 1
            if not unseen and j.attempts >= j.max_attempts:
                self.to_dead(j)
            else:
                j.state = "queued"
                self.ready[j.level].insert(0, jid)
        return len(ids)

    # --- rules -------------------------------------------------------------

    @rule(level=st.integers(0, 1), delayed=st.integers(0, 3), max_attempts=st.integers(1, 3),
          n=st.integers(1, 4))
    def enqueue(self, level, delayed, max_attempts, n):
        self.begin("enqueue")
        opts = {"priority": level, "max_attempts": max_attempts}
        if delayed == 1:
            opts["delay_ms"] = FAR_MS
        for _ in range(n):
            jid = self.r.fcall("corral_enqueue", 1, Q, "{}", json.dumps(opts))
            assert int(jid) == self.last_id + 1, "I8: ids are new and increasing"
            self.last_id = int(jid)
            j = Job(jid, level, max_attempts, "scheduled" if delayed == 1 else "queued")
            self.jobs[jid] = j
            if delayed != 1:
                self.ready[level].append(jid)
            self.stats["enq"] += 1

    def promote_due(self):
        due = sorted((j.id for j in self.jobs.values() if j.state == "scheduled" and j.due))
        for jid in due:  # ZRANGEBYSCORE order: equal scores (0), then by member
            j = self.jobs[jid]
            j.state, j.due = "queued", False
            self.ready[j.level].append(jid)

    @rule(w=st.integers(0, 2), n=st.integers(1, 3))
    def reserve(self, w, n):
        self.begin("reserve")
        worker = WORKERS[w]
        got = self.r.fcall("corral_reserve", 1, Q, worker, n, 0)
        self.promote_due()
        want = []
        for level in (0, 1):
            while self.ready[level] and len(want) < n:
                want.append(self.ready[level].pop(0))
        assert [g[0] for g in got] == want, "I10: strict priority, FIFO within a level"
        for g in got:
            j = self.jobs[g[0]]
            j.state, j.attempts, j.run, j.worker, j.expired = \
                "active", j.attempts + 1, j.run + 1, worker, False
            assert g[1] == str(j.run) and g[2] == j.attempts and g[3] == j.max_attempts
            self.handles.append((j.id, g[1], worker))
            self.latest[j.id] = (j.id, g[1], worker)

    def outcome(self, fn, args_of, i, forge, effect):
        jid, run, worker = self.handle(i, forge)
        want = self.status(jid, run, worker)
        got = self.r.fcall(fn, 1, Q, worker, jid, run, *args_of)
        assert len(got) == 1, "reply: one word per job"
        FIGURES["outcomes_checked"] += 1
        if want != "active":
            assert got == [want], (fn, jid, run, worker, got, want)
            FIGURES["reclaimed_answers" if want == "RECLAIMED" else "stale_answers"] += 1
            return
        FIGURES["accepted"] += 1
        expect = effect(self.jobs[jid])
        assert got == [expect], (fn, jid, run, worker, got, expect)

    @rule(i=st.integers(0, 10**6), forge=st.integers(0, 11), big=st.booleans())
    def ack(self, i, forge, big):
        self.begin("ack")
        result = "x" * (MAX_RESULT + 1 if big else MAX_RESULT)

        def effect(j):
            self.stats["pn"] += 1
            if big:
                self.stats["fail"] += 1
                self.to_dead(j)
                return "dead"
            j.state = "done"
            self.stats["done"] += 1
            return "done"
        self.outcome("corral_ack", [result], i, forge, effect)

    @rule(i=st.integers(0, 10**6), forge=st.integers(0, 11), permanent=st.booleans())
    def fail(self, i, forge, permanent):
        self.begin("fail")

        def effect(j):
            self.stats["pn"] += 1
            self.stats["fail"] += 1
            if permanent or j.attempts >= j.max_attempts:
                self.to_dead(j)
                return "dead"
            j.state, j.due = "scheduled", False
            self.stats["retry"] += 1
            return "scheduled"
        kind = "permanent" if permanent else "retry"
        self.outcome("corral_fail", [kind, "boom"], i, forge, effect)

    @rule(i=st.integers(0, 10**6), forge=st.integers(0, 11), later=st.booleans())
    def defer(self, i, forge, later):
        self.begin("defer")

        def effect(j):
            j.attempts = max(j.attempts - 1, 0)
            self.stats["defer"] += 1
            if later:
                j.state, j.due = "scheduled", False
                return "scheduled"
            j.state = "queued"
            self.ready[j.level].insert(0, j.id)
            return "queued"
        self.outcome("corral_defer", [FAR_MS if later else 0, "", ""], i, forge, effect)

    @rule(i=st.integers(0, 10**6), forge=st.integers(0, 11))
    def renew(self, i, forge):
        self.begin("renew")

        def effect(j):
            j.expired = False
            return "active"
        self.outcome("corral_renew", [], i, forge, effect)

    @rule(i=st.integers(0, 10**6))
    def expire_lease(self, i):
        self.begin("expire")
        active = sorted(j.id for j in self.jobs.values() if j.state == "active")
        jid = self.pick(active, i)
        if jid is None:
            return
        assert self.r.zscore(f"{K}:active", jid) is not None
        self.r.zadd(f"{K}:active", {jid: 0}, xx=True)
        self.jobs[jid].expired = True

    @rule(i=st.integers(0, 10**6))
    def make_due(self, i):
        self.begin("make_due")
        sched = sorted(j.id for j in self.jobs.values() if j.state == "scheduled")
        jid = self.pick(sched, i)
        if jid is None:
            return
        assert self.r.zscore(f"{K}:sched", jid) is not None
        self.r.zadd(f"{K}:sched", {jid: 0}, xx=True)
        self.r.hdel(f"{K}:conf", "due")  # not known any more (jobs.lua's promote_due)
        self.jobs[jid].due = True

    # Taking leases back and operators' calls: one rule each, so that they
    # come about as often as a reserve, not five times as often.
    @rule(which=st.integers(0, 3), w=st.integers(0, 3),
          keep=st.sets(st.integers(0, 10**6), max_size=3))
    def take_back(self, which, w, keep):
        if which == 0:
            self.reclaim()
        elif which == 1:
            self.reclaim_worker(w)
        elif which == 2:
            self.reclaim_worker_keep(w % 3, keep)
        else:
            self.promote()

    @rule(which=st.integers(0, 9), i=st.integers(0, 10**6))
    def operate(self, which, i):
        if which <= 4:
            self.cancel(i)
        elif which <= 8:
            self.dead_retry(i)
        else:
            self.dead_purge()

    @rule(level=st.integers(0, 1), n=st.integers(1, 6))
    def enqueue_more(self, level, n):
        self.enqueue(level, 0, 3, n)

    def reclaim(self):
        self.begin("reclaim")
        n = self.r.fcall("corral_reclaim", 1, Q)
        due = [j.id for j in self.jobs.values() if j.state == "active" and j.expired]
        assert n == self.reclaim_all(due, unseen=False)

    def reclaim_worker(self, w):
        self.begin("reclaim_worker")
        who = (WORKERS + ["h1:*"])[w]
        n = self.r.fcall("corral_reclaim_worker", 1, Q, who)
        mine = [j.id for j in self.jobs.values() if j.state == "active" and (
            j.worker == who or (who == "h1:*" and j.worker.startswith("h1:")))]
        assert n == self.reclaim_all(mine, unseen=False)

    def reclaim_worker_keep(self, w, keep):
        self.begin("reclaim_worker_keep")
        worker = WORKERS[w]
        mine = sorted(j.id for j in self.jobs.values()
                      if j.state == "active" and j.worker == worker)
        held = {self.pick(mine, k) for k in keep} if mine else set()
        n = self.r.fcall("corral_reclaim_worker", 1, Q, worker, "keep", *sorted(held))
        assert n == self.reclaim_all([jid for jid in mine if jid not in held], unseen=True)

    def cancel(self, i):
        self.begin("cancel")
        jid = self.pick(sorted(self.jobs), i) or "1"
        j = self.jobs.get(jid)
        if j is None or j.state not in ("queued", "scheduled", "dead", "active"):
            with pytest.raises(redis.ResponseError):
                self.r.fcall("corral_cancel", 1, Q, jid)
            return
        self.operated = jid
        assert self.r.fcall("corral_cancel", 1, Q, jid) == "cancelled"
        self.unlink(j)
        j.state = "cancelled"

    def dead_retry(self, i):
        self.begin("dead_retry")
        jid = self.pick(sorted(self.jobs), i) or "1"
        j = self.jobs.get(jid)
        if j is None or j.state != "dead":
            with pytest.raises(redis.ResponseError):
                self.r.fcall("corral_dead_retry", 1, Q, jid)
            return
        self.operated = jid
        assert self.r.fcall("corral_dead_retry", 1, Q, jid) == 1
        self.unlink(j)
        j.state, j.attempts = "queued", 0
        self.ready[j.level].append(jid)

    def dead_purge(self):
        self.begin("dead_purge")
        assert self.r.fcall("corral_dead_purge", 1, Q) == len(self.dead)
        for jid in self.dead:
            del self.jobs[jid]
            self.latest.pop(jid, None)
        self.dead = []

    def promote(self):
        self.begin("promote")
        n = self.r.fcall("corral_promote", 1, Q)
        due = sum(1 for j in self.jobs.values() if j.state == "scheduled" and j.due)
        assert n == due
        self.promote_due()

    # --- invariants (docs/invariants.md), after every step ----------------

    @invariant()
    def check(self):
        if not hasattr(self, "jobs"):
            return
        r = self.r
        p = r.pipeline(transaction=False)
        ids = sorted(self.jobs, key=int)
        for jid in ids:
            p.hmget(f"{K}:job:{jid}", "state", "attempts", "run", "worker", "max_attempts")
            p.lrange(f"{K}:fin:{jid}", 0, -1)
            p.pttl(f"{K}:job:{jid}")
        p.lrange(f"{K}:q:0", 0, -1)
        p.lrange(f"{K}:q:1", 0, -1)
        p.zrange(f"{K}:active", 0, -1)
        p.zrange(f"{K}:sched", 0, -1)
        p.lrange(f"{K}:dead", 0, -1)
        p.keys(f"{K}:job:*")
        p.keys(f"{K}:st:*")
        res = p.execute()
        checks = 0
        containers = {"queued": set(res[-7]) | set(res[-6]), "active": set(res[-5]),
                      "scheduled": set(res[-4]), "dead": set(res[-3])}
        # I2: no id twice in any container, and containers in the model's order
        for name, seq in (("q:0", res[-7]), ("q:1", res[-6]), ("dead", res[-3])):
            assert len(seq) == len(set(seq)), f"I2: {name} holds an id twice: {seq}"
        assert res[-7] == self.ready[0] and res[-6] == self.ready[1], \
            ("I10: ready lists in FIFO order", res[-7], res[-6], self.ready)
        assert res[-3] == self.dead, ("I2: dead list newest first", res[-3], self.dead)
        checks += 3
        for k, jid in enumerate(ids):
            state, attempts, run, worker, max_attempts = res[3 * k]
            fin, ttl = res[3 * k + 1], res[3 * k + 2]
            j = self.jobs[jid]
            # I1: the job's state is the model's
            assert state == j.state, ("I1", jid, state, j.state, self.step_kind)
            assert int(attempts) == j.attempts and int(run) == j.run, ("I1", jid)
            if j.run > 0:
                assert worker == j.worker, ("I1: worker", jid)
            # I2: in exactly the container its state names
            holders = [c for c, members in containers.items() if jid in members]
            want = [j.state] if j.state in containers else []
            assert holders == want, ("I2", jid, j.state, holders)
            # I3: attempts within 0..max_attempts
            assert 0 <= int(attempts) <= int(max_attempts) == j.max_attempts, ("I3", jid)
            # I4: a final state is published once; live jobs have no fin list
            assert fin == ([j.state] if j.state in FINAL else []), ("I4", jid, fin)
            # I9: done and cancelled records expire; every other one is kept
            assert (ttl > 0) == (j.state in ("done", "cancelled")), ("I9", jid, ttl)
            # I5: a final state changes only by an operator's call on that
            # dead job: dead_retry (to queued) or cancel (to cancelled)
            was = self.before.get(jid)
            if was in FINAL and state != was:
                assert was == "dead" and self.operated == jid and \
                    (self.step_kind, state) in (("dead_retry", "queued"),
                                                ("cancel", "cancelled")), \
                    ("I5", jid, was, state, self.step_kind)
            checks += 7
        # I8: no job the model does not know (ids never reused, none made up)
        assert {k.rsplit(":", 1)[1] for k in res[-2]} == set(self.jobs), "I8"
        # I7: the statistics count what the model did
        totals = dict.fromkeys(COUNTERS, 0)
        for key in res[-1]:
            for f, v in r.hgetall(key).items():
                if f in totals and f != "pn":
                    totals[f] += int(v)
                elif re.fullmatch(r"h\d+", f):  # pn: the histogram's sum (version 7)
                    totals["pn"] += int(v)
        assert totals == self.stats, ("I7", totals, self.stats)
        # I6: at most one run of a job may report (the model's prediction of
        # every answer checks the rest)
        live = {}
        for h in set(self.handles):
            if self.status(*h) == "active":
                live[h[0]] = live.get(h[0], 0) + 1
        assert all(n == 1 for n in live.values()), ("I6", live)
        checks += 3
        FIGURES["invariant_checks"] += checks


def run_model(client, examples, steps):
    CLIENT["r"] = client
    run_state_machine_as_test(JobModel, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), print_blob=True))


def test_job_state_machine_keeps_every_invariant_under_random_interleavings(r):
    minutes = float(os.environ.get("CORRAL_MODEL_MINUTES", "0") or 0)
    for k in FIGURES:
        FIGURES[k] = 0
    if minutes <= 0:
        run_model(r, examples=40, steps=50)
        assert FIGURES["steps"] > 1000
        return
    end = time.monotonic() + minutes * 60
    t0 = time.monotonic()
    while time.monotonic() < end:
        run_model(r, examples=25, steps=100)
    print(f"\njob model: {minutes:g} min ({time.monotonic() - t0:.0f} s): "
          + ", ".join(f"{k} {v}" for k, v in FIGURES.items()))
