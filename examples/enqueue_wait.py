#!/usr/bin/env python3
"""Enqueue a job on a corral queue and wait for its result, with redis-py.

usage: enqueue_wait.py REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]
  e.g. enqueue_wait.py unix:///run/redis/redis.sock prompts '{"messages": []}' 30

Prints the result and exits 0 when the job is done; prints the error and
exits 1 when it is dead or cancelled; exits 124 when the wait runs out.
"""
import json
import sys

import redis


def enqueue(r, queue, payload, **options):
    """Returns the new job's id (corral_enqueue)."""
    args = [json.dumps(payload)]
    if options:
        args.append(json.dumps(options))
    return r.fcall("corral_enqueue", 1, queue, *args).decode()


def wait(r, queue, job_id, timeout_s=0, prefix="corral"):
    """Blocks until the job ends; returns the job as a dict, or None on timeout."""
    fin = f"{prefix}:{{{queue}}}:fin:{job_id}"
    # BLMOVE from the list to itself reads the final state without taking it.
    state = r.blmove(fin, fin, timeout_s, "RIGHT", "RIGHT")
    if state is None:
        return None
    return json.loads(r.fcall_ro("corral_job", 1, queue, job_id))


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, queue, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0
    r = redis.Redis.from_url(url)
    try:
        job_id = enqueue(r, queue, payload, priority="high")
    except redis.ResponseError as e:
        print(f"enqueue refused: {e}", file=sys.stderr)
        return 1
    print(f"job {job_id}", file=sys.stderr)
    job = wait(r, queue, job_id, timeout_s)
    if job is None:
        print(f"job {job_id} did not end within {timeout_s} s", file=sys.stderr)
        return 124
    if job["state"] == "done":
        print(job["result"])
        return 0
    print(f"job {job_id} {job['state']}: {job.get('error', '')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
