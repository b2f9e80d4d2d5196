"""corralctl status and metrics never show a fleet they could not read:
any read that fails makes status (and --json) exit non-zero naming what
failed, --watch shows the error and keeps watching, and metrics says
corral_up 0 with the reason (docs/bad-input.md)."""
import os
import subprocess
import time

import pytest

from conftest import (ACL_PASSWORD, RedisServer, acl_setuser_args, binary_path, load_library,
                      wait_until)


@pytest.fixture
def ctl(build_dir, tmp_path, redis_server, r):
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[queue jobs]\nhandler = echo\n")
    exe = binary_path(build_dir, "corralctl")

    def run(*args, config=conf):
        return subprocess.run([exe, "-c", str(config), *args], capture_output=True, text=True,
                              timeout=30)
    run.exe, run.conf = exe, conf
    r.fcall("corral_declare", 1, "jobs", "{}")
    return run


def test_status_fails_naming_a_queue_whose_statistics_cannot_be_read(ctl, r):
    # in the registry, but with no record: corral_stats refuses it
    r.sadd("corral:queues", "ghost")
    for args in (["status"], ["status", "--json"]):
        res = ctl(*args)
        assert res.returncode == 1, (args, res.stdout)
        assert "queue ghost" in res.stderr and "unknown queue" in res.stderr, res.stderr
        assert res.stdout == ""


def test_status_fails_naming_a_host_whose_heartbeat_cannot_be_read(ctl, r):
    r.set("corral:host:broken", "not a hash")
    r.zadd("corral:hosts", {"broken": int(time.time() * 1000)})
    res = ctl("status", "--json")
    assert res.returncode == 1
    assert "host broken" in res.stderr and "WRONGTYPE" in res.stderr, res.stderr


def test_metrics_reports_corral_up_0_with_the_reason_when_a_read_fails(ctl, r):
    assert "corral_up 1" in ctl("metrics").stdout
    r.sadd("corral:queues", "ghost")
    res = ctl("metrics")
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert "corral_up 0" in lines and "corral_up 1" not in lines
    why = [l for l in lines if l.startswith("# corral_up 0: ")]
    assert len(why) == 1 and "queue ghost" in why[0], res.stdout
    assert not any(l.startswith("corral_queue_") for l in lines)  # no half a view


def test_metrics_reports_corral_up_0_when_redis_cannot_be_reached(ctl, tmp_path):
    res = ctl("--redis", f"unix://{tmp_path}/nobody.sock", "metrics")
    assert res.returncode == 1
    assert "corral_up 0" in res.stdout.splitlines()
    assert "# corral_up 0: " in res.stdout and "nobody.sock" in res.stdout


def test_status_watch_shows_the_error_and_recovers(ctl, r, tmp_path):
    out, err = open(tmp_path / "out", "w"), open(tmp_path / "err", "w")
    p = subprocess.Popen([ctl.exe, "-c", str(ctl.conf), "status", "--watch", "0.2"],
                         stdout=out, stderr=err, text=True)
    try:
        wait_until(lambda: "QUEUE" in (tmp_path / "out").read_text(), what="a first view")
        r.sadd("corral:queues", "ghost")
        wait_until(lambda: "queue ghost" in (tmp_path / "err").read_text(),
                   what="the error on stderr")
        assert p.poll() is None, "--watch must keep watching"
        r.srem("corral:queues", "ghost")
        seen = len((tmp_path / "out").read_text())
        wait_until(lambda: "QUEUE" in (tmp_path / "out").read_text()[seen:], timeout=15,
                   what="a view again after the error cleared")
        # one complaint while it lasted (and its count), not one per refresh
        said = [l for l in (tmp_path / "err").read_text().splitlines()
                if "cannot read the fleet" in l and "repeated=" not in l]
        assert len(said) == 1, said
    finally:
        p.terminate()
        p.wait(timeout=10)
        out.close()
        err.close()


@pytest.fixture
def acl_redis():
    srv = RedisServer(mode="tcp-acl")
    srv.start()
    yield srv
    srv.cleanup()


def test_status_and_metrics_fail_for_an_acl_user_without_fcall_ro(build_dir, tmp_path, acl_redis):
    admin = acl_redis.client(decode_responses=True)
    args = [a for a in acl_setuser_args() if a != "+fcall_ro"]
    args[1] = "nofcallro"  # ACL SETUSER <name> ...
    admin.execute_command("ACL", *args)
    # a fleet that is really there: the library, a queue with a job
    load_library(admin)
    admin.fcall("corral_declare", 1, "jobs", "{}")
    admin.fcall("corral_enqueue", 1, "jobs", "{}")
    pw = tmp_path / "pw"
    pw.write_text(ACL_PASSWORD + "\n")
    conf = tmp_path / "c.conf"
    conf.write_text(f"[redis]\nurl = redis://nofcallro@127.0.0.1:{acl_redis.port}/0\n"
                    f"password_file = {pw}\n")
    exe = binary_path(build_dir, "corralctl")

    def run(*a):
        return subprocess.run([exe, "-c", str(conf), *a], capture_output=True, text=True,
                              timeout=30)
    for a in (["status"], ["status", "--json"]):
        res = run(*a)
        assert res.returncode != 0, (a, res.stdout)
        assert "NOPERM" in res.stderr and "fcall_ro" in res.stderr, res.stderr
    res = run("metrics")
    assert res.returncode != 0
    assert "corral_up 0" in res.stdout.splitlines() and "NOPERM" in res.stdout
    admin.close()
