"""A short failover chaos run inside make test (tests/chaos/failover.py,
docs/chaos.md "Failover"): a few hundred jobs over the http stand-in through
a master, a replica and three sentinels failed over once each way --
SENTINEL FAILOVER, kill -9, SIGSTOP past down-after-milliseconds -- then a
DNS-style switch without Sentinel. No confirmed job is lost or left
unfinished, none runs twice outside a failover's window, the fleet takes
jobs from each new master within 2 s, and the logs do not flood."""
import os
import sys

import pytest

from conftest import MODE, REPO, binary_path

sys.path.insert(0, os.path.join(REPO, "tests", "chaos"))
import failover  # noqa: E402

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")


def test_a_short_failover_run_loses_no_confirmed_job_and_recovers_within_2s(build_dir):
    binary_path(build_dir, "corrald")
    binary_path(build_dir, "corral-worker")
    s = failover.Settings(sentinel_jobs=500, dns_jobs=200, rounds=1, dns_switches=1,
                          rate=20.0, seed=int(os.environ.get("FAILOVER_SEED", "20261206")))
    res = failover.run(build_dir, s)
    failover.assert_figures(res, min_jobs=600)
