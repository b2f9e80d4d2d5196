"""corral's own Redis Cluster routing (queue/cluster.c, docs/design.md
"Redis Cluster slots") against a real cluster of three primaries and three
replicas (clusterfixtures.py), driven by tests/helpers/cluster_probe: the
key slot agrees with the cluster's, each command goes to the primary that
owns its key's slot, MOVED is followed after a slot moved (the map read
again), ASK during a live migration (for that command only), and a killed
primary's slots are found on its promoted replica. Bad input: seeds where no
node answers, a node not in cluster mode."""
import os
import subprocess

import pytest

from clusterfixtures import *  # noqa: F401,F403
from conftest import free_port
from hafixtures import Node

QUEUES = ["prompts", "embeddings", "images", "audio", "batch", "chat", "eval", "rerank"]


@pytest.fixture(scope="module")
def probe(build_dir):
    path = os.path.join(build_dir, "tests", "helpers", "cluster_probe")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (make)")
    return path


class Router:
    """One cluster_probe run: commands in, one reply line and the
    router's refresh count out, per command."""

    def __init__(self, probe, seeds):
        self.p = subprocess.Popen([probe, seeds, "run"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, *words):
        self.p.stdin.write(" ".join(words) + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().rstrip("\n")
        refreshes = int(self.p.stdout.readline().split()[1])
        return reply, refreshes

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(timeout=10)
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        return rc, err


def test_key_slots_agree_with_the_cluster(redis_cluster, probe):
    r = Router(probe, redis_cluster.seeds)
    try:
        for q in QUEUES:
            key = f"corral:{{{q}}}:high"
            # The router's slot is the cluster's when the owner accepts the
            # key with no redirection (a MOVED would make it refresh).
            reply, refreshes = r.call(key, "SET", key, "v")
            assert reply == "=OK"
            assert refreshes == 1
    finally:
        assert r.close()[0] == 0


def test_map_names_every_slot_once_on_the_primaries(redis_cluster, probe):
    out = subprocess.run([probe, redis_cluster.seeds, "map"], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    covered = 0
    ports = {n.port for n in redis_cluster.primaries()}
    for line in filter(None, out):
        rng, addr = line.split()
        lo, hi = map(int, rng.split("-"))
        covered += hi - lo + 1
        assert int(addr.rsplit(":", 1)[1]) in ports
        assert redis_cluster.owner(lo).port == int(addr.rsplit(":", 1)[1])
    assert covered == 16384


def test_queues_land_on_their_owners_across_shards(redis_cluster, probe):
    r = Router(probe, redis_cluster.seeds)
    try:
        owners = set()
        for q in QUEUES:
            key = f"corral:{{{q}}}:wait"
            assert r.call(key, "RPUSH", key, "job1")[0] == ":1"
            owner = redis_cluster.owner(redis_cluster.keyslot(key))
            c = owner.client()
            try:
                # READONLY-free check on the owner itself: the key is there.
                assert c.execute_command("LLEN", key) == 1
            finally:
                c.close()
            owners.add(owner.port)
        assert len(owners) >= 2, "the eight queues should spread over several shards"
    finally:
        assert r.close()[0] == 0


def test_moved_is_followed_after_a_slot_moves(redis_cluster, probe):
    key = "corral:{moving}:wait"
    slot = redis_cluster.keyslot(key)
    r = Router(probe, redis_cluster.seeds)
    try:
        assert r.call(key, "RPUSH", key, "a")[0] == ":1"
        before = r.call(key, "LLEN", key)[1]
        src = redis_cluster.owner(slot)
        dest = next(n for n in redis_cluster.primaries() if n.port != src.port)
        redis_cluster.migrate_slot(slot, dest)
        reply, refreshes = r.call(key, "RPUSH", key, "b")
        assert reply == ":2", "the job pushed before the move must have moved with the slot"
        assert refreshes == before + 1, "a MOVED reads the map again, once"
        c = dest.client()
        try:
            assert c.execute_command("LRANGE", key, 0, -1) == ["a", "b"]
        finally:
            c.close()
    finally:
        assert r.close()[0] == 0


def test_ask_is_followed_during_a_live_migration(redis_cluster, probe):
    """While a slot is half moved, a key already on the importing node is
    reached by ASK (ASKING, then the command) without reading the map again;
    once the migration ends, MOVED takes over."""
    moved_key, stay_key = "corral:{asking}:a", "corral:{asking}:b"
    slot = redis_cluster.keyslot(moved_key)
    r = Router(probe, redis_cluster.seeds)
    seen = {}
    try:
        assert r.call(moved_key, "SET", moved_key, "1")[0] == "=OK"
        assert r.call(stay_key, "SET", stay_key, "2")[0] == "=OK"
        base = r.call(stay_key, "GET", stay_key)[1]
        src = redis_cluster.owner(slot)
        dest = next(n for n in redis_cluster.primaries() if n.port != src.port)

        def half_moved():
            sc = src.client()
            try:
                sc.execute_command("MIGRATE", "127.0.0.1", dest.port, moved_key, 0, 5000)
            finally:
                sc.close()
            seen["moved"] = r.call(moved_key, "GET", moved_key)
            seen["stayed"] = r.call(stay_key, "GET", stay_key)

        redis_cluster.migrate_slot(slot, dest, pause=half_moved)
        assert seen["moved"] == ("=1", base), "ASK followed without a map refresh"
        assert seen["stayed"] == ("=2", base)
        assert r.call(stay_key, "GET", stay_key) == ("=2", base + 1)
    finally:
        assert r.close()[0] == 0


def test_a_killed_primarys_slots_are_found_on_its_replica(redis_cluster, probe):
    key = "corral:{failing}:wait"
    slot = redis_cluster.keyslot(key)
    seeds = redis_cluster.seeds
    r = Router(probe, seeds)
    try:
        assert r.call(key, "RPUSH", key, "job")[0] == ":1"
        old = redis_cluster.owner(slot)
        c = old.client()
        try:
            c.execute_command("WAIT", 1, 5000)
        finally:
            c.close()
        redis_cluster.fail_over(old)
        reply, _ = r.call(key, "LLEN", key)
        assert reply == ":1", "the promoted replica holds the confirmed job"
        assert redis_cluster.owner(slot).port != old.port
    finally:
        rc, err = r.close()
        assert rc == 0, err


def test_no_seed_answers_is_named(probe):
    dead = [free_port(), free_port()]
    p = subprocess.run([probe, ",".join(f"127.0.0.1:{d}" for d in dead), "map"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert "no node gave the slot map" in p.stderr
    for d in dead:
        assert f"127.0.0.1:{d}" in p.stderr


def test_a_node_not_in_cluster_mode_is_named(tmp_path, probe):
    plain = Node("plain", str(tmp_path)).start()
    try:
        p = subprocess.run([probe, f"127.0.0.1:{plain.port}", "map"], capture_output=True,
                           text=True)
        assert p.returncode == 1
        assert "not in cluster mode" in p.stderr
    finally:
        plain.kill()
