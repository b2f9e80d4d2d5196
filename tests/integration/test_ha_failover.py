"""Failover wired into the programs (issue 18, docs/ha.md "When to look
again"): a worker that finds itself on a node that is no longer the master
connects again, resolving its address anew, and takes the jobs queued on the
new master; the outcomes it held are written there."""
import subprocess
import time

import pytest  # noqa: F401  (fixtures)

from conftest import binary_path, wait_until
from hafixtures import managed_pair  # noqa: F401
from worker_fixtures import Q, enqueue, job, make_worker, stub  # noqa: F401

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


def test_corralctl_on_a_replica_is_refused_naming_the_replica(managed_pair, build_dir, tmp_path):
    p = managed_pair()
    conf = tmp_path / "replica.conf"
    conf.write_text(f"[redis]\nurl = unix://{p.replica.socket}\n[queue {Q}]\n{ECHO_Q}\n")
    out = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(conf), "enqueue", Q,
                          "{}"], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert "is a replica, not the master" in out.stderr, out.stderr
