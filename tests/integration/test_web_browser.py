"""The dashboard in a real headless Chromium (tests/browser/dashboard.js,
playwright-core driving Debian's chromium): a real corrald with workers, a
queue that appears within 3 s of its enqueue, logging in, pausing it with
its button, a phone's width, and the screenshot the README shows.

Skipped, saying so, only when chromium is not installed here; CI installs
it (.ci/run). Set CORRAL_WEB_SCREENSHOT to a path to keep the screenshot
(docs/img/web.png is made that way: docs/web.md)."""
import http.client
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import REPO, binary_path, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"


def seed_last_hour(r, queue):
    """Writes the per-minute statistics buckets of the hour before this
    minute, in the format of queue/corral.lua (K:st:<minute>), so that the
    screenshot's per-minute charts have an hour to show: a backlog arriving
    in a burst and draining."""
    s, _ = r.time()
    now_min = s // 60
    for k in range(1, 61):
        m = now_min - k
        burst = 40 <= k <= 48
        enq = 90 if burst else 12 + (k * 7) % 9
        done = 60 if k < 40 and k > 30 else enq - (k % 3)
        fail = 3 if burst else k % 2
        fields = {"enq": enq, "done": max(done, 0), "fail": fail, "retry": fail,
                  "h6": max(done, 0) // 2, "h7": max(done, 0) - max(done, 0) // 2 + fail,
                  "pn": max(done, 0) + fail, "ps": (max(done, 0) + fail) * 120}
        key = f"corral:{{{queue}}}:st:{m}"
        r.hset(key, mapping=fields)
        r.expire(key, 7200)


def test_dashboard_in_chromium_shows_a_new_queue_logs_in_and_pauses_it(build_dir, tmp_path,
                                                                        redis_server, r):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed here (apt-get install chromium); CI installs it")
    node = shutil.which("node")
    assert node, "node is needed for the browser test (it runs playwright-core)"
    pw = os.path.join(REPO, "web", "node_modules", "playwright-core")
    assert os.path.isdir(pw), "web/node_modules/playwright-core is missing: run npm ci in web/"
    web_exe = binary_path(build_dir, "corral-web")
    corrald = binary_path(build_dir, "corrald")
    ctl = binary_path(build_dir, "corralctl")

    port = free_port()
    token = os.urandom(24).hex()
    (tmp_path / "web.token").write_text(token + "\n")
    conf = tmp_path / "c.conf"
    dconf = tmp_path / "corrald.conf"
    # corrald serves jobs and calls; "late" is in corralctl's config alone,
    # declared by the test's enqueue.
    text = (redis_server.redis_section() +
                    f"[web]\nlisten = 127.0.0.1:{port}\ntoken_file = {tmp_path / 'web.token'}\n"
                    "[pool]\nmin = 2\nmax = 6\nqueues = jobs, calls\n[scale]\ntick = 250ms\n"
                    "[queue jobs]\nhandler = echo\n"
                    "[queue calls]\nhandler = http\nservice = ai\nbackoff = 100ms..200ms\n"
                    "max_attempts = 2\n"
                    "[service ai]\nurl = http://127.0.0.1:9/v1\nconnect_timeout = 1s\n"
                    "breaker_min_calls = 3\nbreaker_open_for = 1h\nbreaker_open_max = 2h\n")
    dconf.write_text(text)
    conf.write_text(text + "[queue late]\nhandler = echo\n")
    logs = [open(tmp_path / "corrald.log", "w"), open(tmp_path / "web.log", "w")]
    procs = [subprocess.Popen([corrald, "-c", str(dconf)], stderr=logs[0])]
    try:
        wait_until(lambda: r.exists("corral:{jobs}:conf") and r.zcard("corral:hosts"),
                   timeout=15, what="corrald to declare its queues and beat")
        seed_last_hour(r, "jobs")
        # Some real traffic: echo jobs done, calls failing into the breaker.
        for i in range(30):
            r.fcall("corral_enqueue", 1, "jobs", json.dumps({"i": i}))
        for i in range(6):
            r.fcall("corral_enqueue", 1, "calls", json.dumps({"i": i}))
        procs.append(subprocess.Popen([web_exe, "-c", str(conf)], stderr=logs[1]))
        shot = os.environ.get("CORRAL_WEB_SCREENSHOT") or str(tmp_path / "web.png")
        env = dict(os.environ, CORRAL_WEB_URL=f"http://127.0.0.1:{port}/",
                   CORRAL_WEB_TOKEN=token, CORRALCTL=ctl, CORRAL_CONF=str(conf), QUEUE="late",
                   SCREENSHOT=shot, USER_DATA_DIR=str(tmp_path / "chromium-profile"),
                   CHROMIUM=CHROMIUM)

        def listening():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                ok = c.getresponse().status == 200
                c.close()
                return ok
            except OSError:
                return False
        wait_until(listening, timeout=10, what="corral-web to answer")
        t0 = time.monotonic()
        res = subprocess.run([node, os.path.join(REPO, "tests", "browser", "dashboard.js")],
                             env=env, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr + res.stdout
        figures = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"browser test: {figures} in {time.monotonic() - t0:.1f} s; screenshot {shot}")
        assert figures["queue_appeared_ms"] <= 3000
        # The button really paused the queue in Redis.
        assert r.exists("corral:{late}:paused") == 1
        # The decisions beside the pool chart are corrald's list in Redis.
        assert figures["decisions_shown"] >= 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/api/history")
        hosts = json.loads(c.getresponse().read())["hosts"]
        c.close()
        assert hosts and all(h["decisions_source"] == "redis" and h["decisions"]
                             for h in hosts.values())
        assert os.path.getsize(shot) > 10000
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            p.wait(timeout=30)
        for f in logs:
            f.close()
    assert token not in (tmp_path / "web.log").read_text()
