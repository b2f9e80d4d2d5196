#!/usr/bin/env python3
"""make soak: steady load for an hour (by default) through two corrald
processes on one Redis, with a fault every half minute or so (the chaos
run's faults: tests/chaos/chaosdriver.py). Prints the RSS of both corrald
processes and of the workers every minute, checks every job at the end as
the chaos run does, and fails when corrald's or the workers' RSS grew.

usage: soak.py [--minutes M] [--rate JOBS_PER_S] [--fault-every S] [--seed N]"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaosdriver  # noqa: E402


class Minutes:
    """Prints one line a minute and keeps the samples."""

    def __init__(self):
        self.next = time.monotonic() + 60
        self.rows = []

    def __call__(self, ch):
        if time.monotonic() < self.next:
            return
        self.next += 60
        a = chaosdriver.proc_rss_kb(ch.hosts["A"].proc.pid)
        b = chaosdriver.proc_rss_kb(ch.hosts["B"].proc.pid)
        w = sorted(filter(None, (chaosdriver.proc_rss_kb(p) for p in ch.worker_pids())))
        row = {"minute": len(self.rows) + 1, "A": a, "B": b, "workers": w,
               "jobs": len(ch.jobs), "done": ch.done_count()}
        self.rows.append(row)
        print(f"[soak] minute {row['minute']:3d}: corrald A {a} kB, B {b} kB, workers "
              f"{w} kB; jobs {row['jobs']}, completions {row['done']}, faults "
              f"{sum(ch.counts.values())}", flush=True)


def growth(rows, growth_kb):
    """Failures: corrald A's RSS (never restarted) and the largest worker's
    RSS in the last minutes against the first minutes after warm-up."""
    if len(rows) < 4:
        return []
    base = rows[1:3]
    last = rows[-2:]
    out = []
    a0 = min(r["A"] for r in base)
    a1 = min(r["A"] for r in last)
    if a1 > a0 + growth_kb:
        out.append(f"corrald A's RSS grew from {a0} kB to {a1} kB")
    w0 = max(max(r["workers"], default=0) for r in base)
    w1 = min(max(r["workers"], default=0) for r in last)
    if w1 > w0 + 2 * growth_kb:
        out.append(f"the largest worker's RSS grew from {w0} kB to {w1} kB")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=float, default=25, help="jobs a second")
    ap.add_argument("--fault-every", type=float, default=30, help="mean seconds between faults")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--growth-kb", type=int, default=2048,
                    help="RSS growth that fails the soak (workers: twice this)")
    args = ap.parse_args()
    build = os.environ.get("CORRAL_BUILD", os.path.join(chaosdriver.REPO, "build"))
    fe = args.fault_every
    settings = chaosdriver.Settings(
        jobs=0, duration_s=args.minutes * 60, rate=args.rate, seed=args.seed,
        fault_gap_s=(fe * 0.5, fe * 1.5), drain_deadline_s=300, rss_slack_kb=None)
    print(f"soak: {args.minutes:g} min at {args.rate:g} jobs/s, a fault every ~{fe:g} s, "
          f"seed {args.seed}", flush=True)
    ch = chaosdriver.Chaos(build, settings)
    minutes = Minutes()
    ch.on_tick = minutes
    try:
        ch.run()
        ch.verify()
    except BaseException:
        print("also:", ch.stop(), f"logs kept in {ch.dir}", file=sys.stderr)
        raise
    errors = ch.stop()
    fig = ch.report()
    errors += growth(minutes.rows, args.growth_kb)
    print(f"soak: {fig['jobs']} jobs ({fig['done']} done, {fig['dead']} dead), faults "
          f"{fig['faults']}, duplicates {fig['duplicates']} {fig['duplicate_reasons']}, "
          f"drain {fig['drain_s']} s", flush=True)
    if errors:
        print("soak FAILED:\n  " + "\n  ".join(errors) + f"\nlogs kept in {ch.dir}",
              file=sys.stderr)
        return 1
    shutil.rmtree(ch.dir, ignore_errors=True)
    print("soak passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
