"""A private redis-server for the Python benchmarks: on a unix socket in
a directory of the caller's, without persistence, answering PING."""
import os
import subprocess
import time

import redis


def start(sock, workdir, deadline_s=10):
    """Starts redis-server on unix socket sock (its dir and log in workdir)
    -> (the process, a client that decodes replies). Exits with a message
    when it does not answer PING within deadline_s."""
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm",
                          "700", "--dir", workdir, "--save", "", "--appendonly", "no", "--logfile",
                          os.path.join(workdir, "redis.log")])
    r = redis.Redis(unix_socket_path=sock, decode_responses=True)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            r.ping()
            return p, r
        except redis.ConnectionError:
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                p.wait()
                raise SystemExit(f"bench: redis-server did not answer PING on {sock} within "
                                 f"{deadline_s} s (log: {os.path.join(workdir, 'redis.log')})")
            time.sleep(0.05)
