"""No retry loop floods: a worker that Redis keeps refusing (a wrong
password, a read-only replica, a user without +function|load) retries with
an exponential back-off capped at about 2 s and logs each trouble once,
then counts it; and the cap brings it back within about 2 s of a Redis
that was away (docs/worker.md, "Retries")."""
import time

import pytest

from conftest import MODE, RedisServer, binary_path, wait_until
from worker_fixtures import Q, Worker

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

WARMUP_S = 3  # the back-off grows from 250 ms to its cap meanwhile
WINDOW_S = 5


def connections(server):
    c = server.client()
    try:
        return c.info("stats")["total_connections_received"]
    finally:
        c.close()


def start_workers(build_dir, tmp_path, n, redis_section):
    conf = tmp_path / "w.conf"
    conf.write_text(redis_section + f"[pool]\nconcurrency = 2\n[queue {Q}]\nhandler = echo\n")
    exe = binary_path(build_dir, "corral-worker")
    return [Worker(exe, str(conf), str(tmp_path / f"w{i}.log")) for i in range(n)]


def stop_workers(workers):
    for w in workers:
        assert w.stop() == 0, w.logs()
        assert "Sanitizer" not in w.logs() and "runtime error" not in w.logs(), w.logs()


def kill_workers(workers):
    """No worker outlives its test, even a failed one."""
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def log_lines(workers):
    return sum(len(w.logs().splitlines()) for w in workers)


def assert_backs_off(server, workers, refusal):
    """Over a window after the warm-up: at most 2 connections a second per
    worker, and no new log line at all (each trouble was logged once)."""
    wait_until(lambda: all(refusal in w.logs() for w in workers), timeout=10,
               what=f"every worker to log {refusal!r}")
    time.sleep(WARMUP_S)
    conns0, lines0 = connections(server), log_lines(workers)
    time.sleep(WINDOW_S)
    conns, lines = connections(server) - conns0 - 1, log_lines(workers) - lines0
    assert conns <= 2 * len(workers) * WINDOW_S, f"{conns} connections in {WINDOW_S} s"
    assert conns >= len(workers) * WINDOW_S / 4, "the workers stopped trying"
    assert lines == 0, "\n".join(w.logs() for w in workers)
    for w in workers:
        assert w.proc.poll() is None, w.logs()
        assert w.logs().count(refusal) <= 2, w.logs()  # once per connection


def test_a_wrong_password_is_retried_with_back_off_and_logged_once(build_dir, tmp_path):
    server = RedisServer(mode="tcp-acl")
    server.start()
    workers = []
    try:
        pw = tmp_path / "wrong.pass"
        pw.write_text("not-the-password-3c9\n")
        section = (f"[redis]\nurl = redis://corral@127.0.0.1:{server.port}/0\n"
                   f"password_file = {pw}\n")
        workers = start_workers(build_dir, tmp_path, 4, section)
        assert_backs_off(server, workers, "WRONGPASS")
        assert all("not-the-password-3c9" not in w.logs() for w in workers)
        stop_workers(workers)
    finally:
        kill_workers(workers)
        server.cleanup()


def test_a_read_only_replica_is_retried_with_back_off_and_logged_once(build_dir, tmp_path):
    primary = RedisServer(mode="tcp-acl")  # for its TCP port; the replica uses default
    primary.start()
    replica = RedisServer()
    replica.start()
    workers = []
    try:
        rc = replica.client(decode_responses=True)
        rc.execute_command("REPLICAOF", "127.0.0.1", primary.port)
        wait_until(lambda: rc.info("replication")["master_link_status"] == "up",
                   what="the replica to sync")
        rc.close()
        workers = start_workers(build_dir, tmp_path, 2,
                                f"[redis]\nurl = unix://{replica.socket}\n")
        assert_backs_off(replica, workers, "READONLY")
        stop_workers(workers)
    finally:
        kill_workers(workers)
        replica.cleanup()
        primary.cleanup()


def test_a_user_without_function_load_is_retried_with_back_off_and_logged_once(
        build_dir, tmp_path):
    server = RedisServer(mode="tcp-acl")
    server.start()  # and no function library loaded
    workers = []
    try:
        c = server.client()
        c.execute_command("ACL", "SETUSER", "noload", "on", ">noload-pw", "~*", "&*", "+@all",
                          "-function|load")
        c.close()
        pw = tmp_path / "noload.pass"
        pw.write_text("noload-pw\n")
        section = (f"[redis]\nurl = redis://noload@127.0.0.1:{server.port}/0\n"
                   f"password_file = {pw}\n")
        workers = start_workers(build_dir, tmp_path, 2, section)
        assert_backs_off(server, workers, "NOPERM")
        assert all("FUNCTION LOAD" in w.logs() for w in workers)
        stop_workers(workers)
    finally:
        kill_workers(workers)
        server.cleanup()


def test_a_worker_is_back_within_about_2_s_of_a_redis_that_was_away(build_dir, tmp_path):
    server = RedisServer()
    server.start()
    workers = []
    try:
        workers = start_workers(build_dir, tmp_path, 1,
                                f"[redis]\nurl = unix://{server.socket}\n")
        w = workers[0]
        # commands, blocking, and the control channel (docs/worker.md, "Cancel")
        wait_until(lambda: w.logs().count("connected to redis") == 3,
                   what="the three connections to be ready")
        server.stop(kill=True)
        wait_until(lambda: "cannot connect to redis" in w.logs(), what="a failed reconnect")
        time.sleep(8)  # long enough for the back-off to reach its cap
        assert w.logs().count("cannot connect to redis") == 3, w.logs()  # once per connection
        server.start()
        t0 = time.monotonic()
        wait_until(lambda: w.logs().count("connected to redis") >= 6, timeout=10,
                   what="the three connections to be back")
        assert time.monotonic() - t0 < 3.0, w.logs()
        assert "repeated=" in w.logs()  # the held-back tries, counted
        stop_workers(workers)
    finally:
        kill_workers(workers)
        server.cleanup()
