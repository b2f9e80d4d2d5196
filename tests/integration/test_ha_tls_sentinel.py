"""Sentinel and TLS together (docs/ha.md, "How it runs"): corrald routes
every replica the sentinels know through its stunnel, so the TLS route to
the next master is bound before a failover names it, and its workers --
which have no proxy of their own -- reach the new master at once."""
import os
import socket
import time

import pytest

from conftest import MODE, wait_until
from hafixtures import *  # noqa: F401,F403 (fixtures)
from hafixtures import MASTER_NAME
from test_supervisor import Corrald, reap
from worker_fixtures import Q, enqueue, job

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own TLS servers: run once")


def _all_done(client, ids):
    return all((job(client, i) or {}).get("state") == "done" for i in ids)


def test_corralds_workers_reach_a_new_master_over_tls_through_a_route_made_before_the_failover(
        sentinel_cluster, pki, build_dir, tmp_path):
    c = sentinel_cluster(tls=True)
    crt, key = pki.paths("client")
    conf = tmp_path / "corrald.conf"
    conf.write_text(f"[redis]\nurl = rediss:///0\nsentinels = {c.sentinel_addrs()}\n"
                    f"sentinel_master = {MASTER_NAME}\ntls_ca_file = {pki.ca}\n"
                    f"tls_cert_file = {crt}\ntls_key_file = {key}\n"
                    "[pool]\nmin = 1\nmax = 1\nconcurrency = 2\n[scale]\ntick = 250ms\n"
                    f"[queue {Q}]\nhandler = echo\n")
    tls_dir = tmp_path / "tls"
    d = Corrald(os.path.join(build_dir, "corrald"), str(conf), str(tmp_path / "corrald.log"),
                env=dict(os.environ, CORRAL_TLS_DIR=str(tls_dir)))
    try:
        old = c.master()
        m = old.client()
        host = socket.gethostname()
        wait_until(lambda: m.exists(f"corral:host:{host}"), timeout=20,
                   what="corrald's heartbeat through TLS\n" + d.logs())
        replica = c.replica()
        route = tls_dir / f"127.0.0.1_{replica.port}.sock"
        # the replica -- the next master -- is routed before any failover
        wait_until(lambda: route.exists(), timeout=10,
                   what=f"the TLS route to the replica ({route})\n" + d.logs())
        before = [enqueue(m, {"n": i}) for i in range(5)]
        wait_until(lambda: _all_done(m, before), what="jobs before the failover")

        old, new = c.failover()
        t0 = time.monotonic()
        n = new.client()
        after = [enqueue(n, {"n": i}) for i in range(20)]
        wait_until(lambda: _all_done(n, after), timeout=10, interval=0.02,
                   what="jobs on the new master over TLS\n" + d.logs())
        took = time.monotonic() - t0
        print(f"\nsentinel failover over TLS: 20 jobs done on the new master {took:.2f} s "
              "after the sentinels' switch")
        assert took < 2.0, d.logs()
        logs = d.logs()
        routed = logs.find(f"route added host=127.0.0.1 port={new.port}")
        switched = logs.find("the sentinels switched the master")
        assert 0 <= routed < switched, "the route to the new master came after the switch"
    finally:
        reap([d])
