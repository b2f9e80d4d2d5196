"""Failover wired into the programs (issue 18, docs/ha.md "When to look
again"): a worker that finds itself on a node that is no longer the master
connects again, resolving its address anew, and takes the jobs queued on the
new master; the outcomes it held are written there."""
import os
import socket
import subprocess
import time

import pytest  # noqa: F401  (fixtures)

from conftest import MODE, binary_path, wait_until
from hafixtures import MASTER_NAME, managed_pair, pki, sentinel_cluster  # noqa: F401
from test_supervisor import Corrald, reap
from worker_fixtures import Q, enqueue, job, make_worker, stub  # noqa: F401

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

ECHO_Q = "handler = echo"


def _all_done(client, ids):
    return all((job(client, i) or {}).get("state") == "done" for i in ids)


def test_worker_follows_a_dns_style_switch_and_drains_the_new_master(managed_pair, make_worker):
    p = managed_pair()
    url = f"redis://{p.addr[0]}:{p.addr[1]}/0"
    w = make_worker(ECHO_Q, redis_url=url, ready=False)
    m = p.master.client()
    wait_until(lambda: m.exists(f"corral:{{{Q}}}:conf"), what="the worker to declare its queue")
    first = [enqueue(m, {"n": i}) for i in range(5)]
    wait_until(lambda: _all_done(m, first), what="jobs before the switch to end")

    old, new = p.switch()
    n = new.client()
    t0 = time.monotonic()
    after = [enqueue(n, {"n": i}) for i in range(24)]
    wait_until(lambda: _all_done(n, after), timeout=5,
               what="the jobs queued on the new master to be taken (worker stuck on the "
                    "demoted master?)\n" + w.logs())
    took = time.monotonic() - t0
    print(f"dns-style switch: 24 jobs done on the new master {took:.2f} s after the switch")
    assert w.proc.poll() is None
    assert "not the master" in w.logs()


def test_outcomes_of_jobs_running_across_a_switch_are_written_to_the_new_master(
        managed_pair, make_worker):
    p = managed_pair()
    url = f"redis://{p.addr[0]}:{p.addr[1]}/0"
    w = make_worker("handler = exec\ncommand = /bin/sh -c 'sleep 1.5; cat'", redis_url=url,
                    ready=False)
    m = p.master.client()
    wait_until(lambda: m.exists(f"corral:{{{Q}}}:conf"), what="the worker to declare its queue")
    ids = [enqueue(m, {"n": i}) for i in range(4)]
    wait_until(lambda: all((job(m, i) or {}).get("state") == "active" for i in ids),
               what="the four jobs to run")
    old, new = p.switch()
    n = new.client()
    wait_until(lambda: _all_done(n, ids), timeout=10,
               what="the outcomes to reach the new master\n" + w.logs())
    # each ran once: its outcome was kept and written, not the job run again
    assert [job(n, i)["attempts"] for i in ids] == [1, 1, 1, 1]


def test_corralctl_on_a_replica_is_refused_naming_the_replica(managed_pair, build_dir, tmp_path):
    p = managed_pair()
    conf = tmp_path / "replica.conf"
    conf.write_text(f"[redis]\nurl = unix://{p.replica.socket}\n[queue {Q}]\n{ECHO_Q}\n")
    out = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(conf), "enqueue", Q,
                          "{}"], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert "is a replica, not the master" in out.stderr, out.stderr


def _sentinel_url(cluster):
    return (f"redis:///0\nsentinels = {cluster.sentinel_addrs()}\n"
            f"sentinel_master = {MASTER_NAME}")


def _enqueue_confirmed(client, n, tag):
    """n jobs, each confirmed by the replica (WAIT 1) -> their ids."""
    ids = []
    for i in range(n):
        ids.append(enqueue(client, {"tag": tag, "n": i}))
        assert client.execute_command("WAIT", 1, 2000) >= 1
    return ids


@pytest.mark.parametrize("kind", ["sentinel-failover", "kill-9", "sigstop"])
def test_worker_with_sentinels_takes_jobs_from_the_new_master_within_2s(
        kind, sentinel_cluster, make_worker):
    c = sentinel_cluster()
    w = make_worker(ECHO_Q, redis_url=_sentinel_url(c), ready=False)
    m = c.master().client()
    wait_until(lambda: m.exists(f"corral:{{{Q}}}:conf"), what="the worker to declare its queue")
    before = _enqueue_confirmed(m, 10, "before")
    wait_until(lambda: _all_done(m, before), what="jobs before the failover to end")

    if kind == "sentinel-failover":
        old, new = c.failover()
    elif kind == "kill-9":
        old, new = c.kill_master()
    else:
        # Frozen past down-after-milliseconds; the worker must leave it on
        # the sentinels' +switch-master, while it still answers as master.
        c.wait_ready()
        old = c.master()
        old.freeze()
        try:
            new = c.wait_switched(old)
        finally:
            old.thaw()
    t0 = time.monotonic()
    n = new.client()
    after = [enqueue(n, {"tag": "after", "n": i}) for i in range(20)]
    wait_until(lambda: _all_done(n, after), timeout=10, interval=0.02,
               what=f"jobs on the new master after {kind}\n" + w.logs())
    took = time.monotonic() - t0
    print(f"\n{kind}: 20 jobs done on the new master {took:.2f} s after the sentinels' switch")
    assert took < 2.0, w.logs()
    # nothing confirmed was lost
    assert _all_done(n, before)
    assert w.proc.poll() is None
    if kind == "sigstop":  # left on the event, not on an error
        assert "the sentinels switched the master" in w.logs()


def test_corrald_and_its_workers_leave_a_frozen_master_on_switch_master(
        sentinel_cluster, build_dir, tmp_path):
    c = sentinel_cluster()
    conf = tmp_path / "corrald.conf"
    conf.write_text(f"[redis]\nurl = {_sentinel_url(c)}\n"
                    "[pool]\nmin = 1\nmax = 1\nconcurrency = 2\n"
                    "[scale]\ntick = 250ms\n"
                    f"[queue {Q}]\n{ECHO_Q}\n")
    d = Corrald(os.path.join(build_dir, "corrald"), str(conf), str(tmp_path / "corrald.log"))
    try:
        m = c.master().client()
        host = socket.gethostname()
        wait_until(lambda: m.exists(f"corral:host:{host}"), what="corrald's heartbeat")
        before = _enqueue_confirmed(m, 5, "before")
        wait_until(lambda: _all_done(m, before), what="jobs before the freeze to end")
        c.wait_ready()
        old = c.master()
        old.freeze()
        try:
            new = c.wait_switched(old)
            t0 = time.monotonic()
            n = new.client()
            n.delete(f"corral:host:{host}")  # the copy replicated from the old master
            after = [enqueue(n, {"n": i}) for i in range(10)]
            wait_until(lambda: n.exists(f"corral:host:{host}"), timeout=5, interval=0.02,
                       what="corrald's heartbeat on the new master\n" + d.logs())
            beat = time.monotonic() - t0
            wait_until(lambda: _all_done(n, after), timeout=5, interval=0.02,
                       what="jobs on the new master")
            took = time.monotonic() - t0
        finally:
            old.thaw()
        print(f"\nsigstop, corrald: heartbeat on the new master after {beat:.2f} s, "
              f"its worker drained 10 jobs in {took:.2f} s")
        assert beat < 2.0 and took < 2.0
        assert "the sentinels switched the master" in d.logs()
        assert _all_done(n, before)
    finally:
        reap([d])


def _min_replicas_conf(tmp_path, master, n=1):
    conf = tmp_path / "durable.conf"
    conf.write_text(f"[redis]\nurl = unix://{master.socket}\nmin_replicas = {n}\n"
                    f"[queue {Q}]\n{ECHO_Q}\n")
    return str(conf)


def test_enqueue_with_min_replicas_is_confirmed_by_the_replica(managed_pair, build_dir,
                                                                tmp_path):
    p = managed_pair()
    out = subprocess.run([binary_path(build_dir, "corralctl"), "-c",
                          _min_replicas_conf(tmp_path, p.master), "enqueue", Q, "{}"],
                         capture_output=True, text=True, timeout=20)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert job(p.replica.client(), out.stdout.strip())["state"] == "queued"


def test_enqueue_the_replicas_did_not_confirm_prints_the_id_and_exits_3(
        managed_pair, build_dir, tmp_path):
    p = managed_pair()
    p.replica.freeze()
    try:
        t0 = time.monotonic()
        out = subprocess.run([binary_path(build_dir, "corralctl"), "-c",
                              _min_replicas_conf(tmp_path, p.master), "enqueue", Q, "{}"],
                             capture_output=True, text=True, timeout=20)
        took = time.monotonic() - t0
    finally:
        p.replica.thaw()
    assert out.returncode == 3, out.stderr
    jid = out.stdout.strip()
    assert f"job {jid}: not confirmed by 1 replica within 1000 ms (0 did)" in out.stderr
    assert job(p.master.client(), jid)["state"] == "queued"
    assert took < 10


def _enqueue_many(build_dir, conf, lines):
    return subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, "enqueue", Q,
                           "--many"], input="".join(f'{{"n": {i}}}\n' for i in range(lines)),
                          capture_output=True, text=True, timeout=20)


def test_enqueue_many_with_min_replicas_is_confirmed_by_the_replica(managed_pair, build_dir,
                                                                    tmp_path):
    p = managed_pair()
    out = _enqueue_many(build_dir, _min_replicas_conf(tmp_path, p.master), 3)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    ids = out.stdout.split()
    assert len(ids) == 3
    assert all(job(p.replica.client(), i)["state"] == "queued" for i in ids)


def test_enqueue_many_the_replicas_did_not_confirm_prints_the_ids_and_exits_3(
        managed_pair, build_dir, tmp_path):
    p = managed_pair()
    p.replica.freeze()
    try:
        out = _enqueue_many(build_dir, _min_replicas_conf(tmp_path, p.master), 3)
    finally:
        p.replica.thaw()
    assert out.returncode == 3, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 3
    assert (f"stdin lines 1-3 (jobs {ids[0]} to {ids[2]}): not confirmed by 1 replica "
            "within 1000 ms (0 did)") in out.stderr
    assert all(job(p.master.client(), i)["state"] == "queued" for i in ids)
