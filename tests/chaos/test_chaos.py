"""The full chaos run (make chaos): 20,000 jobs through two corrald
processes on one Redis while workers, a supervisor, Redis and the AI
service are made to fail (tests/chaos/chaosdriver.py, docs/chaos.md).
CHAOS_SEED, CHAOS_JOBS and CHAOS_ENQUEUE_S change the run."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaosdriver  # noqa: E402


def test_every_job_ends_as_its_kind_says_whatever_is_killed():
    build = os.environ.get("CORRAL_BUILD", os.path.join(chaosdriver.REPO, "build"))
    seed = int(os.environ.get("CHAOS_SEED", int(time.time())))
    print(f"\nchaos seed {seed} (CHAOS_SEED={seed} repeats the job mix and fault order)")
    settings = chaosdriver.Settings(
        jobs=int(os.environ.get("CHAOS_JOBS", 20000)),
        enqueue_s=float(os.environ.get("CHAOS_ENQUEUE_S", 90)),
        seed=seed)
    fig = chaosdriver.run(build, settings)
    assert fig["done"] + fig["dead"] + fig["cancelled"] + \
        len(fig["enqueues_lost_with_redis"]) == fig["jobs"]
    assert fig["jobs"] + fig["enqueues_refused_by_full_redis"] == sum(fig["kinds"].values())
