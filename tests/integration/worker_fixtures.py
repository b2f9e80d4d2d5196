"""Shared pieces of the worker's integration tests: the AI-service stand-in
as a fixture, a factory for real corral-worker processes with a generated
config, and helpers to enqueue and await jobs through the function library."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from conftest import REPO, wait_until

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


class Worker:
    def __init__(self, exe, conf, log, extra=(), **popen):
        self.log = log
        self.out = open(log, "w")
        self.proc = subprocess.Popen([exe, "-c", conf, *extra], stderr=self.out, **popen)

    def logs(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.out.close()


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
    args = [json.dumps(payload)] + ([json.dumps(opts)] if opts else [])
    return r.fcall("corral_enqueue", 1, Q, *args)


def job(r, jid):
    raw = r.fcall_ro("corral_job", 1, Q, jid)
    return json.loads(raw) if raw else None


def await_end(r, jid, timeout=15):
    fin = f"{K}:fin:{jid}"
    state = r.blmove(fin, fin, timeout, "RIGHT", "RIGHT")
    assert state is not None, f"job {jid} did not end: {job(r, jid)}"
    return job(r, jid)
