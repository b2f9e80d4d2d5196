"""A short chaos run inside make test: a few hundred jobs through two
corrald processes on one Redis (AOF on), with each fault of the full run
(tests/chaos, docs/chaos.md) thrown once, in an order the seed picks: the
processes killed, stopped, or slow past their lease; Redis killed, frozen,
or full; the AI service failing, throttling or hanging; running jobs
cancelled, and a job whose deadline passes while it runs."""
import os
import random
import sys

from conftest import REPO, binary_path

sys.path.insert(0, os.path.join(REPO, "tests", "chaos"))
import chaosdriver  # noqa: E402


def test_a_short_chaos_run_loses_no_job_and_runs_none_twice_without_a_crash(build_dir):
    binary_path(build_dir, "corrald")
    binary_path(build_dir, "corral-worker")
    # A fixed order of faults unless CHAOS_SEED says otherwise: make test is
    # what CI runs, and a new order each time belongs to make chaos.
    seed = int(os.environ.get("CHAOS_SEED", "20261123"))
    faults = list(chaosdriver.FAULTS)
    random.Random(seed).shuffle(faults)
    settings = chaosdriver.Settings(
        jobs=300, enqueue_s=10.0, seed=seed, fault_list=tuple(faults),
        slow_ms=(50, 300), ai_fail_s=2.0, ai_429_s=1.5, ai_hang_s=2.0,
        max_workers=3, concurrency=4, hang_timeout="3s", job_timeout="1500ms",
        lease="8s", freeze_s=4.0, drain_timeout="3s", drain_deadline_s=25.0, verbose=True)
    print(f"\nchaos seed {seed}")
    fig = chaosdriver.run(build_dir, settings)
    # Every job made is accounted for: its enqueue refused by the full Redis,
    # or lost with the last AOF second of a kill -9, or it ended done or dead.
    assert fig["kinds"]["once"] == 2  # slow_worker's and full_redis's own jobs
    assert fig["kinds"]["cancel"] == 1 and fig["kinds"]["deadline"] == 1  # theirs
    assert sum(fig["kinds"].values()) == 300 + 4
    assert fig["jobs"] + fig["enqueues_refused_by_full_redis"] == 300 + 4
    assert fig["cancelled"] >= 1 or fig["anomalies"]
    assert fig["done"] + fig["dead"] + fig["cancelled"] + \
        len(fig["enqueues_lost_with_redis"]) == fig["jobs"]
    assert all(n == 1 for n in fig["faults"].values()), fig["faults"]
