"""corrald with real worker processes: scaling out and in, crashes, hangs,
restarts, drain, reload, fork-storm protection and sd_notify."""
import json
import os
import signal
import socket
import time

import pytest

from conftest import Program, children, enqueue_many, get_job, kill_with_children, wait_until

Q = "jobs"
K = "corral:{jobs}"


def is_worker(pid):
    """Whether pid is a live corral-worker (it may vanish while we look)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().startswith("corral-worker")
    except OSError:
        return False


def workers_of(pid, exe_name="corral-worker"):
    res = []
    for c in children(pid):
        try:
            with open(f"/proc/{c}/comm") as f:
                if f.read().strip() == exe_name[:15]:
                    res.append(c)
        except OSError:
            pass
    return res


class Corrald(Program):
    stop_timeout = 20

    def __init__(self, exe, conf, log, env=None):
        self.conf = conf
        super().__init__([exe, "-c", conf], log, mode="a", env=env or dict(os.environ))

    def workers(self):
        return workers_of(self.proc.pid)


@pytest.fixture
def corrald(build_dir, tmp_path, redis_server):
    exe = os.path.join(build_dir, "corrald")
    if not os.path.exists(exe):
        pytest.skip("corrald not built")
    started = []

    def start(queue="handler = exec\ncommand = /bin/sh -c 'sleep 0.3; cat'", pool="",
              scale="", env=None, name="c.conf"):
        conf = tmp_path / name
        conf.write_text(
            redis_server.redis_section() +
            f"[pool]\nmin = 2\nmax = 8\nconcurrency = 2\n{pool}\n"
            f"[scale]\ntick = 250ms\nscale_out_cooldown = 250ms\nscale_in_window = 2s\n{scale}\n"
            f"[queue {Q}]\n{queue}\n")
        c = Corrald(exe, str(conf), str(tmp_path / "corrald.log"), env)
        started.append(c)
        return c

    yield start
    reap(started)


def reap(started):
    """Kills every corrald of a test and its workers, and fails on any
    sanitizer report in their logs."""
    for c in started:
        # No process may outlive its test: a draining orphan would talk to
        # the next test's Redis, where job ids start again from 1.
        kill_with_children(c)
        assert "Sanitizer" not in c.logs(), c.logs()


def test_starts_min_workers_and_writes_its_heartbeat(r, corrald):
    c = corrald()
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    host = socket.gethostname()
    hb = wait_until(lambda: r.hgetall(f"corral:host:{host}") or None, what="a heartbeat")
    assert hb["min"] == "2" and hb["max"] == "8" and hb["workers"] == "2"
    assert hb["queues"] == Q and hb["version"]
    assert 0 < r.pttl(f"corral:host:{host}") <= 10000
    assert c.stop() == 0
    assert not r.exists(f"corral:host:{host}")  # a clean stop removes the beat


def test_burst_grows_the_pool_within_two_ticks_then_drains_back_to_min(r, corrald):
    # The host's CPU is not this test's business (cpu_ceiling has its own
    # tests): a busy machine must not hold the pool back.
    c = corrald(scale="cpu_ceiling = 100%")
    wait_until(lambda: len(c.workers()) == 2 and "ready" in c.logs(), what="min workers ready")
    enqueue_many(r, Q, 300)
    t0 = time.monotonic()
    wait_until(lambda: len(c.workers()) >= 6, timeout=5, what="the pool to grow")
    assert time.monotonic() - t0 < 1.0  # two 250 ms ticks, plus fork time
    assert "scaling" in c.logs() and "jobs depth" in c.logs()
    wait_until(lambda: json.loads(r.fcall_ro("corral_stats", 1, Q))["depth"] == 0
               and r.zcard(f"{K}:active") == 0, timeout=60, what="the backlog to drain")
    wait_until(lambda: len(c.workers()) == 2, timeout=15, what="scale-in to min")
    assert "stopping an idle worker" in c.logs()
    assert c.stop() == 0


def test_sigkill_of_a_busy_worker_runs_its_job_again_within_a_second(r, corrald):
    c = corrald(queue="handler = exec\ncommand = /bin/sh -c 'sleep 2; cat'\nlease = 60s")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    jid = enqueue_many(r, Q, 1)[0]
    wait_until(lambda: get_job(r, Q, jid)["state"] == "active", what="the job to start")
    owner = int(get_job(r, Q, jid)["worker"].rsplit(":", 1)[1])
    os.kill(owner, signal.SIGKILL)
    killed = time.time() * 1000
    wait_until(lambda: get_job(r, Q, jid)["attempts"] == 2 and
               get_job(r, Q, jid)["state"] == "active", timeout=5, what="the job to run again")
    assert get_job(r, Q, jid)["started_ms"] - killed < 1000
    assert "worker died" in c.logs()
    assert get_job(r, Q, jid)["worker"] != f"{socket.gethostname()}:{owner}"
    assert c.stop() == 0
    assert get_job(r, Q, jid)["state"] == "done"


def test_restarted_corrald_reclaims_its_previous_runs_leases_at_once(r, corrald):
    c = corrald(queue="handler = exec\ncommand = /bin/sh -c 'sleep 30; cat'\nlease = 60s",
                pool="drain_timeout = 1s")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    jid = enqueue_many(r, Q, 1)[0]
    wait_until(lambda: get_job(r, Q, jid)["state"] == "active", what="the job to start")
    # The host's supervisor and workers die together (the lease has 60 s).
    old = c.workers()
    c.proc.kill()
    for p in old:
        os.kill(p, signal.SIGKILL)
    c.proc.wait()
    wait_until(lambda: not any(is_worker(p) for p in old), timeout=10,
               what="the old workers to be gone")
    c2 = corrald(queue="handler = exec\ncommand = /bin/sh -c 'sleep 30; cat'\nlease = 60s",
                 pool="drain_timeout = 1s", name="c2.conf")
    restarted = time.time() * 1000
    wait_until(lambda: get_job(r, Q, jid)["attempts"] == 2, timeout=5, what="the job to run again")
    assert get_job(r, Q, jid)["started_ms"] - restarted < 2000
    c2.stop()


def test_sigterm_drains_jobs_in_flight(r, corrald, tmp_path):
    # Each job notes its start: a job whose lease was granted but whose
    # reply the worker reads only after SIGTERM is handed back (deferred,
    # no attempt spent) instead of started, so "running" means started.
    started = tmp_path / "started"
    c = corrald(queue=f"handler = exec\ncommand = /bin/sh -c 'echo x >> {started}; sleep 1; cat'")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    ids = enqueue_many(r, Q, 4)
    wait_until(lambda: started.exists() and len(started.read_text().split()) == 4,
               what="four jobs running")
    assert c.stop() == 0
    assert [get_job(r, Q, i)["state"] for i in ids] == ["done"] * 4, c.logs()
    assert not c.workers()


def test_sighup_applies_new_bounds_without_dropping_work(r, corrald, tmp_path):
    c = corrald(queue="handler = exec\ncommand = /bin/sh -c 'sleep 0.5; cat'")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    first = set(c.workers())
    ids = enqueue_many(r, Q, 6)
    text = open(c.conf).read().replace("min = 2\nmax = 8", "min = 4\nmax = 8")
    open(c.conf, "w").write(text)
    c.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(c.workers()) >= 4, timeout=5, what="the new min")
    assert "reloaded" in c.logs() and "workers_replaced=no" in c.logs()
    assert first <= set(c.workers())  # new bounds alone keep the running workers
    for jid in ids:
        wait_until(lambda: get_job(r, Q, jid)["state"] == "done", timeout=20, what="every job")
    # A broken file is refused and the running config kept.
    open(c.conf, "w").write(text + "\nbogus = 1\n")
    c.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in c.logs(), what="the refusal")
    assert c.proc.poll() is None
    assert len(c.workers()) >= 4
    assert c.stop() == 0


def test_sighup_with_a_changed_queue_replaces_the_workers(r, corrald):
    c = corrald(queue="handler = exec\ncommand = /bin/sh -c 'echo old'")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    first = set(c.workers())
    text = open(c.conf).read().replace("echo old", "echo new")
    open(c.conf, "w").write(text)
    c.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "workers_replaced=yes" in c.logs(), what="the reload")
    wait_until(lambda: len(c.workers()) == 2 and not first & set(c.workers()), timeout=10,
               what="two new workers")
    (jid,) = enqueue_many(r, Q, 1)
    wait_until(lambda: get_job(r, Q, jid)["state"] == "done", what="the job")
    assert get_job(r, Q, jid)["result"].strip() == "new"
    assert c.stop() == 0


def test_worker_that_exits_at_once_does_not_cause_a_fork_storm(r, corrald, tmp_path):
    bad = tmp_path / "bad-worker"
    bad.write_text("#!/bin/sh\nexit 3\n")
    bad.chmod(0o755)
    c = corrald(env=dict(os.environ, CORRAL_WORKER=str(bad)))
    time.sleep(4)  # observing how many times it forks in a fixed period
    forks = c.logs().count("worker died")
    assert 2 <= forks <= 8, c.logs()
    assert "crashed at start; backing off" in c.logs()
    assert c.proc.poll() is None  # it never gives up or exits
    assert c.stop() == 0


def test_hung_worker_is_killed_and_its_job_reclaimed(r, corrald):
    c = corrald(queue="handler = exec\ncommand = /bin/sh -c 'sleep 0.2; cat'\nlease = 60s",
                pool="hang_timeout = 1s")
    wait_until(lambda: len(c.workers()) == 2, what="min workers")
    for w in c.workers():
        os.kill(w, signal.SIGSTOP)
    jid = enqueue_many(r, Q, 1)[0]
    wait_until(lambda: "worker hung" in c.logs(), timeout=10, what="the hang to be noticed")
    wait_until(lambda: get_job(r, Q, jid)["state"] == "done", timeout=10, what="the job to be done")
    assert c.stop() == 0


def test_sd_notify_ready_status_watchdog_reloading_stopping(r, corrald, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    c = corrald(env=env)
    got = []

    def until(word):
        while not any(word in m for m in got):
            got.append(sock.recv(4096).decode())
        return next(m for m in got if word in m)

    assert "READY=1" in until("READY=1")
    assert "workers" in until("STATUS=")
    until("WATCHDOG=1")
    c.proc.send_signal(signal.SIGHUP)
    until("RELOADING=1")
    assert c.stop() == 0
    until("STOPPING=1")
    sock.close()


def test_redis_away_keeps_the_workers_and_resumes(r, corrald, redis_server):
    c = corrald(queue="handler = echo")
    wait_until(lambda: len(c.workers()) == 2 and "ready" in c.logs(), what="min workers ready")
    before = sorted(c.workers())
    redis_server.stop(kill=True)
    wait_until(lambda: "redis unavailable" in c.logs(), timeout=10, what="corrald to notice")
    time.sleep(1.5)  # several ticks without Redis: nothing may be killed or forked
    assert sorted(c.workers()) == before
    redis_server.start()
    r2 = redis_server.client(decode_responses=True)
    host = socket.gethostname()
    wait_until(lambda: r2.hget(f"corral:host:{host}", "redis") == "ok", timeout=15,
               what="heartbeats to resume")
    jid = r2.fcall("corral_enqueue", 1, Q, '{"after": "restart"}')
    wait_until(lambda: json.loads(r2.fcall_ro("corral_job", 1, Q, jid))["state"] == "done",
               timeout=15, what="the pool to work again")
    assert sorted(c.workers()) == before
    assert c.stop() == 0


def test_pools_of_one_host_each_have_their_heartbeat_named_by_instance(r, corrald):
    """corrald@a and corrald@b on one host: CORRAL_INSTANCE names each
    heartbeat HOST@NAME, so neither hides the other in status."""
    host = socket.gethostname()
    a = corrald(env=dict(os.environ, CORRAL_INSTANCE="a"), name="a.conf")
    b = corrald(env=dict(os.environ, CORRAL_INSTANCE="b"), name="b.conf")
    hosts = wait_until(lambda: (lambda h: h if len(h) == 2 else None)(
        set(r.zrange("corral:hosts", 0, -1))), what="two heartbeats")
    assert hosts == {f"{host}@a", f"{host}@b"}
    assert r.hget(f"corral:host:{host}@a", "pid") == str(a.proc.pid)
    assert r.hget(f"corral:host:{host}@b", "pid") == str(b.proc.pid)
    assert not r.exists(f"corral:host:{host}")
    assert b.stop() == 0
    assert not r.exists(f"corral:host:{host}@b")  # a clean stop removes only its own beat
    assert r.exists(f"corral:host:{host}@a")
    assert a.stop() == 0


def test_an_instance_name_that_is_not_a_name_is_refused(r, corrald):
    c = corrald(env=dict(os.environ, CORRAL_INSTANCE="a b"))
    assert c.proc.wait(timeout=10) == 1
    assert 'CORRAL_INSTANCE must be 1-64 characters of A-Z a-z 0-9 _ . - (got "a b")' in c.logs()


def test_a_young_worker_killed_while_busy_is_replaced_at_once_not_backed_off(
        r, build_dir, tmp_path, redis_server):
    """Dying within the crash window counts as crashing at start only for a
    worker that never took a job: a pool of one whose worker is killed on
    its first job forks the next one at once and the job runs again."""
    runs = tmp_path / "runs"
    conf = tmp_path / "one.conf"
    conf.write_text(
        redis_server.redis_section() +
        "[pool]\nmin = 1\nmax = 1\nconcurrency = 1\n"
        "[scale]\ntick = 250ms\n"
        f"[queue {Q}]\nhandler = exec\nlease = 60s\n"
        f"command = /bin/sh -c 'cat >/dev/null; echo run >> {runs}; sleep 30'\n")
    c = Corrald(os.path.join(build_dir, "corrald"), str(conf), str(tmp_path / "one.log"))
    try:
        wait_until(lambda: len(c.workers()) == 1, what="the worker")
        jid = enqueue_many(r, Q, 1)[0]
        wait_until(lambda: runs.exists() and runs.read_text().count("run") == 1,
                   what="the job to start")
        os.kill(int(get_job(r, Q, jid)["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        wait_until(lambda: runs.read_text().count("run") == 2, timeout=10,
                   what="the job to run again on a new worker")
        assert "worker died" in c.logs()
        assert "crashed at start" not in c.logs(), c.logs()
    finally:
        reap([c])


def test_the_scalers_decisions_are_kept_in_redis_newest_first_and_capped(r, corrald):
    # docs/web.md, "The scaler's decisions": what corral-web's dashboard
    # shows beside the pool chart. 60 old lines: the first push trims to 50.
    host = socket.gethostname()
    key = f"corral:decisions:{host}"
    r.rpush(key, *[json.dumps({"t_ms": i, "from": 1, "to": 1, "reason": "old"})
                   for i in range(60)])
    c = corrald(scale="cpu_ceiling = 100%")
    wait_until(lambda: len(c.workers()) == 2 and "ready" in c.logs(), what="min workers ready")
    enqueue_many(r, Q, 300)

    def grown():
        lines = [json.loads(x) for x in r.lrange(key, 0, -1)]
        return lines if any(d.get("action") == "grow" and d["to"] > 2 for d in lines) else None
    lines = wait_until(grown, timeout=10, what="a grow decision in the list")
    assert r.llen(key) == 50
    assert 0 < r.pttl(key) <= 86400000
    new = [d for d in lines if d["reason"] != "old"]
    assert new and lines[:len(new)] == new  # newest first, before the old ones
    assert [d["t_ms"] for d in new] == sorted((d["t_ms"] for d in new), reverse=True)
    grow = next(d for d in new if d["action"] == "grow")
    assert grow["reason"].startswith(f"{grow['from']} -> {grow['to']}:")
    assert abs(grow["t_ms"] - time.time() * 1000) < 60000  # wall clock
    # Steady ticks are not each a line: at 4 ticks a second, far fewer.
    assert len(new) < 20
    assert "cannot keep the scaler's decisions" not in c.logs()
    assert c.stop() == 0
    assert r.exists(key)  # the history outlives a clean stop
