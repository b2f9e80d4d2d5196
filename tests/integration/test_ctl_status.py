"""corralctl status, dead, pause, resume and breaker against a real Redis
with a running corrald."""
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import Program, kill_with_children, wait_until


@pytest.fixture
def env(build_dir, tmp_path, redis_server, r):
    # r first: it flushes the database, which must happen before corrald declares.
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[pool]\nmin = 2\nmax = 4\n"
                    "[scale]\ntick = 250ms\n[queue jobs]\nhandler = echo\n"
                    "[queue slow]\nhandler = exec\ncommand = /bin/sh -c 'sleep 5; cat'\n"
                    "max_attempts = 1\n"
                    # nothing listens on port 9: every call fails to connect
                    "[queue calls]\nhandler = http\nservice = ai\nbackoff = 100ms..200ms\n"
                    "[service ai]\nurl = http://127.0.0.1:9/v1\nconnect_timeout = 1s\n"
                    "breaker_min_calls = 3\nbreaker_open_for = 1h\nbreaker_open_max = 2h\n")
    exe = os.path.join(build_dir, "corrald")
    if not os.path.exists(exe):
        pytest.skip("corrald not built")
    d = Program([exe, "-c", str(conf)], str(tmp_path / "corrald.log"))

    def ctl(*args):
        return subprocess.run([os.path.join(build_dir, "corralctl"), "-c", str(conf), *args],
                              capture_output=True, text=True, timeout=20)
    yield ctl
    # Killed, not drained: a SIGTERM would wait out the 5 s job the dead-list
    # test leaves running, and no test here is about the stop.
    kill_with_children(d)


def status(ctl):
    res = ctl("status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_status_json_has_the_documented_keys_and_this_host(env, r):
    s = wait_until(lambda: (lambda st: st if st["hosts"] and st["hosts"][0]["workers"] == 2
                            else None)(status(env)), what="the host's heartbeat")
    assert {"time_ms", "queues", "hosts", "breakers"} <= set(s)
    q = {q["name"]: q for q in s["queues"]}
    assert set(q) == {"jobs", "slow", "calls"}
    for key in ["paused", "depth", "depth_by_priority", "inflight", "scheduled", "dead",
                "enqueued_per_s", "done_per_s", "failed_per_s", "proc_ms_p50", "proc_ms_p95",
                "oldest_wait_ms"]:
        assert key in q["jobs"], key
    h = s["hosts"][0]
    assert h["host"] == socket.gethostname()
    for key in ["pid", "workers", "busy", "slots", "min", "max", "desired", "last_decision",
                "heartbeat_age_ms", "version"]:
        assert key in h, key
    assert h["min"] == 2 and h["max"] == 4 and h["stale"] is False


def test_status_shows_depth_paused_queues_and_stale_hosts(env, r):
    wait_until(lambda: status(env)["hosts"], what="a heartbeat")
    assert env("pause", "jobs").returncode == 0
    for _ in range(3):
        r.fcall("corral_enqueue", 1, "jobs", "{}", '{"priority": "high"}')
    r.hset("corral:host:ghost", mapping={"host": "ghost", "workers": 3,
                                         "heartbeat_ms": int(time.time() * 1000) - 60000})
    r.zadd("corral:hosts", {"ghost": int(time.time() * 1000) - 60000})
    s = status(env)
    q = {q["name"]: q for q in s["queues"]}["jobs"]
    assert q["paused"] is True and q["depth"] == 3 and q["depth_by_priority"]["high"] == 3
    ghost = next(h for h in s["hosts"] if h["host"] == "ghost")
    assert ghost["stale"] is True and ghost["heartbeat_age_ms"] >= 60000
    table = env("status").stdout
    assert "paused" in table and "STALE" in table and "high=3" in table
    assert env("resume", "jobs").returncode == 0
    wait_until(lambda: {q["name"]: q for q in status(env)["queues"]}["jobs"]["depth"] == 0,
               what="the resumed queue to drain")


def test_dead_list_retry_and_purge(env, r):
    wait_until(lambda: status(env)["hosts"], what="a heartbeat")
    ids = [r.fcall("corral_enqueue", 1, "slow", "{}") for _ in range(2)]
    wait_until(lambda: r.zcard("corral:{slow}:active") == 2, what="both to start")
    for jid in ids:  # fail them for good, as their worker would
        j = json.loads(r.fcall_ro("corral_job", 1, "slow", jid))
        r.fcall("corral_fail", 1, "slow", j["worker"], jid, str(j["run"]), "permanent",
                "HTTP 400: no")
    listed = env("dead", "slow", "list")
    assert listed.returncode == 0
    assert all(jid in listed.stdout for jid in ids) and "HTTP 400: no" in listed.stdout
    res = env("dead", "slow", "retry", ids[0])
    assert res.returncode == 0 and res.stdout.startswith("1 ")
    assert env("dead", "slow", "purge").stdout.startswith("1 ")
    assert r.llen("corral:{slow}:dead") == 0
    assert env("dead", "nosuch", "list").returncode == 1
    assert env("dead", "slow", "frobnicate").returncode == 2
    assert env("pause", "nosuch").returncode == 1


def test_an_open_breaker_in_status_breaker_and_its_reset(env, r):
    wait_until(lambda: status(env)["hosts"], what="a heartbeat")
    (b,) = status(env)["breakers"]
    assert b["service"] == "ai" and b["state"] == "closed" and b["calls"] == 0
    assert b["open_until_ms"] == 0 and b["failure_rate"] == 0
    ids = [r.fcall("corral_enqueue", 1, "calls", "{}") for _ in range(3)]
    b = wait_until(lambda: (lambda x: x if x["state"] == "open" else None)(
        status(env)["breakers"][0]), what="the breaker to open")
    # while open it shows the window that tripped it (the window itself
    # starts afresh, as each state change empties it)
    assert b["calls"] == 3 and b["failures"] == 3 and b["failure_rate"] == 1.0
    assert b["reason"].startswith("failure rate 100% (3 of 3 calls")
    assert b["open_until_ms"] - b["time_ms"] > 3_500_000
    # The three jobs wait (scheduled). A retry reserved just before the
    # breaker opened is active until its own call fails (a late call,
    # docs/breakers.md) and then waits too: on a loaded machine that takes a
    # moment, so this is waited for, not read once.
    wait_until(lambda: all(json.loads(r.fcall_ro("corral_job", 1, "calls", i))["state"]
                           == "scheduled" for i in ids),
               timeout=10, what="the three jobs to wait for the breaker")
    table = env("status").stdout
    row = next(line for line in table.splitlines() if line.startswith("ai "))
    assert "open" in row and "failure rate 100%" in row and "59m" in row
    one = env("breaker", "ai", "--json")
    assert one.returncode == 0 and json.loads(one.stdout)["state"] == "open"
    assert "open" in env("breaker").stdout
    bad = env("breaker", "nosuch")
    assert bad.returncode == 1 and 'unknown service "nosuch"' in bad.stderr
    assert env("breaker", "ai", "frobnicate").returncode == 2
    assert env("pause", "calls").returncode == 0  # so that the calls do not trip it again
    reset = env("breaker", "ai", "reset")
    assert reset.returncode == 0 and "closed" in reset.stdout
    assert status(env)["breakers"][0]["state"] == "closed"
    # the jobs that waited for the breaker are due again at once
    now = int(time.time() * 1000)
    assert all(json.loads(r.fcall_ro("corral_job", 1, "calls", i))["run_at_ms"] <= now + 1000
               for i in ids)


SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="(\\.|[^"\\])*",?)*\})? (\S+)$')


def parse_metrics(text):
    """The exposition checked line by line: HELP and TYPE once per family,
    before its samples; every sample well-formed and unique -> {series: value}."""
    helped, typed, series = set(), set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped and name not in typed, line
            assert kind in ("gauge", "counter", "histogram"), line
            assert (kind == "counter") == name.endswith("_total"), line
            typed.add(name)
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample: {line!r}"
            fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            assert m.group(1) in typed or fam in typed, f"sample before its TYPE: {line}"
            key = line.rsplit(" ", 1)[0]
            assert key not in series, f"duplicate series {key}"
            series[key] = float(m.group(5))
    return series


def test_metrics_expose_what_status_knows(env, r):
    wait_until(lambda: status(env)["hosts"], what="a heartbeat")
    assert env("pause", "jobs").returncode == 0
    for _ in range(3):
        r.fcall("corral_enqueue", 1, "jobs", "{}", '{"priority": "high"}')
    r.hset("corral:host:gh\"ost", mapping={"host": "gh\"ost", "workers": 3,
                                            "heartbeat_ms": int(time.time() * 1000) - 60000})
    r.zadd("corral:hosts", {"gh\"ost": int(time.time() * 1000) - 60000})
    for _ in range(3):
        r.fcall("corral_enqueue", 1, "calls", "{}")
    wait_until(lambda: status(env)["breakers"][0]["state"] == "open", what="the breaker to open")
    res = env("metrics")
    assert res.returncode == 0, res.stderr
    m = parse_metrics(res.stdout)
    assert m["corral_up"] == 1
    assert m['corral_queue_depth{queue="jobs",priority="high"}'] == 3
    assert m['corral_queue_paused{queue="jobs"}'] == 1
    assert m['corral_queue_paused{queue="slow"}'] == 0
    assert m['corral_host_stale{host="gh\\"ost"}'] == 1  # label values escaped
    assert m['corral_host_heartbeat_age_seconds{host="gh\\"ost"}'] >= 60
    here = socket.gethostname()
    assert m[f'corral_host_workers_min{{host="{here}"}}'] == 2
    assert m['corral_breaker_state{service="ai",state="open"}'] == 1
    assert m['corral_breaker_state{service="ai",state="closed"}'] == 0
    assert m['corral_breaker_open_until_timestamp_seconds{service="ai"}'] > time.time() + 3000
    assert env("metrics", "extra").returncode == 2
    assert env("resume", "jobs").returncode == 0


def test_metrics_counters_and_histogram_are_kept_in_redis_beyond_the_buckets(env, r):
    # docs/web.md, "Metrics": monotonic counters in <prefix>:{Q}:ctr, kept by
    # the function library; the per-minute buckets (2 h) are not their source.
    parser = pytest.importorskip("prometheus_client.parser")
    wait_until(lambda: status(env)["hosts"], what="a heartbeat")
    for _ in range(5):
        r.fcall("corral_enqueue", 1, "jobs", '{"n": 1}')
    wait_until(lambda: r.hget("corral:{jobs}:ctr", "done") == "5", timeout=10,
               what="the echo workers to run five jobs")
    for k in r.keys("corral:{jobs}:st:*"):  # as if two hours had passed
        r.delete(k)
    res = env("metrics")
    assert res.returncode == 0, res.stderr
    parse_metrics(res.stdout)
    fams = {f.name: f for f in parser.text_string_to_metric_families(res.stdout)}
    val = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in fams.values() for s in f.samples}
    jobs = (("queue", "jobs"),)
    assert fams["corral_jobs_done"].type == "counter"
    assert val[("corral_jobs_enqueued_total", jobs)] == 5
    assert val[("corral_jobs_done_total", jobs)] == 5
    assert val[("corral_jobs_dead_total", jobs)] == 0
    hist = fams["corral_job_processing_seconds"]
    assert hist.type == "histogram"
    assert val[("corral_job_processing_seconds_count", jobs)] == 5
    assert val[("corral_job_processing_seconds_bucket", (("le", "+Inf"), ("queue", "jobs")))] == 5
    assert ("corral_service_calls_total", (("outcome", "done"), ("service", "ai"))) in val
