"""A real Redis Cluster for the tests of docs/design.md "Redis Cluster
slots": three primaries and three replicas, each a redis-server from
Debian's package on a loopback port with cluster-enabled, joined with
`redis-cli --cluster create --cluster-replicas 1`. Every process is killed
and every dir removed at the end.

Fixture (import it into a test module: `from clusterfixtures import *`):
`redis_cluster` (module scope), a Cluster with:
- nodes: the six Nodes (hafixtures.Node), primaries()/replicas() by role;
- seeds: "host:port,..." of the primaries;
- owner(slot): the primary serving slot, asked of the cluster itself;
- migrate_slot(slot, dest, keys_per_step=10, pause=None): the live
  migration of a slot as redis-cli does it (SETSLOT IMPORTING/MIGRATING,
  MIGRATE the keys, SETSLOT NODE everywhere), with an optional callback run
  while the slot is half moved;
- fail_over(primary): kill -9 the primary and wait until a replica is
  promoted and the cluster is ok again;
- queues_on_primaries(count): queue names, each on a different primary;
- flushall(): every primary emptied.
Also `spread` (module scope): three queues, one on each primary.
"""
import os
import shutil
import subprocess
import tempfile

import pytest
import redis

from conftest import free_port, wait_until
from hafixtures import Node

CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"]


class ClusterNode(Node):
    """A Node with cluster mode on. Its cluster bus gets a free port of its
    own (cluster-port): the default, the data port + 10000, may be taken or
    past 65535 for the ephemeral ports free_port() hands out. A port found
    free may be taken before redis-server binds it (by another node of the
    cluster, or another test): start() then tries again on new ports, and
    names the server's own words when it cannot."""

    def __init__(self, name, root):
        super().__init__(name, root, extra=self._args())

    @staticmethod
    def _args():
        return CLUSTER_ARGS + ["--cluster-port", str(free_port())]

    def start(self, replicaof=None):
        for attempt in range(3):
            try:
                return super().start(replicaof)
            except AssertionError:
                log = os.path.join(self.dir, "redis.log")
                text = open(log).read()[-2000:] if os.path.exists(log) else ""
                if attempt == 2 or "bind" not in text.lower():
                    raise AssertionError(f"redis-server {self.name} did not start:\n{text}")
                self.port, self.extra = free_port(), self._args()


class Cluster:
    def __init__(self, root):
        self.root = root
        self.nodes = [ClusterNode(f"cluster{i}", root) for i in range(6)]

    def start(self):
        for n in self.nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        p = subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas",
                            "1", "--cluster-yes"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed:\n{p.stdout}")
        self.wait_ok()
        return self

    def client(self, node):
        return node.client()

    def state_ok(self, node):
        c = node.client()
        try:
            info = c.execute_command("CLUSTER", "INFO")
            return "cluster_state:ok" in info
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            c.close()

    def wait_ok(self, timeout=30):
        def ok():
            live = [n for n in self.nodes if n.running()]
            if not all(self.state_ok(n) for n in live):
                return False
            # Every live node agrees on who serves slot 0..16383 (no
            # unassigned slot) and the replicas have synced.
            return all(len(self.slot_owners(n)) == 16384 for n in live[:1])

        wait_until(ok, timeout=timeout, what="the cluster to be ok on every node")

    def slot_owners(self, node):
        c = node.client()
        try:
            owners = {}
            for lo, hi, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                for s in range(lo, hi + 1):
                    owners[s] = int(primary[1])
            return owners
        finally:
            c.close()

    def by_port(self, port):
        return next(n for n in self.nodes if n.port == port)

    def primaries(self):
        return [n for n in self.nodes if n.running() and n.role() == "master"]

    def replicas(self):
        return [n for n in self.nodes if n.running() and n.role() == "slave"]

    @property
    def seeds(self):
        return ",".join(f"127.0.0.1:{n.port}" for n in self.primaries())

    def keyslot(self, key):
        c = self.primaries()[0].client()
        try:
            return int(c.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            c.close()

    def owner(self, slot):
        return self.by_port(self.slot_owners(self.primaries()[0])[slot])

    def queues_on_primaries(self, count):
        """count queues of CANDIDATES, each on a different primary: {queue:
        its primary Node}."""
        by_node = {}
        for q in CANDIDATES:
            node = self.owner(self.keyslot(f"corral:{{{q}}}"))
            by_node.setdefault(node.port, (q, node))
        picked = list(by_node.values())[:count]
        assert len(picked) == count, f"the candidate names cover {count} primaries"
        return {q: node for q, node in picked}

    def flushall(self):
        """Empties every primary (their replicas follow)."""
        for n in self.primaries():
            c = n.client()
            try:
                c.flushall()
            finally:
                c.close()

    def node_id(self, node):
        c = node.client()
        try:
            return c.execute_command("CLUSTER", "MYID")
        finally:
            c.close()

    def migrate_slot(self, slot, dest, keys_per_step=10, pause=None):
        src = self.owner(slot)
        src_id, dest_id = self.node_id(src), self.node_id(dest)
        sc, dc = src.client(), dest.client()
        try:
            dc.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            sc.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dest_id)
            if pause is not None:
                pause()
            while True:
                keys = sc.execute_command("CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
                if not keys:
                    break
                sc.execute_command("MIGRATE", "127.0.0.1", dest.port, "", 0, 5000, "KEYS",
                                   *keys)
            for n in self.primaries():
                c = n.client()
                try:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dest_id)
                finally:
                    c.close()
        finally:
            sc.close()
            dc.close()

    def fail_over(self, primary):
        primary.kill()
        wait_until(lambda: all(self.state_ok(n) for n in self.nodes if n.running())
                   and len(self.primaries()) == 3, timeout=30,
                   what="a replica promoted and the cluster ok")

    def stop(self):
        for n in self.nodes:
            n.kill()


@pytest.fixture(scope="module")
def redis_cluster():
    for prog in ("redis-server", "redis-cli"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} is not installed")
    root = tempfile.mkdtemp(prefix="corral-cluster-")
    cl = Cluster(root)
    try:
        cl.start()
        yield cl
    finally:
        cl.stop()
        shutil.rmtree(root, ignore_errors=True)


# Queue names whose hash tags {name} cover the three primaries of the
# Cluster redis-cli --cluster create makes (the slots split in three).
CANDIDATES = ["prompts", "embeddings", "images", "audio", "batch", "chat", "eval", "rerank",
              "ocr", "speech", "vision", "code"]


@pytest.fixture(scope="module")
def spread(redis_cluster):
    """Three queues, one on each primary: {queue: primary Node}."""
    return redis_cluster.queues_on_primaries(3)
