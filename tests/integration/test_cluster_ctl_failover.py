"""corralctl while a Redis Cluster fails over (docs/design.md, "Redis
Cluster slots"; docs/bad-input.md): an enqueue sent while the queue's
primary is dead and its replica not yet promoted meets a refused
connection, then CLUSTERDOWN; the call did not run, so corralctl waits with
back-off and sends it to the promoted replica instead of failing. A cluster
of its own (this module kills a primary)."""
import subprocess

from clusterfixtures import *  # noqa: F401,F403
from conftest import binary_path, wait_until
from test_cluster_ctl import holds, write_conf


def test_an_enqueue_during_a_failover_waits_and_lands_at_the_promoted_replica(
        redis_cluster, build_dir, tmp_path):
    # A queue on the same primary as the queue registry (<prefix>:queues),
    # which corralctl connects to first: both waits are needed.
    reg = redis_cluster.owner(redis_cluster.keyslot("corral:queues"))
    q = next(n for n in ("prompts", "embeddings", "images", "audio", "batch", "chat", "eval",
                         "rerank", "ocr", "speech", "vision", "code", "q1", "q2", "q3", "q4")
             if redis_cluster.owner(redis_cluster.keyslot(f"corral:{{{n}}}")).port == reg.port)
    conf = write_conf(tmp_path / "corral.conf", redis_cluster.seeds, [q])
    ctl = binary_path(build_dir, "corralctl")
    first = subprocess.run([ctl, "-c", conf, "enqueue", q, "{}"], capture_output=True,
                           text=True, timeout=30)
    assert first.returncode == 0, first.stderr  # declared, and the library everywhere
    slot = redis_cluster.keyslot(f"corral:{{{q}}}")
    primary = redis_cluster.owner(slot)
    primary.kill()  # no failover yet: its replica is promoted ~2 s later
    p = subprocess.run([ctl, "-c", conf, "enqueue", q, '{"during": "failover"}'],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    redis_cluster.wait_ok()
    promoted = redis_cluster.owner(slot)
    assert promoted.port != primary.port
    assert holds(promoted, f"corral:{{{q}}}:job:{p.stdout.strip()}")
