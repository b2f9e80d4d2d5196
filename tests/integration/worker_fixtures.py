"""Shared pieces of the worker's integration tests: the AI-service stand-in
as a fixture, a factory for real corral-worker processes with a generated
config, a private redis-server that keeps its data across a kill -9, and
the conftest helpers bound to the worker tests' queue Q."""
import os
import subprocess
import sys

import pytest
import redis

import conftest
from conftest import REPO, Program, RedisServer, load_library, wait_until

sys.path.insert(0, os.path.join(REPO, "tests"))
import aistub  # noqa: E402

Q = "prompts"
K = "corral:{prompts}"
API_KEY = "sk-test-7c1f9e"


@pytest.fixture
def stub():
    srv = aistub.Server().start()
    yield srv
    srv.stop()


def stub_stats(srv):
    s = srv.stub
    with s.lock:
        return {"requests": s.requests, "auth": list(s.auth), "inflight": s.inflight,
                "max_inflight": s.max_inflight}


class Worker(Program):
    def __init__(self, exe, conf, log, extra=(), **popen):
        super().__init__([exe, "-c", conf, *extra], log, **popen)


@pytest.fixture
def make_worker(build_dir, tmp_path, redis_server):
    exe = os.path.join(build_dir, "corral-worker")
    if not os.path.exists(exe):
        pytest.skip("corral-worker not built")
    workers = []
    key = tmp_path / "openai.key"
    key.write_text(API_KEY + "\n")

    def make(queue_conf, service_url=None, pool="", socket_path=None, extra=(), ready=True,
             redis_url=None, **popen):
        sock = socket_path or redis_server.socket
        section = (f"[redis]\nurl = {redis_url}\n" if redis_url
                   else redis_server.redis_section() if socket_path is None
                   else f"[redis]\nurl = unix://{sock}\n")
        drain = "" if "drain_timeout" in pool else "drain_timeout = 10s\n"
        text = section + f"[pool]\nconcurrency = 4\n{drain}{pool}\n"
        text += f"[queue {Q}]\n{queue_conf}\n"
        if service_url:
            text += (f"[service ai]\nurl = {service_url}\napi_key_file = {key}\n"
                     "connect_timeout = 1s\nheader = X-Team: corral-tests\n")
        conf = tmp_path / f"w{len(workers)}.conf"
        conf.write_text(text)
        w = Worker(exe, str(conf), str(tmp_path / f"w{len(workers)}.log"), extra, **popen)
        workers.append(w)
        if ready:  # the worker declares its queue once connected
            c = redis.Redis(unix_socket_path=sock)
            wait_until(lambda: c.exists(f"{K}:conf") or w.proc.poll() is not None,
                       what="the worker to connect and declare its queue")
            c.close()
            assert w.proc.poll() is None, w.logs()
        return w

    yield make
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        if not w.out.closed:
            w.out.close()
        # Under SANITIZE=1, a leak or memory error shows up in the worker's log.
        assert "Sanitizer" not in w.logs() and "runtime error" not in w.logs(), w.logs()


HTTP_Q = "handler = http\nservice = ai\nbackoff = 50ms..100ms\ntimeout = 5s\nmax_result = 64K"


def enqueue(r, payload, **opts):
    """conftest.enqueue on Q; payload is any JSON value."""
    return conftest.enqueue(r, Q, payload, **opts)


def job(r, jid):
    """conftest.get_job on Q."""
    return conftest.get_job(r, Q, jid)


def await_end(r, jid, timeout=15):
    fin = f"{K}:fin:{jid}"
    state = r.blmove(fin, fin, timeout, "RIGHT", "RIGHT")
    assert state is not None, f"job {jid} did not end: {job(r, jid)}"
    return job(r, jid)


@pytest.fixture
def aof_redis():
    """A private redis-server that writes every change to its AOF before
    answering (so a kill -9 loses nothing), with the library loaded ->
    (server, client). For tests that stop or kill Redis under a worker."""
    server = RedisServer(appendonly=True, appendfsync="always")
    server.start()
    r = server.client(decode_responses=True)
    load_library(r)
    yield server, r
    server.cleanup()
