"""corral-worker when things go wrong around it: Redis away while jobs run,
a lease lost to a newer run, the function library or a queue removed under
it, a Redis that stops answering, the drain timeout, and corrald dying."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from conftest import wait_blocked, wait_until
from worker_fixtures import (HTTP_Q, K, Q, aof_redis, await_end, enqueue, job,  # noqa: F401
                             make_worker, stub, stub_stats)


def test_outcomes_of_jobs_that_end_while_redis_is_away_are_written_when_it_returns(
        stub, make_worker, aof_redis):
    server, r = aof_redis
    w = make_worker(HTTP_Q, stub.url, socket_path=server.socket)
    ids = [enqueue(r, {"stub": {"delay_ms": 600}}) for _ in range(4)]
    wait_until(lambda: stub_stats(stub)["inflight"] == 4, what="every slot busy")
    server.stop(kill=True)
    time.sleep(1.5)  # the calls end while Redis is away
    assert stub_stats(stub)["inflight"] == 0
    assert w.proc.poll() is None, w.logs()
    server.start()
    r = server.client(decode_responses=True)
    for jid in ids:
        j = await_end(r, jid, timeout=30)
        assert j["state"] == "done" and j["attempts"] == 1, j
    assert stub_stats(stub)["requests"] == 4  # nothing ran twice
    assert "redis connection lost" in w.logs()
    assert w.stop() == 0


def test_a_run_whose_lease_was_lost_is_stopped_and_cannot_clobber_the_newer_run(
        r, stub, make_worker):
    w = make_worker(HTTP_Q + "\nlease = 1s", stub.url)
    # The first call would answer {"run": "first"}; any later one the echo.
    jid = enqueue(r, {"stub": {"delay_ms": 1500, "status": 200, "body": '{"run": "first"}',
                               "fail_times": 1, "key": "L"},
                      "messages": [{"role": "user", "content": "second"}]})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the first call to start")
    # The lease runs out and another corrald reclaims it, in one step so the
    # worker's renewal cannot slip in between.
    tx = r.pipeline(transaction=True)
    tx.zadd(f"{K}:active", {jid: 0})
    tx.fcall("corral_reclaim", 1, Q)
    assert tx.execute()[1] == 1
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2, j
    assert "echo: second" in j["result"]
    wait_until(lambda: "lease lost" in w.logs(), what="the old run to be stopped")
    time.sleep(0.3)
    assert job(r, jid)["result"] == j["result"]  # the old run wrote nothing
    assert w.stop() == 0


def test_library_and_queue_removed_under_a_running_worker_are_set_up_again(r, make_worker):
    w = make_worker("handler = echo")
    r.function_flush()
    wait_until(lambda: r.function_list(), what="the worker to load the library again")
    assert await_end(r, enqueue(r, {"a": 1}))["state"] == "done"
    r.flushall()
    wait_until(lambda: r.exists(f"{K}:conf"), what="the worker to declare its queue again")
    assert await_end(r, enqueue(r, {"a": 2}))["state"] == "done"
    time.sleep(1)
    logs = w.logs()
    assert logs.count("setting them up again") >= 2
    assert logs.count("redis refused a call") <= 4, logs  # backed off, no busy loop
    assert w.stop() == 0


def test_a_redis_that_accepts_but_never_answers_is_given_up_and_reconnected(make_worker):
    """hiredis's async API has no command timeout; the worker notices a
    connection with no reply for 15 s and replaces it."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            accepted.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    port = lsock.getsockname()[1]
    try:
        w = make_worker("handler = echo", redis_url=f"redis://127.0.0.1:{port}/0", ready=False)
        wait_until(lambda: len(accepted) >= 2, what="both connections")
        wait_until(lambda: "redis is not answering" in w.logs() and len(accepted) >= 3,
                   timeout=25, what="the worker to give up and reconnect")
        assert w.proc.poll() is None
        assert w.stop() == 0
    finally:
        lsock.close()
        for c in accepted:
            c.close()


def test_drain_timeout_aborts_running_calls_and_leaves_their_leases(r, stub, make_worker):
    w = make_worker(HTTP_Q, stub.url, pool="drain_timeout = 1s")
    jid = enqueue(r, {"stub": {"hang": True}})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the call to start")
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=5) == 1
    assert 0.9 <= time.monotonic() - t0 < 3
    assert "drain_timeout passed" in w.logs()
    assert job(r, jid)["state"] == "active"  # left for corrald to reclaim
    assert r.zscore(f"{K}:active", jid) is not None


def test_sigterm_on_an_idle_worker_exits_at_once(r, make_worker):
    w = make_worker("handler = echo")
    wait_blocked(r, 1)  # in its blocking wait for jobs
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 0.5


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_a_worker_started_by_corrald_stops_when_corrald_dies(r, build_dir, tmp_path,
                                                             redis_server):
    conf = tmp_path / "w.conf"
    conf.write_text(redis_server.redis_section() + f"[queue {Q}]\nhandler = echo\n"
                    f"[pool]\nqueues = {Q}\n")
    # A stand-in for corrald: gives the worker a socketpair on fd 3, says
    # its pid, then waits to be killed.
    fake = subprocess.Popen([sys.executable, "-c", f"""
import os, socket, subprocess, sys, time
a, b = socket.socketpair()
os.dup2(b.fileno(), 3)
p = subprocess.Popen([{os.path.join(build_dir, 'corral-worker')!r}, '-c', {str(conf)!r}],
                     pass_fds=(3,), stderr=open({str(tmp_path / 'w.log')!r}, 'w'))
print(p.pid, flush=True)
while True:
    a.recv(4096)
"""], stdout=subprocess.PIPE, text=True)
    pid = int(fake.stdout.readline())
    try:
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker to connect")
        assert not _gone(pid)
        fake.kill()
        fake.wait()
        wait_until(lambda: _gone(pid), timeout=5, what="the orphaned worker to stop")
        assert "draining" in (tmp_path / "w.log").read_text()
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


class ReplyCutter:
    """A unix-socket proxy in front of Redis that, once armed, closes the
    connection whose reply carries a marker, after Redis has executed the
    command and before the client reads the reply: a reply lost in the
    network, deterministically."""

    def __init__(self, path, upstream, marker):
        self.path, self.upstream, self.marker = path, upstream, marker
        self.cuts = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(16)
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.lsock.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            self.socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, True), daemon=True).start()

    def _pump(self, src, dst, replies):
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if replies and self.marker in tail + data:
                    with self.lock:
                        cut = self.cuts == 0
                        self.cuts += 1 if cut else 0
                    if cut:
                        break
                tail = data[-len(self.marker):]
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.lsock.close()
        for s in self.socks:
            s.close()


def test_jobs_leased_by_a_reserve_whose_reply_was_lost_are_taken_back_at_once(
        r, redis_server, make_worker, tmp_path):
    cutter = ReplyCutter(str(tmp_path / "cut.sock"), redis_server.socket, b"LOSE-THIS-REPLY")
    try:
        # A 30 s lease: without the worker taking them back, the jobs would
        # sit leased to it, unseen, until the lease expired.
        w = make_worker("handler = echo\nlease = 30s", socket_path=cutter.path)
        lost = enqueue(r, {"marker": "LOSE-THIS-REPLY"})
        j = await_end(r, lost, timeout=10)
        assert cutter.cuts == 1  # the reply of the reserve that leased it was lost
        assert j["state"] == "done" and j["attempts"] == 1, j  # the lost lease cost nothing
        assert "took back jobs leased by a reserve whose reply was lost" in w.logs()
        # And the worker goes on working.
        assert await_end(r, enqueue(r, {"n": 2}), timeout=10)["state"] == "done"
        assert w.stop() == 0
    finally:
        cutter.close()
