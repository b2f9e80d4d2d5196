"""Back-pressure: a worker whose outcomes Redis refuses to take stops
reserving once it holds more unwritten outcomes than slots, says so in its
heartbeat on fd 3, and writes everything once Redis takes writes again
(docs/worker.md, "Back-pressure").

A Redis at maxmemory refuses an ack that carries large results while small
reserves still get through now and then (how one 4-slot worker came to hold
32 unwritten outcomes); an ACL user that may reserve but not ack makes that
split exact, so the test does not hang on Redis's memory accounting."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import LUA, MODE, RedisServer, binary_path, load_library, wait_until
from worker_fixtures import K, Q, Worker, await_end, enqueue

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

SLOTS = 4


class Fd3Reader:
    """corrald's end of a worker's fd 3: collects the lines it sends."""

    def __init__(self):
        self.parent, self.child = socket.socketpair()
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def preexec(self):
        os.dup2(self.child.fileno(), 3)

    def _read(self):
        buf = b""
        while True:
            try:
                data = self.parent.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            *done, buf = buf.split(b"\n")
            with self.lock:
                self.lines += [l.decode() for l in done]

    def heartbeats_unwritten(self):
        """The unwritten=N of every heartbeat so far."""
        with self.lock:
            return [int(w.split("=", 1)[1]) for l in self.lines if l.startswith("heartbeat ")
                    for w in l.split()[5:] if w.startswith("unwritten=")]

    def close(self):
        self.child.close()
        self.parent.close()


# Everything a worker calls, bar corral_ack (and corral_ack_reserve, which
# carries acks too): its outcomes of done jobs.
NO_ACK = ["on", ">bp-pw", "~*", "&*", "+@all", "-fcall", "+fcall|corral_declare",
          "+fcall|corral_reserve", "+fcall|corral_renew", "+fcall|corral_reclaim_worker",
          "+fcall|corral_fail", "+fcall|corral_defer"]


def test_a_worker_whose_outcomes_redis_refuses_stops_reserving_and_loses_nothing(
        build_dir, tmp_path):
    server = RedisServer(mode="tcp-acl")
    server.start()
    fd3 = Fd3Reader()
    w = None
    try:
        r = server.client(decode_responses=True)
        load_library(r)
        r.execute_command("ACL", "SETUSER", "bp", *NO_ACK)
        pw = tmp_path / "bp.pass"
        pw.write_text("bp-pw\n")
        conf = tmp_path / "w.conf"
        conf.write_text(f"[redis]\nurl = redis://bp@127.0.0.1:{server.port}/0\n"
                        f"password_file = {pw}\n[pool]\nconcurrency = {SLOTS}\n"
                        f"[queue {Q}]\nhandler = echo\nlease = 60s\n")
        w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "w.log"),
                   preexec_fn=fd3.preexec, pass_fds=(3,))
        fd3.child.close()
        wait_until(lambda: r.exists(f"{K}:conf"), what="the worker to declare its queue")
        ids = [enqueue(r, {"i": i}) for i in range(40)]
        wait_until(lambda: "NOPERM" in w.logs(), what="the worker's acks to be refused")
        held = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # without back-pressure, reserves go on
            held.append(r.zcard(f"{K}:active"))
            time.sleep(0.05)
        assert max(held) <= 2 * SLOTS, held  # slots running + slots unwritten, no more
        assert max(held) > SLOTS, held  # it did hold outcomes beyond its slots
        assert "outcomes not written; taking no new jobs until they are" in w.logs()
        wait_until(lambda: any(n > SLOTS for n in fd3.heartbeats_unwritten()),
                   what="a heartbeat saying how many outcomes are unwritten")
        assert max(fd3.heartbeats_unwritten()) <= 2 * SLOTS

        r.execute_command("ACL", "SETUSER", "bp", "+fcall")  # Redis takes writes again
        for jid in ids:
            j = await_end(r, jid, timeout=30)
            assert j["state"] == "done" and j["attempts"] == 1, j
            assert json.loads(j["result"])["i"] == ids.index(jid)
        assert r.zcard(f"{K}:active") == 0
        wait_until(lambda: "outcomes written; taking jobs again" in w.logs(),
                   what="the worker to say it takes jobs again")
        wait_until(lambda: fd3.heartbeats_unwritten()[-1] == 0,
                   what="a heartbeat with nothing unwritten")
        assert w.stop() == 0
        assert "Sanitizer" not in w.logs() and "runtime error" not in w.logs(), w.logs()
    finally:
        if w is not None and w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        fd3.close()
        server.cleanup()


def test_corrald_puts_its_workers_unwritten_outcomes_in_the_host_heartbeat(build_dir, tmp_path):
    server = RedisServer(mode="tcp-acl")
    server.start()
    corrald = None
    try:
        r = server.client(decode_responses=True)
        load_library(r)
        functions = re.findall(r"register_function[({]'?(?:function_name = )?'(corral_\w+)'",
                               open(LUA).read())
        assert "corral_ack" in functions and "corral_promote" in functions
        r.execute_command("ACL", "SETUSER", "bp", "on", ">bp-pw", "~*", "&*", "+@all", "-fcall",
                          *[f"+fcall|{f}" for f in functions
                            if f not in ("corral_ack", "corral_ack_reserve")])
        pw = tmp_path / "bp.pass"
        pw.write_text("bp-pw\n")
        conf = tmp_path / "c.conf"
        conf.write_text(f"[redis]\nurl = redis://bp@127.0.0.1:{server.port}/0\n"
                        f"password_file = {pw}\n[pool]\nmin = 1\nmax = 1\n"
                        f"concurrency = {SLOTS}\n[scale]\ntick = 250ms\n"
                        f"[queue {Q}]\nhandler = echo\nlease = 60s\n")
        log = open(tmp_path / "corrald.log", "w")
        env = dict(os.environ, CORRAL_INSTANCE="bp")
        corrald = subprocess.Popen([binary_path(build_dir, "corrald"), "-c", str(conf)],
                                   stderr=log, env=env)
        host = f"corral:host:{socket.gethostname()}@bp"
        wait_until(lambda: r.exists(f"{K}:conf") and r.hget(host, "unwritten") == "0",
                   timeout=15, what="corrald's first heartbeat")
        ids = [enqueue(r, {"i": i}) for i in range(40)]
        wait_until(lambda: int(r.hget(host, "unwritten") or 0) > SLOTS, timeout=15,
                   what="the host heartbeat to count the worker's unwritten outcomes")
        assert int(r.hget(host, "unwritten")) <= 2 * SLOTS, (tmp_path / "corrald.log").read_text()
        r.execute_command("ACL", "SETUSER", "bp", "+fcall")
        for jid in ids:
            assert await_end(r, jid, timeout=30)["state"] == "done"
        wait_until(lambda: r.hget(host, "unwritten") == "0", timeout=15,
                   what="the host heartbeat to show nothing unwritten")
        corrald.send_signal(signal.SIGTERM)
        assert corrald.wait(timeout=20) == 0
        log.close()
        assert "Sanitizer" not in (tmp_path / "corrald.log").read_text()
    finally:
        if corrald is not None and corrald.poll() is None:
            corrald.kill()
            corrald.wait()
        server.cleanup()
