"""The full failover chaos run (make chaos-failover): at least 5,000 jobs
over the http stand-in while the Redis under the fleet fails over --
SENTINEL FAILOVER, kill -9 of the master and SIGSTOP past
down-after-milliseconds, each twice, then three DNS-style switches without
Sentinel (tests/chaos/failover.py, docs/chaos.md "Failover").
FAILOVER_SEED, FAILOVER_JOBS and FAILOVER_ROUNDS change the run."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import failover  # noqa: E402


def test_no_confirmed_job_is_lost_through_every_kind_of_failover():
    build = os.environ.get("CORRAL_BUILD", os.path.join(failover.REPO, "build"))
    seed = int(os.environ.get("FAILOVER_SEED", int(time.time())))
    jobs = int(os.environ.get("FAILOVER_JOBS", 5000))
    s = failover.Settings(sentinel_jobs=jobs * 7 // 10, dns_jobs=jobs - jobs * 7 // 10,
                          rounds=int(os.environ.get("FAILOVER_ROUNDS", 2)), seed=seed)
    res = failover.run(build, s)
    failover.assert_figures(res, min_jobs=jobs * 95 // 100)
