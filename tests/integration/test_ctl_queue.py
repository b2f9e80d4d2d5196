"""corralctl enqueue / job / wait, corrald --check, the first-cut worker and
the Python example, run as real processes against a real redis-server."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, binary_path, get_job


@pytest.fixture
def conf(tmp_path, redis_server):
    path = tmp_path / "corral.conf"
    path.write_text(
        redis_server.redis_section() + f"""
[pool]
queues = demo

[queue demo]
handler = echo
priorities = high, normal, low
max_attempts = 2
backoff = 100ms..200ms
"""
    )
    return str(path)


@pytest.fixture
def ctl(build_dir, conf):
    exe = binary_path(build_dir, "corralctl")

    def run(*args, stdin=None, timeout=20):
        return subprocess.run(
            [exe, "-c", conf, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def worker(build_dir, conf):
    exe = binary_path(build_dir, "corral-worker")
    procs = []

    def start():
        p = subprocess.Popen([exe, "-c", conf, "--queue", "demo"], stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.terminate()
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=10))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append("hung")
        p.stderr.close()
    # A worker asked to stop exits 0 (under ASan, a leak would make it 23).
    assert codes == [0] * len(procs)


def test_enqueue_declares_a_queue_its_config_defines_and_prints_the_id(ctl, r):
    res = ctl("enqueue", "demo", '{"prompt": "hi"}', "--priority", "high")
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    j = get_job(r, "demo", job_id)
    assert j["state"] == "queued"
    assert j["priority"] == "high"
    assert j["payload"] == '{"prompt": "hi"}'
    assert r.sismember("corral:queues", "demo")


def test_enqueue_options_reach_the_job(ctl, r):
    res = ctl("enqueue", "demo", "{}", "--delay", "5s", "--max-attempts", "7", "--timeout", "2s")
    assert res.returncode == 0, res.stderr
    j = get_job(r, "demo", res.stdout.strip())
    assert j["state"] == "scheduled"
    assert j["max_attempts"] == 7
    assert j["timeout_ms"] == 2000
    assert 4900 <= j["run_at_ms"] - j["created_ms"] <= 5100


def test_enqueue_reads_the_payload_from_stdin(ctl, r):
    res = ctl("enqueue", "demo", "-", stdin='{"from": "stdin"}')
    assert res.returncode == 0, res.stderr
    assert get_job(r, "demo", res.stdout.strip())["payload"] == '{"from": "stdin"}'


def test_enqueue_unique_key_returns_the_same_id(ctl):
    a = ctl("enqueue", "demo", "{}", "--unique", "order-1").stdout.strip()
    b = ctl("enqueue", "demo", "{}", "--unique", "order-1").stdout.strip()
    assert a and a == b


@pytest.mark.parametrize(
    "args, message",
    [
        (["enqueue", "nosuch", "{}"], 'unknown queue "nosuch"'),
        (["enqueue", "demo", "not json"], "not valid JSON"),
        (["enqueue", "demo", "{}", "--priority", "urgent"], 'unknown priority "urgent"'),
        (["job", "demo", "999999"], "no job 999999"),
    ],
)
def test_bad_input_fails_with_a_message_and_exit_1(ctl, r, args, message):
    ctl("enqueue", "demo", '{"keep": 1}')
    res = ctl(*args)
    assert res.returncode == 1
    assert message in res.stderr
    assert res.stdout == ""
    assert r.llen("corral:{demo}:q:1") == 1  # the earlier job is untouched


@pytest.mark.parametrize(
    "args",
    [[], ["frobnicate"], ["enqueue"], ["enqueue", "demo", "{}", "--bogus"],
     ["enqueue", "demo", "{}", "--delay", "soon"], ["job", "demo"], ["wait", "demo"]],
)
def test_bad_usage_exits_2(ctl, args):
    res = ctl(*args)
    assert res.returncode == 2
    assert res.stderr


def test_unreachable_redis_is_a_clear_error(build_dir, tmp_path):
    exe = binary_path(build_dir, "corralctl")
    res = subprocess.run(
        [exe, "--redis", f"unix://{tmp_path}/nothing.sock", "job", "demo", "1"],
        capture_output=True, text=True, timeout=20,
    )
    assert res.returncode == 1
    assert f"unix://{tmp_path}/nothing.sock" in res.stderr


def test_password_in_redis_url_is_refused_and_not_echoed(build_dir):
    exe = binary_path(build_dir, "corralctl")
    res = subprocess.run(
        [exe, "--redis", "redis://user:hunter2@127.0.0.1:1/0", "job", "demo", "1"],
        capture_output=True, text=True, timeout=20,
    )
    assert res.returncode == 1
    assert "password_file" in res.stderr
    assert "hunter2" not in res.stderr


def test_job_json_has_every_documented_key(ctl):
    job_id = ctl("enqueue", "demo", "{}").stdout.strip()
    res = ctl("job", "demo", job_id, "--json")
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    for key in ["id", "queue", "state", "priority", "attempts", "max_attempts",
                "created_ms", "started_ms", "finished_ms", "worker"]:
        assert key in j, key
    assert "result" in j or "error" in j
    assert j["id"] == job_id and j["queue"] == "demo" and j["attempts"] == 0


def test_job_shows_times_as_local_iso_with_their_age_beside_the_milliseconds(build_dir, conf,
                                                                             ctl, r):
    jid = ctl("enqueue", "demo", "{}", "--delay", "60s").stdout.strip()
    res = subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, "job", "demo", jid],
                         capture_output=True, text=True, timeout=20,
                         env=dict(os.environ, TZ="CET-1"))
    assert res.returncode == 0, res.stderr
    lines = {l.split()[0]: l for l in res.stdout.splitlines()}
    j = json.loads(r.fcall_ro("corral_job", 1, "demo", jid))
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(j["created_ms"] // 1000 + 3600))
    want = (f"created_ms    {j['created_ms']}  {created}.{j['created_ms'] % 1000:03d}+01:00, ")
    assert lines["created_ms"].startswith(want), lines["created_ms"]
    assert lines["created_ms"].endswith(" ago")
    assert ", in 59." in lines["run_at_ms"] or ", in 1 min" in lines["run_at_ms"], \
        lines["run_at_ms"]  # a delayed job's time to come
    assert lines["timeout_ms"].split() == ["timeout_ms", str(j["timeout_ms"])]  # a duration


def finish_in_background(r, queue, delay_s, how, payload="ok"):
    """Reserves the next job after delay_s and acks or fails it, from a thread."""
    def run():
        time.sleep(delay_s)
        jobs = r.fcall("corral_reserve", 1, queue, "test:1", 1)
        jid, run_token = jobs[0][0], jobs[0][1]
        if how == "ack":
            r.fcall("corral_ack", 1, queue, "test:1", jid, run_token, payload)
        else:
            r.fcall("corral_fail", 1, queue, "test:1", jid, run_token, "permanent", payload)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_wait_blocks_until_done_and_prints_the_result(ctl, r):
    job_id = ctl("enqueue", "demo", "{}").stdout.strip()
    t = finish_in_background(r, "demo", 0.3, "ack", '{"answer": 42}')
    started = time.monotonic()
    res = ctl("wait", "demo", job_id, "--timeout", "10s")
    t.join()
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '{"answer": 42}'
    assert time.monotonic() - started >= 0.25


def test_wait_on_a_dead_job_exits_1_with_its_error(ctl, r):
    job_id = ctl("enqueue", "demo", "{}").stdout.strip()
    t = finish_in_background(r, "demo", 0.0, "fail", "HTTP 400: bad request")
    t.join()
    res = ctl("wait", "demo", job_id, "--timeout", "5s")
    assert res.returncode == 1
    assert "dead" in res.stderr and "HTTP 400: bad request" in res.stderr


def test_wait_that_runs_out_exits_124(ctl):
    job_id = ctl("enqueue", "demo", "{}").stdout.strip()
    res = ctl("wait", "demo", job_id, "--timeout", "300ms")
    assert res.returncode == 124
    assert "did not end" in res.stderr


def test_enqueue_wait_with_a_worker_prints_the_echoed_payload(ctl, worker):
    worker()
    res = ctl("enqueue", "demo", '{"echo": "me"}', "--wait", "10s")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '{"echo": "me"}'


def test_python_example_enqueues_and_awaits(worker, redis_server):
    worker()
    res = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "enqueue_wait.py"),
         f"unix://{redis_server.socket}", "demo", '{"example": true}', "10"],
        capture_output=True, text=True, timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"example": True}


def test_corrald_check_accepts_a_valid_config_and_prints_it(build_dir, conf):
    res = subprocess.run([binary_path(build_dir, "corrald"), "-c", conf, "--check"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr
    assert "[queue demo]" in res.stdout
    assert "handler = echo" in res.stdout


def test_corrald_check_prints_every_error_with_file_and_line(build_dir, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[pool]\nmin = 5\nmax = 2\nbogus = 1\n[queue q]\nhandler = echo\ntimeout = soon\n")
    res = subprocess.run([binary_path(build_dir, "corrald"), "-c", str(bad), "--check"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert f"{bad}:4" in res.stderr and "bogus" in res.stderr
    assert f"{bad}:7" in res.stderr and "timeout" in res.stderr
    assert "min" in res.stderr
