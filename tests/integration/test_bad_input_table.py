"""The rows of docs/bad-input.md that no other test file proves: invalid
UTF-8 and overflowing numbers through FCALL and corralctl, bad command
lines and config, garbage on a worker's fd 3, a Redis that answers errors
(OOM, NOPERM, a wrong password, no function library, not Redis at all) and
an AI service that answers garbage or never ends its body. Each test checks
the exact refusal or outcome, and that nothing else changed or was lost."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import redis

from conftest import REPO, RedisServer, binary_path, children, db_snapshot, declare, load_library, \
    reserve, wait_blocked, wait_until
from worker_fixtures import (HTTP_Q, K, Q, Worker, await_end, enqueue, job,  # noqa: F401
                             make_worker, stub, stub_stats)

OOM = "OOM command not allowed when used memory > 'maxmemory'"


def err(res):
    return res.stderr.decode("utf-8", "replace")


@pytest.fixture
def ctl(build_dir, tmp_path, redis_server):
    """Runs corralctl with a config whose queue "demo" has max_payload 1K;
    arguments and output are bytes (some tests pass invalid UTF-8)."""
    exe = binary_path(build_dir, "corralctl")
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section() +
                    "[queue demo]\nhandler = echo\nmax_payload = 1K\n")

    def run(*args, stdin=None, env=None, config=str(conf)):
        argv = [exe] + (["-c", config] if config else []) + list(args)
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=20,
                              env=env if env is not None else dict(os.environ))

    run.argv = [exe, "-c", str(conf)]
    return run


def no_job_created(r, queue="demo"):
    return r.get(f"corral:{{{queue}}}:seq") is None


# --- FCALL (application services) ---------------------------------------


# Redis checks a payload's grammar but not its characters (checking UTF-8
# in Lua costs ~0.3 us per non-ASCII character; see queue/lua/prelude.lua): libcorral
# and corralctl refuse such payloads, and a worker ends one that came in by
# FCALL dead before any call, naming the problem and where it is.
@pytest.mark.parametrize("payload, where", [
    (b'"\xff"', "invalid UTF-8 at byte 1"),
    (b'{"a": "\xc3\x28"}', "invalid UTF-8 at byte 7"),
    (b'{"\xff": 1}', "invalid UTF-8 at byte 2"),
    (b'"\xed\xa0\x80"', "invalid UTF-8 at byte 1"),  # an encoded surrogate
    (b'"a\nb"', "a raw control character (0x0a) inside a string at byte 2"),
    (b'{"a": "\tb"}', "a raw control character (0x09) inside a string at byte 7"),
])
def test_fcall_payload_that_is_not_json_text_ends_dead_before_any_call(
        redis_server, stub, make_worker, payload, where):
    raw = redis_server.client()
    make_worker(HTTP_Q, stub.url)
    jid = raw.fcall("corral_enqueue", 1, Q, payload).decode()
    fin = f"{K}:fin:{jid}"
    assert raw.blmove(fin, fin, 15, "RIGHT", "RIGHT") == b"dead"
    record = json.loads(raw.fcall_ro("corral_job", 1, Q, jid).decode("utf-8"))  # still JSON text
    assert record["state"] == "dead" and record["attempts"] == 1
    assert record["error"] == f"payload is not valid JSON ({where})"
    assert stub_stats(stub)["requests"] == 0  # the service never saw it


@pytest.mark.parametrize("payload", [b'{"a": 1}\x00junk', b'\x00'])
def test_fcall_payload_with_a_nul_byte_is_refused_as_not_json(r, redis_server, payload):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError, match='queue "jobs": payload is not valid JSON'):
        redis_server.client().fcall("corral_enqueue", 1, "jobs", payload)
    assert db_snapshot(r) == before


def test_fcall_payload_nested_deeper_than_1000_levels_is_refused(r):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError, match='queue "jobs": payload is not valid JSON'):
        r.fcall("corral_enqueue", 1, "jobs", "[" * 1001 + "]" * 1001)
    assert db_snapshot(r) == before
    r.fcall("corral_enqueue", 1, "jobs", "[" * 1000 + "]" * 1000)  # the limit itself is fine


def test_fcall_queue_name_with_invalid_utf8_is_refused(r, redis_server):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        redis_server.client().fcall("corral_enqueue", 1, b"jobs\xff", "{}")
    assert str(e.value).startswith('BADNAME bad queue name "jobs')
    assert "use 1-64 characters of A-Z a-z 0-9 _ . : -" in str(e.value)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("options, message", [
    (b'{"priority": "\xff"}', 'queue "jobs": unknown priority "'),
    (b'{"service": "\xff"}', 'queue "jobs": bad service name "'),
    (b'{"\xff": 1}', 'queue "jobs": unknown option "'),
])
def test_fcall_options_with_invalid_utf8_are_refused(r, redis_server, options, message):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        redis_server.client().fcall("corral_enqueue", 1, "jobs", "{}", options)
    assert str(e.value).startswith("BADOPTION " + message)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("options, message", [
    ('{"priority": 1e400}', 'queue "jobs": unknown priority "inf" (known: high, normal, low'),
    ('{"priority": 9223372036854775808}', 'queue "jobs": unknown priority "9.2233720368548e+18"'),
    ('{"delay_ms": 9223372036854775808}', "delay_ms must be an integer from 0 to 31622400000"),
    ('{"delay_ms": 1e400}', "delay_ms must be an integer from 0 to 31622400000"),
    ('{"timeout_ms": -9223372036854775809}', "timeout_ms must be an integer from 1 to 86400000"),
    ('{"timeout_ms": -1}', "timeout_ms must be an integer from 1 to 86400000, got -1"),
    ('{"max_attempts": 1e400}', "max_attempts must be an integer from 1 to 1000"),
    ('{"max_attempts": -9223372036854775809}', "max_attempts must be an integer from 1 to 1000"),
])
def test_fcall_overflowing_and_negative_numbers_in_options_are_refused(r, options, message):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall("corral_enqueue", 1, "jobs", "{}", options)
    assert message in str(e.value)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("options, option", [
    ('{"priority": null}', "priority"),
    ('{"priority": {}}', "priority"),
    ('{"delay_ms": null}', "delay_ms"),
    ('{"service": [1]}', "service"),
])
def test_fcall_null_or_object_option_values_are_named_as_sent(r, options, option):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall("corral_enqueue", 1, "jobs", "{}", options)
    text = str(e.value)
    assert option in text
    assert "userdata" not in text and "table: 0x" not in text, text
    assert db_snapshot(r) == before


def test_fcall_extra_arguments_are_refused(r):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError, match='queue "jobs"'):
        r.fcall("corral_enqueue", 1, "jobs", "{}", '{"priority": "high"}', '{"delay_ms": 5}')
    assert db_snapshot(r) == before


@pytest.mark.parametrize("settings, message", [
    ('{"max_payload": -1}', "max_payload must be an integer from 1 to 536870912, got -1"),
    ('{"max_payload": 1e400}', "max_payload must be an integer from 1 to 536870912, got inf"),
    ('{"timeout_ms": 9223372036854775808}', "timeout_ms must be an integer from 1 to"),
    ('{"max_attempts": -9223372036854775809}', "max_attempts must be an integer from 1 to 1000"),
    ('{"weights": [-1, 1, 1], "order": "weighted"}',
     "weight must be an integer from 1 to 1000000, got -1"),
    ('{"weights": [1e400, 1, 1], "order": "weighted"}',
     "weight must be an integer from 1 to 1000000, got inf"),
    ('{"result_ttl_ms": -1}', "result_ttl_ms must be an integer from 1000 to"),
    (b'{"priorities": ["\xff"]}', 'queue "jobs": bad priority name "'),
])
def test_fcall_declare_with_negative_overflowing_or_invalid_utf8_settings_is_refused(
        r, redis_server, settings, message):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        redis_server.client().fcall("corral_declare", 1, "jobs", settings)
    assert message in str(e.value)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("settings", ['{"max_attempt": 3}',
                                      '{"backoff_base_ms": 5000, "backoff_cap_ms": 10}',
                                      '{"priorities": ["a", "a"]}'])
def test_fcall_declare_with_unknown_or_contradicting_settings_is_refused(r, settings):
    declare(r, "jobs")
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError):
        r.fcall("corral_declare", 1, "jobs", settings)
    assert db_snapshot(r) == before


# --- corralctl -------------------------------------------------------------


def test_ctl_payload_over_max_payload_names_both_sizes(ctl, r):
    res = ctl("enqueue", "demo", "-", stdin=json.dumps("x" * 2000).encode())
    assert res.returncode == 1
    assert 'queue "demo": payload is 2002 bytes, limit is 1024 (max_payload)' in err(res)
    assert res.stdout == b""
    assert no_job_created(r)


def test_a_20_mb_payload_is_refused_whole_by_fcall_and_corralctl(ctl, r):
    big = json.dumps("x" * (20 << 20))
    declare(r, "jobs")  # max_payload defaults to 1M
    before = db_snapshot(r)
    with pytest.raises(redis.ResponseError) as e:
        r.fcall("corral_enqueue", 1, "jobs", big)
    assert 'queue "jobs": payload is 20971522 bytes, limit is 1048576 (max_payload)' in str(e.value)
    assert db_snapshot(r) == before
    res = ctl("enqueue", "demo", "-", stdin=big.encode())
    assert res.returncode == 1
    assert 'queue "demo": payload is 20971522 bytes, limit is 1024 (max_payload)' in err(res)
    assert no_job_created(r)


def test_ctl_payload_with_invalid_utf8_is_refused(ctl, r):
    res = ctl("enqueue", "demo", "-", stdin=b'{"prompt": "caf\xe9"}')
    assert res.returncode == 1
    assert 'queue "demo": payload is not valid JSON (invalid UTF-8 at byte 15)' in err(res)
    assert no_job_created(r)


@pytest.mark.parametrize("flags, code, message", [
    (["--max-attempts", "-1"], 2, "--max-attempts needs a number from 1 to 1000, got -1"),
    (["--max-attempts", "99999999999999999999"], 2,
     "--max-attempts needs a number from 1 to 1000, got 99999999999999999999"),
    (["--delay", "-5s"], 2,
     '--delay: expected a duration like 250ms, 5s, 2m, 1h or 1d (got "-5s")'),
    (["--delay", "99999999999999999999d"], 2,
     '--delay: duration is too large (got "99999999999999999999d")'),
    (["--delay", "400d"], 1, "delay_ms must be an integer from 0 to 31622400000, got 34560000000"),
    (["--timeout", "0"], 2, "--timeout must be at least 1ms, got 0"),
    (["--timeout", "2d"], 1, "timeout_ms must be an integer from 1 to 86400000, got 172800000"),
    (["--priority", "99999999999999999999"], 1,
     'queue "demo": unknown priority "99999999999999999999" (known: high, normal, low, or 0-2)'),
    (["--priority", "-1"], 1, 'queue "demo": unknown priority "-1"'),
    (["--unique", ""], 1, 'queue "demo": unique_key must be a string of 1 to 256 bytes'),
    (["--service", "a b"], 1, 'queue "demo": bad service name "a b"'),
    (["--wait", "99999999999999999999d"], 2,
     "enqueue: unexpected argument 99999999999999999999d"),
    (["--wait", "-5s"], 2, "enqueue: unknown option -5s"),
])
def test_ctl_bad_numbers_and_values_in_flags_are_refused(ctl, r, flags, code, message):
    res = ctl("enqueue", "demo", "{}", *flags)
    assert res.returncode == code, err(res)
    assert message in err(res)
    assert res.stdout == b""
    assert no_job_created(r)


@pytest.mark.parametrize("args, code, message", [
    (["status", "--watch", "0"], 2, "--watch takes seconds from 0.1 to 3600, got 0"),
    (["status", "--watch", "99999999999999999999"], 2,
     "--watch takes seconds from 0.1 to 3600, got 99999999999999999999"),
    (["status", "--watch", "-1"], 2, "status: unknown argument -1"),
    (["wait", "demo", "1", "--timeout", "-1s"], 2,
     '--timeout: expected a duration like 250ms, 5s, 2m, 1h or 1d (got "-1s")'),
    (["dead", "demo", "frob"], 2, 'dead: unknown action "frob" (list, retry, purge)'),
    (["dead", "demo", "retry", "99999999999999999999"], 1,
     'queue "demo": job 99999999999999999999 is not dead (no such job)'),
    (["breaker", "a b"], 1, 'bad service name "a b": use 1-64 characters'),
    (["breaker", "nosuch", "reset"], 1,
     'unknown service "nosuch": no corrald or worker has declared it'),
    (["pause", "a{b}"], 1, 'bad queue name "a{b}": use 1-64 characters'),
    (["resume", "nosuch"], 1, 'unknown queue "nosuch": no corrald or corralctl has declared it'),
])
def test_ctl_other_commands_refuse_bad_arguments(ctl, r, args, code, message):
    r.fcall("corral_declare", 1, "demo", "{}")
    before = db_snapshot(r)
    res = ctl(*args)
    assert res.returncode == code, err(res)
    assert message in err(res)
    assert db_snapshot(r) == before


@pytest.mark.parametrize("flag, name", [("--priority", "priority"), ("--service", "service"),
                                        ("--unique", "unique_key")])
def test_ctl_flag_values_with_invalid_utf8_are_refused_not_dropped(ctl, r, flag, name):
    res = ctl("enqueue", "demo", "{}", flag, b"caf\xe9")
    assert res.returncode == 1
    assert f'corralctl: queue "demo": {name} is not valid UTF-8' in err(res)
    assert res.stdout == b""
    assert no_job_created(r)


@pytest.mark.parametrize("queue", ["a b", "a{b}", b"demo\xff", "x" * 65, ""])
def test_ctl_bad_queue_names_are_refused(ctl, r, queue):
    res = ctl("enqueue", queue, "{}")
    assert res.returncode == 1
    assert "bad queue name" in err(res)
    assert "use 1-64 characters of A-Z a-z 0-9 _ . : -" in err(res)
    assert r.keys("*") == []


def test_ctl_config_named_by_corral_config_must_exist(ctl, tmp_path, redis_server):
    missing = tmp_path / "typo.conf"
    env = dict(os.environ, CORRAL_CONFIG=str(missing))
    res = ctl("--redis", f"unix://{redis_server.socket}", "job", "demo", "1", env=env,
              config=None)
    assert res.returncode == 1
    assert f"{missing}: cannot open: No such file or directory" in err(res)
    res = ctl("job", "demo", "1", config=str(missing))
    assert res.returncode == 1
    assert f"{missing}: cannot open: No such file or directory" in err(res)


@pytest.mark.parametrize("program, args", [
    ("corralctl", ["job", "demo", "1"]),
    ("corrald", ["--check"]),
    ("corrald", []),
    ("corral-worker", []),
])
def test_bad_config_values_are_refused_with_file_line_and_key(build_dir, tmp_path, program,
                                                              args):
    bad = tmp_path / "bad.conf"
    bad.write_bytes(b"[pool]\nmax = 99999999999999999999\nconcurrency = -4\n"
                    b"[service ai]\nurl = http://h/v1 chat\n"
                    b"[queue caf\xc3\xa9]\nhandler = echo\n")
    res = subprocess.run([binary_path(build_dir, program), "-c", str(bad), *args],
                         capture_output=True, timeout=20)
    assert res.returncode == 1
    text = err(res)
    assert f"{bad}:2: [pool] max: must be from 1 to 10000, and is far outside" in text
    assert f'{bad}:3: [pool] concurrency: must be from 1 to 1024 (got "-4")' in text
    assert f"{bad}:5: [service ai] url: byte 12 is 0x20; a url is printable ASCII" in text
    assert f"{bad}:6: [queue café]: bad queue name" in text


def test_ctl_malformed_redis_url_is_refused(ctl, r):
    res = ctl("--redis", "http://127.0.0.1:6379", "job", "demo", "1")
    assert res.returncode == 1
    assert 'redis url "http://127.0.0.1:6379": expected redis://host[:port][/db] or ' \
           'unix:///path' in err(res)


def test_ctl_wait_when_redis_goes_away_waits_on_and_names_redis_when_time_is_up(ctl, r,
                                                                              redis_server):
    declare(r, "demo")
    jid = r.fcall("corral_enqueue", 1, "demo", "{}")
    p = subprocess.Popen(ctl.argv + ["wait", "demo", jid, "--timeout", "3s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_blocked(r, 1)
        redis_server.stop(kill=True)
        out, errout = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        if not redis_server.running():
            redis_server.start()
    # the lost connection is not the job's end: it waited on (reconnecting
    # with back-off, said once) until its time was up, then named Redis
    err = errout.decode()
    assert p.returncode == 124 and out == b""
    assert err.count("redis connection lost; waiting on") == 1, err
    assert f"corralctl: queue \"demo\": job {jid} did not end within 3000 ms (redis: redis " in err


# --- corral-worker command line, environment and corrald's fd 3 ------------


def test_unknown_log_level_in_the_environment_is_named(build_dir, tmp_path, redis_server):
    conf = tmp_path / "w.conf"
    conf.write_text(redis_server.redis_section() + "[queue demo]\nhandler = echo\n")
    res = subprocess.run([binary_path(build_dir, "corral-worker"), "-c", str(conf),
                          "--queue", "nosuch"], capture_output=True, timeout=20,
                         env=dict(os.environ, CORRAL_LOG_LEVEL="verbose"))
    assert res.returncode == 1
    assert ('warn CORRAL_LOG_LEVEL is not a level; using info got="verbose" '
            'known="err, warn, notice, info, debug"') in err(res)


@pytest.mark.parametrize("args, code, message", [
    (["--concurrency", "-1"], 2, "--concurrency must be 1-1024, got -1"),
    (["--concurrency", "0"], 2, "--concurrency must be 1-1024, got 0"),
    (["--concurrency", "99999999999999999999"], 2,
     "--concurrency must be 1-1024, got 99999999999999999999"),
    (["--concurrency", "4x"], 2, "--concurrency must be 1-1024, got 4x"),
    (["--queue", "nosuch"], 1, 'cannot start error="queue "nosuch" has no [queue] section"'),
])
def test_worker_bad_command_line_is_refused(build_dir, tmp_path, redis_server, args, code,
                                            message):
    conf = tmp_path / "w.conf"
    conf.write_text(redis_server.redis_section() + "[queue demo]\nhandler = echo\n")
    res = subprocess.run([binary_path(build_dir, "corral-worker"), "-c", str(conf), *args],
                         capture_output=True, timeout=20)
    assert res.returncode == code
    assert message in err(res)


@pytest.mark.parametrize("args", [["--bogus"], ["-c"], ["--check", "extra"]])
def test_corrald_bad_command_line_exits_2_with_usage(build_dir, args):
    res = subprocess.run([binary_path(build_dir, "corrald"), *args], capture_output=True,
                         timeout=20)
    assert res.returncode == 2
    assert err(res).startswith("usage: corrald [-c FILE] [--check] [--version]")


FAKE_WORKER = r"""
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
os.write(3, b"ready 2\nhello\nbusy x 2\nready 2\xff\n" + b"a" * 5000 + b"\n")
while True:  # after the garbage, the channel must still carry news
    os.write(3, b"heartbeat 1 2 0 1000\n")
    time.sleep(0.2)
"""


def test_corrald_logs_malformed_worker_messages_and_keeps_the_worker(build_dir, tmp_path,
                                                                     redis_server, r):
    script = tmp_path / "fake-worker"
    pidfile = tmp_path / "fake.pid"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.argv[1:] = [{str(pidfile)!r}]\n"
                      + FAKE_WORKER)
    script.chmod(0o755)
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[pool]\nmin = 1\nmax = 1\n"
                    "[queue demo]\nhandler = echo\n")
    log = tmp_path / "corrald.log"
    with open(log, "w") as out:
        p = subprocess.Popen([binary_path(build_dir, "corrald"), "-c", str(conf)], stderr=out,
                             env=dict(os.environ, CORRAL_WORKER=str(script)))
    try:
        wait_until(lambda: log.read_text(errors="replace").count("bad message from worker") >= 4,
                   what="corrald to report the bad lines")
        text = log.read_text(errors="replace")
        bad = [line for line in text.splitlines() if "bad message from worker" in line]
        assert any("hello" in line for line in bad), bad
        assert any("busy x 2" in line for line in bad), bad
        host = socket.gethostname()
        wait_until(lambda: r.hget(f"corral:host:{host}", "busy") == "1",
                   what="a good line after the bad ones to reach the heartbeat")
        pid = int(pidfile.read_text())
        os.kill(pid, 0)  # the worker is kept: bad lines are not a crash
        assert "worker died" not in text and p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
        assert "Sanitizer" not in log.read_text(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


# --- Redis answering errors ------------------------------------------------


@pytest.fixture
def oom(r):
    """Call to put Redis above maxmemory with noeviction; undone after."""
    def on():
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1")
    yield on
    r.config_set("maxmemory", "0")


def test_oom_refuses_enqueue_by_fcall_and_corralctl_and_stores_nothing(r, ctl, oom):
    assert ctl("enqueue", "demo", '{"keep": 1}').returncode == 0
    before = db_snapshot(r)
    oom()
    with pytest.raises(redis.ResponseError, match="OOM command not allowed"):
        r.fcall("corral_enqueue", 1, "demo", "{}")
    res = ctl("enqueue", "demo", "{}")
    assert res.returncode == 4  # Redis full (docs/bad-input.md): not a generic failure
    assert err(res) == ('corralctl: queue "demo": redis is full (used memory has reached '
                        'maxmemory): job not created; free memory or raise maxmemory, then '
                        'enqueue again (OOM)\n')
    assert res.stdout == b""
    many = ctl("enqueue", "demo", "--many", stdin=b'{"a": 1}\n{"a": 2}\n')
    assert many.returncode == 4
    assert 'stdin lines 1-2 not enqueued (payload k is line 0+k): queue "demo": redis is ' \
           'full (used memory has reached maxmemory): jobs not created' in err(many)
    assert many.stdout == b""
    assert db_snapshot(r) == before


def test_corrald_under_oom_names_it_keeps_its_workers_and_resumes(r, build_dir, tmp_path,
                                                                  redis_server, oom):
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[pool]\nmin = 1\nmax = 1\n"
                    "[scale]\ntick = 250ms\n[queue demo]\nhandler = echo\n")
    log = tmp_path / "corrald.log"
    with open(log, "w") as out:
        p = subprocess.Popen([binary_path(build_dir, "corrald"), "-c", str(conf)], stderr=out)
    try:
        wait_until(lambda: "connected to redis" in log.read_text(), what="corrald to connect")
        first = r.fcall("corral_enqueue", 1, "demo", '{"before": 1}')
        fin = "corral:{demo}:fin:"
        assert r.blmove(fin + first, fin + first, 15, "RIGHT", "RIGHT") == "done"
        workers = children(p.pid)
        assert len(workers) == 1
        oom()
        wait_until(lambda: "redis unavailable, retrying error=\"OOM command not allowed"
                   in log.read_text(), what="corrald to name the OOM")
        assert children(p.pid) == workers and p.poll() is None
        r.config_set("maxmemory", "0")
        jid = r.fcall("corral_enqueue", 1, "demo", '{"after": 1}')
        assert r.blmove(fin + jid, fin + jid, 20, "RIGHT", "RIGHT") == "done"
        wait_until(lambda: log.read_text().count("connected to redis") >= 2, timeout=40,
                   what="corrald to connect again")
        assert children(p.pid) == workers
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "Sanitizer" not in log.read_text()


def test_worker_keeps_an_outcome_refused_for_oom_and_writes_it_when_memory_frees(
        r, stub, make_worker, oom):
    w = make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"delay_ms": 600}})
    wait_until(lambda: stub_stats(stub)["inflight"] == 1, what="the call to start")
    oom()
    wait_until(lambda: 'call="writing outcomes"' in w.logs(), what="the ack to be refused")
    assert OOM in w.logs()
    assert job(r, jid)["state"] == "active"  # neither lost nor run again
    r.config_set("maxmemory", "0")
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 1, j
    assert stub_stats(stub)["requests"] == 1
    assert w.proc.poll() is None
    assert w.stop() == 0


@pytest.fixture(scope="module")
def acl_server():
    """A private redis-server with TCP and the documented ACL user, plus a
    user "limited" that may run every command on keys other:* only."""
    s = RedisServer(mode="tcp-acl")
    s.start()
    c = s.client()
    c.execute_command("ACL", "SETUSER", "limited", "on", ">limited-pw", "~other:*", "+@all")
    load_library(c)
    c.close()
    yield s
    s.cleanup()


def acl_conf(tmp_path, server, user, password):
    pw = tmp_path / f"{user}.pass"
    pw.write_text(password + "\n")
    conf = tmp_path / f"{user}.conf"
    conf.write_text(f"[redis]\nurl = redis://{user}@127.0.0.1:{server.port}/0\n"
                    f"password_file = {pw}\n[queue demo]\nhandler = echo\n")
    return conf, pw


def test_noperm_user_gets_a_clear_error_from_corralctl(build_dir, tmp_path, acl_server):
    conf, _ = acl_conf(tmp_path, acl_server, "limited", "limited-pw")
    res = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(conf),
                          "enqueue", "demo", "{}"], capture_output=True, timeout=20)
    assert res.returncode == 1
    assert "corralctl: NOPERM" in err(res) and "key" in err(res)
    assert acl_server.client().keys("*") == []


def test_noperm_user_makes_the_worker_log_and_retry_not_exit(build_dir, tmp_path, acl_server):
    conf, _ = acl_conf(tmp_path, acl_server, "limited", "limited-pw")
    admin = acl_server.client()
    before = admin.info("stats")["total_connections_received"]
    w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "w.log"))
    try:
        wait_until(lambda: "redis setup failed" in w.logs() and "NOPERM" in w.logs(),
                   what="the refused set-up to be logged")
        # It tries again (a new connection after a back-off), and a refusal
        # that repeats is counted, not logged again.
        wait_until(lambda: admin.info("stats")["total_connections_received"] >= before + 4,
                   what="the worker to try again")
        assert w.logs().count("NOPERM") == 1, w.logs()
        assert w.proc.poll() is None
    finally:
        assert w.stop() == 0, w.logs()
        admin.close()
    assert "Sanitizer" not in w.logs()


def test_wrong_password_is_named_without_echoing_it(build_dir, tmp_path, acl_server):
    conf, pw = acl_conf(tmp_path, acl_server, "corral", "not-the-password-9f2")
    res = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(conf),
                          "job", "demo", "1"], capture_output=True, timeout=20)
    assert res.returncode == 1
    assert f"authentication as corral failed (password from {pw})" in err(res)
    assert "WRONGPASS" in err(res)
    assert "not-the-password-9f2" not in err(res)


def fake_redis(answer):
    """A TCP listener that answers every read with the given bytes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def serve():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            try:
                conn.settimeout(10)
                while conn.recv(65536):
                    conn.sendall(answer)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return lsock


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "Protocol error"),
    (b"-ERR unknown command 'FCALL_RO', with args beginning with: \r\n",
     "redis does not support Functions (FCALL): corral needs redis-server 7 or newer"),
])
def test_something_that_is_not_redis_7_is_named(build_dir, answer, message):
    lsock = fake_redis(answer)
    try:
        res = subprocess.run([binary_path(build_dir, "corralctl"), "--redis",
                              f"redis://127.0.0.1:{lsock.getsockname()[1]}/0", "job", "demo", "1"],
                             capture_output=True, timeout=20)
    finally:
        lsock.close()
    assert res.returncode == 1
    assert message in err(res)


def test_corrald_loads_the_library_again_when_it_is_flushed(r, build_dir, tmp_path,
                                                           redis_server):
    """With no worker running (min = 0) nothing else would: corrald's own
    promote and reclaim calls see "Function not found"."""
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[pool]\nmin = 0\nmax = 1\n"
                    "[scale]\ntick = 250ms\n[queue demo]\nhandler = echo\n")
    log = tmp_path / "corrald.log"
    with open(log, "w") as out:
        p = subprocess.Popen([binary_path(build_dir, "corrald"), "-c", str(conf)], stderr=out)
    try:
        wait_until(lambda: "connected to redis" in log.read_text(), what="corrald to connect")
        r.function_flush()
        wait_until(lambda: r.function_list(), what="the library to be loaded again")
        assert "Function not found" in log.read_text()
        assert r.sismember("corral:queues", "demo")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "Sanitizer" not in log.read_text()


# --- the AI service answering garbage --------------------------------------


def test_a_2xx_body_that_is_not_json_is_the_result_as_sent(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    garbage = b"<html>gateway says hi</html>\x00\x01"
    j = await_end(r, enqueue(r, {"stub": {"body_hex": garbage.hex()}}))
    assert j["state"] == "done" and j["attempts"] == 1
    assert j["result"] == garbage.decode()


@pytest.mark.parametrize("handler", ["http", "exec"])
def test_a_result_with_invalid_utf8_leaves_a_readable_job_record(r, redis_server, stub,
                                                                 make_worker, handler):
    if handler == "http":
        make_worker(HTTP_Q, stub.url)
        jid = enqueue(r, {"stub": {"body_hex": b'{"a": "\xff\xfe"}'.hex()}})
    else:
        make_worker("handler = exec\ncommand = /bin/sh -c 'cat >/dev/null; printf \"\\377\"'")
        jid = enqueue(r, {})
    raw = redis_server.client()
    fin = f"{K}:fin:{jid}"
    assert raw.blmove(fin, fin, 15, "RIGHT", "RIGHT") is not None
    record = raw.fcall_ro("corral_job", 1, Q, jid)
    assert json.loads(record.decode("utf-8"))["state"] in ("done", "dead")


def test_ctl_never_prints_an_unreadable_result_as_an_empty_success(ctl, r, redis_server):
    declare(r, "demo")
    jid = r.fcall("corral_enqueue", 1, "demo", "{}")
    (got_id, run, *_), = reserve(r, "demo")
    assert got_id == jid
    redis_server.client().fcall("corral_ack", 1, "demo", "host1:1", jid, run, b"\xff\xfe")
    res = ctl("wait", "demo", jid, "--timeout", "5s")
    assert not (res.returncode == 0 and res.stdout.strip() == b""), "result lost"
    if res.returncode != 0:
        assert res.returncode == 1
        assert f"job {jid} done, but its record is not valid JSON" in err(res)
    res = ctl("job", "demo", jid)
    assert res.returncode == 0 or f"job {jid}: unreadable record" in err(res)


def test_a_body_that_never_ends_is_cut_at_max_result(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    j = await_end(r, enqueue(r, {"stub": {"endless": True}}))
    assert j["state"] == "dead" and j["attempts"] == 1
    assert j["error"] == "result larger than max_result (65536 bytes)"


def test_a_body_that_stalls_is_ended_by_the_job_timeout(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"cut_after": 5, "cut": "stall"}}, timeout_ms=500, max_attempts=2)
    j = await_end(r, jid)
    assert j["state"] == "dead" and j["attempts"] == 2
    assert "timed out after 500 ms" in j["error"] and "(attempt 2 of 2)" in j["error"]
    assert stub_stats(stub)["requests"] == 2


def test_a_content_length_longer_than_the_body_is_a_retryable_failure(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    j = await_end(r, enqueue(r, {"stub": {"content_length": 100, "fail_times": 1, "key": "cl"}}))
    assert j["state"] == "done" and j["attempts"] == 2
    assert "transfer closed with 85 bytes remaining to read" in j["error"]


def test_a_content_length_shorter_than_the_body_keeps_what_it_covers(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    j = await_end(r, enqueue(r, {"stub": {"content_length": 5}}))
    assert j["state"] == "done" and j["result"] == '{"cho'
    after = await_end(r, enqueue(r, {"messages": [{"role": "user", "content": "next"}]}))
    assert after["state"] == "done"
    assert json.loads(after["result"])["choices"][0]["message"]["content"] == "echo: next"


def test_a_connection_reset_mid_body_is_a_retryable_failure(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"cut_after": 3, "cut": "reset", "fail_times": 1, "key": "rst"}})
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2
    assert "Connection reset by peer" in j["error"]


def test_an_answer_that_is_not_http_is_a_retryable_failure(r, stub, make_worker):
    make_worker(HTTP_Q, stub.url)
    jid = enqueue(r, {"stub": {"raw_hex": b"garbage\r\n\r\n".hex(), "fail_times": 1,
                               "key": "raw"}})
    j = await_end(r, jid)
    assert j["state"] == "done" and j["attempts"] == 2
    assert "Received HTTP/0.9 when not allowed" in j["error"]


# --- the table itself ------------------------------------------------------


def test_every_row_of_the_table_names_tests_that_exist():
    """docs/bad-input.md: no row without a test, and no test named there
    that does not exist (renamed or removed)."""
    text = open(os.path.join(REPO, "docs", "bad-input.md")).read()
    rows = [line for line in text.splitlines() if line.startswith("| ")
            and not line.startswith("| input ") and not line.startswith("|---")]
    assert len(rows) > 100
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        refs = re.findall(r"`([\w.]+)::(\w+)(?:\[\w+\])?`", cell)
        assert refs or cell == "same", f"a row without a test: {row}"
        for path, name in refs:
            folder = "integration" if path.endswith(".py") else "unit"
            with open(os.path.join(REPO, "tests", folder, path)) as f:
                src = f.read()
            assert re.search(rf"(def|void) {name}\(", src), f"{path}::{name} does not exist"
        if "**defect**" in row:
            assert "(xfail)" in cell, f"a defect row without its xfail test: {row}"
