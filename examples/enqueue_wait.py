#!/usr/bin/env python3
"""Enqueue a job on a corral queue and wait for its result, with the Python
client (clients/python: pip install ./clients/python).

usage: enqueue_wait.py REDIS_URL QUEUE PAYLOAD_JSON [TIMEOUT_S]
  e.g. enqueue_wait.py unix:///run/redis/redis.sock prompts '{"messages": []}' 30

Prints the result and exits 0 when the job is done; prints the error and
exits 1 when it is dead or cancelled; exits 124 when the wait runs out.
"""
import json
import os
import sys

try:
    import corral_client
except ImportError:  # run from a checkout without installing the client
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                    "python"))
    import corral_client


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, queue, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else None
    with corral_client.Client(url) as corral:
        try:
            job_id = corral.enqueue(queue, payload, priority="high")
        except corral_client.CorralError as e:
            print(f"enqueue refused: {e.message}", file=sys.stderr)
            return 1
        print(f"job {job_id}", file=sys.stderr)
        try:
            job = corral.wait(queue, job_id, timeout=timeout_s)
        except corral_client.WaitTimeoutError as e:
            print(e.message, file=sys.stderr)
            return 124
    if job.state == "done":
        print(job.result)
        return 0
    print(f"job {job_id} {job.state}: {job.error or ''}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
