"""corral-web over real HTTP against a real redis-server: every endpoint,
every refusal (no token, wrong token, cross-site, wrong method, bad path,
bad name, too large, wrong Host), the shared snapshot (many readers, at
most one read of Redis a second), the Prometheus text through a real
parser, and the systemd unit. docs/web.md describes what is tested."""
import http.client
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest

from conftest import (REPO, binary_path, db_snapshot, declare, enqueue, free_port, get_job,
                      reserve, wait_until)


class Web:
    """A corral-web process on a free loopback port, with its own config
    (the queue "jobs" is declared by the test) and token file."""

    def __init__(self, build_dir, tmp_path, redis_server, token=True, extra=""):
        self.exe = binary_path(build_dir, "corral-web")
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.tmp = tmp_path
        tok = tmp_path / "web.token"
        tok.write_text(self.token + "\n")
        self.conf = tmp_path / "web.conf"
        web = f"[web]\nlisten = 127.0.0.1:{self.port}\n"
        if token:
            web += f"token_file = {tok}\n"
        else:
            self.token = None
        self.conf.write_text(redis_server.redis_section() + web +
                             "[queue jobs]\nhandler = echo\n" + extra)
        self.log_path = tmp_path / "web.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=self.log)
        wait_until(self.up, timeout=10, what="corral-web to answer /healthz")

    def up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"corral-web exited: {self.log_path.read_text()}")
        try:
            return self.get("/healthz")[0] in (200, 503)
        except OSError:
            return False

    def request(self, method, path, body=None, headers=None, host=None):
        """One request on a fresh connection -> (status, headers dict, body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            c.putheader("Host", host if host is not None else f"127.0.0.1:{self.port}")
            for k, v in (headers or {}).items():
                c.putheader(k, v)
            data = body.encode() if isinstance(body, str) else body
            if data is not None:
                c.putheader("Content-Length", str(len(data)))
            c.endheaders(data)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, token=True, headers=None, **kw):
        h = dict(headers or {})
        if token is True and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        return self.request("POST", path, body=body, headers=h, **kw)

    def json(self, path):
        st, _, body = self.get(path)
        assert st == 200, body
        return json.loads(body)

    def status(self):
        return self.json("/api/status")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def web(build_dir, tmp_path, redis_server, r):
    # r first: it flushes the database and loads the library.
    declare(r, "jobs")
    w = Web(build_dir, tmp_path, redis_server)
    yield w
    assert w.stop() == 0
    log = w.log_path.read_text()
    assert w.token not in log, "the token must never be logged"


def wait_status(w, pred, what, timeout=5):
    return wait_until(lambda: pred(w.status()), timeout=timeout, interval=0.1, what=what)


def ctl(build_dir, conf, *args):
    return subprocess.run([os.path.join(build_dir, "corralctl"), "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=20)


def run_one(r, queue="jobs", fail=None):
    """Enqueues a job and runs it: ack (done), or fail permanently (dead)."""
    jid = enqueue(r, queue, '{"n": 1}')
    res = reserve(r, queue)
    run = res[0][1]
    if fail is None:
        r.fcall("corral_ack", 1, queue, "host1:1", jid, run, '{"ok": true}')
    else:
        r.fcall("corral_fail", 1, queue, "host1:1", jid, run, "permanent", fail)
    return jid


# --- what it serves -------------------------------------------------------


def test_status_is_the_json_of_corralctl_status(web, r, build_dir):
    declare(r, "other")
    enqueue(r, "jobs", "{}")
    enqueue(r, "jobs", "{}", priority="high")
    r.hset("corral:host:w1", mapping={"host": "w1", "pid": 7, "workers": 3, "busy": 1,
                                      "slots": 12, "min": 2, "max": 8, "desired": 3,
                                      "last_decision": "2 -> 3: depth 2",
                                      "heartbeat_ms": int(time.time() * 1000)})
    r.zadd("corral:hosts", {"w1": int(time.time() * 1000)})
    mine = wait_status(web, lambda s: s if len(s["queues"]) == 2 and s["hosts"] else None,
                       "both queues and the host")
    theirs = json.loads(ctl(build_dir, web.conf, "status", "--json").stdout)
    assert set(mine) == set(theirs)

    def strip(s):
        drop = {"time_ms", "oldest_wait_ms", "heartbeat_age_ms", "enqueued_per_s"}
        return {k: [{f: v for f, v in o.items() if f not in drop} for o in s[k]]
                for k in ("queues", "hosts", "breakers")}
    assert strip(mine) == strip(theirs)
    jobs = next(q for q in mine["queues"] if q["name"] == "jobs")
    assert jobs["depth"] == 2 and jobs["depth_by_priority"]["high"] == 1


def test_dashboard_and_assets_come_from_the_binary_with_security_headers(web):
    st, h, body = web.get("/")
    assert st == 200 and h["content-type"].startswith("text/html")
    html = body.decode()
    assert '<script src="/assets/app.js"' in html and "/assets/uPlot.iife.min.js" in html
    # No inline script or style for the CSP to allow.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "style=" not in html and "<style" not in html
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    st, h, body = web.get("/assets/uPlot.iife.min.js")
    assert st == 200 and h["content-type"].startswith("text/javascript")
    assert b"uPlot" in body and len(body) > 20000
    lib = open(os.path.join(REPO, "web/node_modules/uplot/dist/uPlot.iife.min.js"), "rb").read()
    assert body == lib, "uPlot is embedded byte for byte from web/node_modules"
    for name in ["app.js", "app.css", "uPlot.min.css", "index.html"]:
        assert web.get(f"/assets/{name}")[0] == 200, name
    st, h, _ = web.request("HEAD", "/api/status")
    assert st == 200 and "content-security-policy" in h


def test_history_has_the_hour_per_minute_and_the_decisions_kept_in_redis(web, r):
    run_one(r)
    run_one(r)
    run_one(r, fail="boom")
    now = int(time.time() * 1000)
    r.hset("corral:host:w1", mapping={"host": "w1", "workers": 3, "desired": 4, "min": 2,
                                      "max": 8, "heartbeat_ms": now})
    r.zadd("corral:hosts", {"w1": now})
    line = json.dumps({"t_ms": now, "from": 3, "to": 4, "reason": "3 -> 4: depth 9"})
    r.lpush("corral:decisions:w1", line)

    def ready():
        h = web.json("/api/history")
        q = h["queues"].get("jobs")
        return h if q and sum(q["done"]) == 2 and "w1" in h["hosts"] else None
    h = wait_until(ready, timeout=5, interval=0.1, what="the history of jobs and w1")
    q = h["queues"]["jobs"]
    assert len(h["minute_ms"]) == 61 and all(len(q[k]) == 61 for k in
                                             ["enqueued", "done", "failed", "dead", "p50_ms"])
    assert sum(q["enqueued"]) == 3 and sum(q["failed"]) == 1 and sum(q["dead"]) == 1
    assert len(q["depth"]) == len(h["sample_ms"]) >= 1
    w1 = h["hosts"]["w1"]
    assert w1["decisions_source"] == "redis"
    assert w1["decisions"][0]["reason"] == "3 -> 4: depth 9"
    assert w1["workers"][-1] == 3 and w1["desired"][-1] == 4


def test_job_lookup_shows_the_job_and_404_for_unknown_ones(web, r):
    jid = run_one(r)
    st, _, body = web.get(f"/api/jobs/jobs/{jid}")
    assert st == 200
    j = json.loads(body)
    assert j["state"] == "done" and j["result"] == '{"ok": true}' and j["attempts"] == 1
    assert j["payload"] == '{"n": 1}' and j["finished_ms"] >= j["started_ms"] > 0
    st, _, body = web.get("/api/jobs/jobs/999")
    assert st == 404 and "999" in json.loads(body)["error"]
    st, _, body = web.get("/api/jobs/nosuch/1")
    assert st == 404 and "nosuch" in json.loads(body)["error"]


def test_dead_list_shows_each_job_with_its_error(web, r):
    a = run_one(r, fail="bad input A")
    b = run_one(r, fail="bad input B")
    d = web.json("/api/queues/jobs/dead")
    assert d["total"] == 2
    assert [j["id"] for j in d["jobs"]] == [b, a]  # newest first
    assert d["jobs"][1]["error"] == "bad input A" and d["jobs"][1]["attempts"] == 1
    st, _, body = web.get("/api/queues/nosuch/dead")
    assert st == 404 and "unknown queue" in json.loads(body)["error"]


def test_healthz_and_status_say_when_redis_is_down(web, r, redis_server):
    assert web.get("/healthz")[0] == 200
    redis_server.stop()
    try:
        def down():
            st, _, body = web.get("/healthz")
            return st == 503 and json.loads(body)["ok"] is False
        wait_until(down, timeout=5, interval=0.2, what="/healthz to answer 503")
        st, _, body = web.get("/api/status")
        assert st == 503 and json.loads(body)["error"]
        st, _, body = web.get("/metrics")
        assert st == 200 and re.search(rb"^corral_up 0$", body, re.M)
        assert web.get("/api/history")[0] == 200  # the charts keep what they had
    finally:
        redis_server.start()
    wait_until(lambda: web.get("/healthz")[0] == 200, timeout=5, interval=0.2,
               what="/healthz back to 200")


# --- metrics --------------------------------------------------------------


def test_metrics_parse_as_prometheus_text_with_counters_and_a_histogram(web, r):
    parser = pytest.importorskip("prometheus_client.parser")
    for _ in range(3):
        run_one(r)
    run_one(r, fail="no")
    wait_until(lambda: b'corral_jobs_done_total{queue="jobs"} 3' in web.get("/metrics")[2],
               timeout=5, interval=0.1, what="3 done jobs in /metrics")
    st, h, body = web.get("/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in parser.text_string_to_metric_families(body.decode())}
    assert fams["corral_up"].samples[0].value == 1
    for name in ["corral_jobs_enqueued", "corral_jobs_done", "corral_jobs_failed",
                 "corral_jobs_retried", "corral_jobs_dead", "corral_jobs_deferred",
                 "corral_service_calls", "corral_web_refreshes"]:
        assert fams[name].type == "counter", name
    val = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in fams.values() for s in f.samples}
    assert val[("corral_jobs_enqueued_total", (("queue", "jobs"),))] == 4
    assert val[("corral_jobs_dead_total", (("queue", "jobs"),))] == 1
    hist = fams["corral_job_processing_seconds"]
    assert hist.type == "histogram"
    buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
    les = [float(s.labels["le"]) for s in buckets]
    assert les == sorted(les) and les[-1] == math.inf
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == 4 == val[("corral_job_processing_seconds_count", (("queue", "jobs"),))]
    # The gauges of corralctl metrics are there too.
    assert fams["corral_queue_depth"].type == "gauge"
    assert "corral_breaker_state" in fams


def test_counters_outlive_the_buckets_and_a_restart_of_corral_web(web, r, build_dir, tmp_path,
                                                                  redis_server):
    # Prometheus' rate() needs counters that only grow: they are Redis's
    # (<prefix>:{Q}:ctr), not sums corral-web makes of the 2 h of buckets.
    for _ in range(3):
        run_one(r)
    wait_until(lambda: b'corral_jobs_done_total{queue="jobs"} 3' in web.get("/metrics")[2],
               timeout=5, interval=0.1, what="3 done jobs in /metrics")
    assert web.stop() == 0
    for k in r.keys("corral:{jobs}:st:*"):  # as if two hours had passed
        r.delete(k)
    again = tmp_path / "again"
    again.mkdir()
    w2 = Web(build_dir, again, redis_server)
    try:
        body = wait_until(lambda: (lambda b: b if b"corral_jobs_done_total" in b else None)(
            w2.get("/metrics")[2]), timeout=5, interval=0.1, what="the counters")
        assert b'corral_jobs_done_total{queue="jobs"} 3\n' in body
        assert b'corral_jobs_enqueued_total{queue="jobs"} 3\n' in body
        assert b'corral_job_processing_seconds_count{queue="jobs"} 3\n' in body
    finally:
        assert w2.stop() == 0


def test_histogram_buckets_are_those_of_the_function_library(web, r):
    lua = open(os.path.join(REPO, "queue", "lua", "stats.lua")).read()
    m = re.search(r"local HIST = \{([^}]*)\}", lua)
    hist_ms = [int(x) for x in re.findall(r"\d+", m.group(1))]
    run_one(r)
    body = wait_until(lambda: (lambda b: b if b"corral_job_processing_seconds_bucket" in b
                               else None)(web.get("/metrics")[2]),
                      timeout=5, interval=0.1, what="the histogram")
    les = re.findall(rb'corral_job_processing_seconds_bucket\{queue="jobs",le="([^"]+)"\}', body)
    assert [float(x) for x in les[:-1]] == [v / 1000 for v in hist_ms]
    assert les[-1] == b"+Inf"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed")
def test_a_prometheus_server_scrapes_it(web, r, tmp_path):
    run_one(r)
    prom_port = free_port()
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: corral\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{web.port}']\n")
    p = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prom.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def scraped(query="corral_jobs_done_total"):
            try:
                c = http.client.HTTPConnection("127.0.0.1", prom_port, timeout=5)
                c.request("GET", "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
                res = json.loads(c.getresponse().read())
                c.close()
                return res["data"]["result"] if res.get("status") == "success" else None
            except (OSError, ValueError):
                return None
        res = wait_until(scraped, timeout=30, interval=0.5, what="prometheus to scrape corral-web")
        assert res[0]["metric"]["queue"] == "jobs" and res[0]["value"][1] == "1"
        # The histogram adds up across queues, as Prometheus users aggregate it.
        q = scraped("histogram_quantile(0.5, sum by (le) (corral_job_processing_seconds_bucket))")
        assert q and 0 <= float(q[0]["value"][1]) <= 600
    finally:
        p.terminate()
        p.wait(timeout=20)


# --- actions --------------------------------------------------------------

ACTIONS = [
    ("/api/queues/jobs/pause", None),
    ("/api/queues/jobs/resume", None),
    ("/api/queues/jobs/dead/retry", {"all": True}),
    ("/api/queues/jobs/dead/purge", None),
    ("/api/breakers/ai/reset", None),
    ("/api/jobs/jobs/1/cancel", None),
]


def declare_service(r, name="ai"):
    r.fcall("corral_declare_service", 1, name, json.dumps({}))


@pytest.mark.parametrize("token", ["none", "wrong", "prefix", "longer", "empty", "basic"])
def test_every_action_without_the_right_token_is_401_and_changes_nothing(web, r, token):
    declare_service(r)
    enqueue(r, "jobs", "{}")
    run_one(r, fail="x")
    before = db_snapshot(r)
    bad = {"none": None, "wrong": secrets.token_hex(24), "prefix": web.token[:-1],
           "longer": web.token + "0", "empty": ""}
    for path, body in ACTIONS:
        if token == "basic":
            st, h, _ = web.post(path, body, token=None,
                                headers={"Authorization": "Basic " + web.token})
        else:
            st, h, _ = web.post(path, body, token=bad[token])
        assert st == 401, path
        assert h["www-authenticate"].startswith("Bearer")
    assert db_snapshot(r) == before


def test_pause_and_resume_with_the_token(web, r):
    st, _, body = web.post("/api/queues/jobs/pause")
    assert st == 200 and json.loads(body) == {"ok": True, "queue": "jobs", "paused": True}
    # The next read shows it at once, not a second later.
    assert next(q for q in web.status()["queues"] if q["name"] == "jobs")["paused"] is True
    assert web.post("/api/queues/jobs/resume")[0] == 200
    assert next(q for q in web.status()["queues"] if q["name"] == "jobs")["paused"] is False
    st, _, body = web.post("/api/queues/nosuch/pause")
    assert st == 404 and "nosuch" in json.loads(body)["error"]


def test_dead_retry_by_ids_or_all_and_purge(web, r):
    a = run_one(r, fail="a")
    b = run_one(r, fail="b")
    c = run_one(r, fail="c")
    st, _, body = web.post("/api/queues/jobs/dead/retry", {"ids": [a]})
    assert st == 200 and json.loads(body)["retried"] == 1
    assert get_job(r, "jobs", a)["state"] == "queued"
    st, _, body = web.post("/api/queues/jobs/dead/retry", {"ids": [a]})
    assert st == 409, "a job that is no longer dead is the library's refusal"
    st, _, body = web.post("/api/queues/jobs/dead/retry", {"all": True})
    assert st == 200 and json.loads(body)["retried"] == 2
    assert {get_job(r, "jobs", j)["state"] for j in (b, c)} == {"queued"}
    declare(r, "other")
    run_one(r, "other", fail="d")
    run_one(r, "other", fail="e")
    st, _, body = web.post("/api/queues/other/dead/purge")
    assert st == 200 and json.loads(body)["purged"] == 2
    assert r.llen("corral:{other}:dead") == 0


@pytest.mark.parametrize("body", [None, "", "not json", "[]", '{"ids": []}', '{"ids": "1"}',
                                  '{"ids": ["a b"]}', '{"all": false}', '{"all": 1}',
                                  '{"all": true, "ids": ["1"]}', '{"ids": [1]}',
                                  '{"ids": ["1"], "ids": ["2"]}'])
def test_a_bad_retry_body_is_400_and_changes_nothing(web, r, body):
    run_one(r, fail="x")
    before = db_snapshot(r)
    st, _, resp = web.post("/api/queues/jobs/dead/retry", body,
                           headers={"Content-Type": "application/json"})
    assert st == 400 and "dead/retry" in json.loads(resp)["error"]
    assert db_snapshot(r) == before


def test_breaker_reset_with_the_token(web, r):
    declare_service(r)
    st, _, body = web.post("/api/breakers/ai/reset")
    assert st == 200 and json.loads(body)["state"] == "closed"
    st, _, body = web.post("/api/breakers/nosvc/reset")
    assert st == 404 and "nosvc" in json.loads(body)["error"]


def test_cancel_a_queued_or_running_job_and_refuse_a_finished_one(web, r):
    queued = enqueue(r, "jobs", "{}")
    st, _, body = web.post(f"/api/jobs/jobs/{queued}/cancel")
    assert st == 200 and json.loads(body)["state"] == "cancelled"
    assert get_job(r, "jobs", queued)["state"] == "cancelled"
    running = enqueue(r, "jobs", "{}")
    reserve(r, "jobs")
    st, _, body = web.post(f"/api/jobs/jobs/{running}/cancel")
    assert st == 200 and get_job(r, "jobs", running)["state"] == "cancelled"  # issue 16
    before = db_snapshot(r)
    st, _, body = web.post(f"/api/jobs/jobs/{running}/cancel")
    assert st == 409 and "cannot be cancelled" in json.loads(body)["error"]
    done = run_one(r)
    before = db_snapshot(r)
    st, _, body = web.post(f"/api/jobs/jobs/{done}/cancel")
    assert st == 409 and "done and cannot be cancelled" in json.loads(body)["error"]
    # No such job (NOJOB) or queue (NOQUEUE): 404.
    st, _, body = web.post("/api/jobs/jobs/999/cancel")
    assert st == 404 and "no job 999" in json.loads(body)["error"]
    assert web.post("/api/jobs/nosuchqueue/1/cancel")[0] == 404
    assert db_snapshot(r) == before
    # A dead job can be cancelled.
    dead = run_one(r, fail="boom")
    st, _, body = web.post(f"/api/jobs/jobs/{dead}/cancel")
    assert st == 200 and json.loads(body)["state"] == "cancelled"
    assert get_job(r, "jobs", dead)["state"] == "cancelled"


def test_login_sets_an_httponly_samesite_strict_cookie_that_acts_until_logout(web, r):
    st, _, _ = web.request("POST", "/login", body="token=wrong" + "0" * 40,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 401
    st, h, _ = web.request("POST", "/login", body=f"token={web.token}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 200
    cookie = h["set-cookie"]
    assert re.match(r"corral_session=[0-9a-f]{64};", cookie)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert web.token not in cookie
    sid = cookie.split(";")[0]
    hdr = {"Cookie": sid}
    assert json.loads(web.get("/api/session", headers=hdr)[2]) == {"authenticated": True,
                                                                   "actions": True}
    assert web.post("/api/queues/jobs/pause", token=None, headers=hdr)[0] == 200
    assert web.post("/logout", token=None, headers=hdr)[0] == 200
    assert web.post("/api/queues/jobs/resume", token=None, headers=hdr)[0] == 401
    forged = {"Cookie": "corral_session=" + "0" * 64}
    assert web.post("/api/queues/jobs/resume", token=None, headers=forged)[0] == 401


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"},
                                     {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_cross_site_posts_are_refused_even_with_the_token(web, r, headers):
    before = db_snapshot(r)
    st, _, body = web.post("/api/queues/jobs/pause", headers=headers)
    assert st == 403 and "cross-site" in json.loads(body)["error"]
    st, _, _ = web.request("POST", "/login", body=f"token={web.token}", headers=headers)
    assert st == 403
    assert db_snapshot(r) == before
    same = {"Origin": f"http://127.0.0.1:{web.port}", "Sec-Fetch-Site": "same-origin"}
    assert web.post("/api/queues/jobs/pause", headers=same)[0] == 200


def test_actions_are_post_only_and_reads_get_only(web, r):
    before = db_snapshot(r)
    for path, _ in ACTIONS:
        st, h, _ = web.get(path)
        assert st == 405 and h["allow"] == "POST", path
    st, h, _ = web.post("/api/status")
    assert st == 405 and h["allow"] == "GET, HEAD"
    assert web.request("PUT", "/api/queues/jobs/pause")[0] == 405
    assert web.request("DELETE", "/api/queues/jobs/dead/purge")[0] == 405
    assert db_snapshot(r) == before


def test_actions_are_refused_when_no_token_file_is_configured(build_dir, tmp_path, redis_server,
                                                              r):
    declare(r, "jobs")
    w = Web(build_dir, tmp_path, redis_server, token=False)
    try:
        before = db_snapshot(r)
        st, _, body = w.post("/api/queues/jobs/pause",
                             headers={"Authorization": "Bearer " + "x" * 40})
        assert st == 403 and "token_file" in json.loads(body)["error"]
        assert json.loads(w.get("/api/session")[2]) == {"authenticated": False, "actions": False}
        assert db_snapshot(r) == before
        assert w.get("/api/status")[0] == 200
    finally:
        assert w.stop() == 0


# --- bad requests ---------------------------------------------------------


@pytest.mark.parametrize("path,status", [
    ("/nothing", 404), ("/api", 404), ("/API/status", 404), ("/etc/passwd", 404),
    ("/assets/nosuch.js", 404), ("/assets/.env", 404),
    ("/..", 400), ("/../etc/passwd", 400), ("/%2e%2e/%2e%2e/etc/passwd", 400),
    ("/api/jobs/jobs%2F..%2F..%2Fx/1", 400), ("/api/jobs/jo%00bs/1", 400), ("/a%zz", 400),
    ("/api/jobs/jobs/1%0d%0aSet-Cookie:%20x", 400),
    ("/api/status/", 200), ("//api//status", 200), ("/assets/../api/status", 200),
    ("/api/%73tatus", 200),
])
def test_paths_are_normalised_and_unknown_ones_404(web, path, status):
    st, h, body = web.get(path)
    assert st == status, (path, body)
    if status != 200:
        assert "error" in json.loads(body)
        assert h["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path,what", [
    ("/api/jobs/" + "q" * 65 + "/1", "queue name"),
    ("/api/jobs/a%7Bb/1", "queue name"),
    ("/api/jobs/jobs/%C3%A9", "job id"),
    ("/api/queues/a%20b/dead", "queue name"),
])
def test_bad_names_are_400_naming_what_is_wrong(web, path, what):
    st, _, body = web.get(path)
    assert st == 400 and what in json.loads(body)["error"]


def test_bad_names_in_actions_are_refused_before_the_token_is_looked_at(web, r):
    before = db_snapshot(r)
    st, _, body = web.post("/api/breakers/a%7Bb/reset", token=None)
    assert st == 400 and "service name" in json.loads(body)["error"]
    assert db_snapshot(r) == before


def test_request_limits(web, r):
    before = db_snapshot(r)
    st, _, body = web.post("/api/queues/jobs/dead/retry", "x" * (64 * 1024 + 1))
    assert st == 413
    st, _, _ = web.get("/api/status", headers={"X-Filler": "y" * 20000})
    assert st == 431
    st, _, _ = web.get("/api/jobs/jobs/" + "1" * 1100)
    assert st == 414
    assert db_snapshot(r) == before
    # A body sent in chunks, without a length, is bounded too.
    c = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    c.putrequest("POST", "/api/queues/jobs/dead/retry", skip_host=True)
    c.putheader("Host", f"127.0.0.1:{web.port}")
    c.putheader("Authorization", f"Bearer {web.token}")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    chunk = b"z" * 16384
    for _ in range(5):
        c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    c.send(b"0\r\n\r\n")
    assert c.getresponse().status == 413
    c.close()
    assert db_snapshot(r) == before


def test_a_host_header_that_is_not_the_loopback_is_refused(web):
    # A page whose DNS name was rebound to 127.0.0.1 cannot read the fleet.
    for host in ["evil.example", "evil.example:%d" % web.port, "127.0.0.1.evil.example"]:
        st, _, body = web.get("/api/status", host=host)
        assert st == 421 and "Host" in json.loads(body)["error"]
    for host in ["localhost:%d" % web.port, "127.0.0.1", "[::1]:%d" % web.port]:
        assert web.get("/api/status", host=host)[0] == 200


# --- the shared snapshot --------------------------------------------------


def zrange_calls(r):
    """ZRANGE <prefix>:hosts is sent once per snapshot (ctl_snapshot)."""
    return r.info("commandstats").get("cmdstat_zrange", {}).get("calls", 0)


def test_fifty_concurrent_readers_share_at_most_one_redis_snapshot_a_second(web, r):
    for i in range(5):
        declare(r, f"q{i}")
    barrier = threading.Barrier(50)
    stop = time.monotonic() + 3.0
    seen, errors = [], []

    def reader():
        try:
            barrier.wait(timeout=10)
            while time.monotonic() < stop:
                st, _, body = web.get("/api/status")
                assert st == 200
                seen.append(json.loads(body)["time_ms"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    c0, t0 = zrange_calls(r), time.monotonic()
    threads = [threading.Thread(target=reader) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    c1, t1 = zrange_calls(r), time.monotonic()
    assert not errors, errors[:3]
    assert len(seen) >= 50
    snapshots = c1 - c0
    print(f"{len(seen)} requests in {t1 - t0:.1f} s, {snapshots} Redis snapshots")
    assert snapshots <= math.floor(t1 - t0) + 1
    # The snapshot taken before the count began is shared too.
    assert len(set(seen)) <= snapshots + 1, "every reader got one of the shared snapshots"


# --- the program ----------------------------------------------------------


def test_the_token_is_never_on_the_command_line_or_in_the_log(web, r):
    cmdline = open(f"/proc/{web.proc.pid}/cmdline", "rb").read()
    assert web.token.encode() not in cmdline
    web.request("POST", "/login", body=f"token={web.token}")
    web.post("/api/queues/jobs/pause")
    web.post("/api/queues/jobs/resume", token="wrong" + web.token)
    assert web.token not in web.log_path.read_text()


def run_web(build_dir, *args, env=None):
    return subprocess.run([binary_path(build_dir, "corral-web"), *args], capture_output=True,
                          text=True, timeout=20, env=env)


def test_bad_listen_addresses_and_tokens_are_refused_at_start(build_dir, tmp_path, redis_server):
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + "[web]\nlisten = example.com:80\n")
    res = run_web(build_dir, "-c", str(conf))
    assert res.returncode == 1
    assert f"{conf}: [web] listen: expected ADDR:PORT" in res.stderr
    res = run_web(build_dir, "-c", str(conf), "--listen", "127.0.0.1:99999")
    assert res.returncode == 2 and "--listen: expected ADDR:PORT" in res.stderr
    short = tmp_path / "short.token"
    short.write_text("sekrit\n")
    conf.write_text(redis_server.redis_section() + f"[web]\ntoken_file = {short}\n")
    res = run_web(build_dir, "-c", str(conf))
    assert res.returncode == 1 and "at least 16" in res.stderr and "sekrit" not in res.stderr
    conf.write_text(redis_server.redis_section() + f"[web]\ntoken_file = {tmp_path}/none\n")
    res = run_web(build_dir, "-c", str(conf))
    assert res.returncode == 1 and "token_file" in res.stderr and "none" in res.stderr
    conf.write_text(redis_server.redis_section() + "[web]\nlisten = 127.0.0.1:8470\nbogus = 1\n")
    res = run_web(build_dir, "-c", str(conf))
    assert res.returncode == 1 and "[web] bogus: unknown key" in res.stderr
    assert run_web(build_dir, "--bogus").returncode == 2


def test_a_port_in_use_is_an_error_at_start(web, build_dir):
    res = run_web(build_dir, "-c", str(web.conf))
    assert res.returncode == 1
    assert "cannot listen" in res.stderr and f"127.0.0.1:{web.port}" in res.stderr
    assert web.get("/healthz")[0] == 200  # the first one is untouched


def test_check_reads_the_config_and_the_token_and_exits(build_dir, tmp_path, redis_server):
    tok = tmp_path / "t"
    tok.write_text("a" * 32 + "\n")
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section() + f"[web]\ntoken_file = {tok}\n")
    res = run_web(build_dir, "-c", str(conf), "--check")
    assert res.returncode == 0 and "actions enabled" in res.stdout and "a" * 32 not in res.stdout
    # corrald --check knows the [web] section too.
    res = subprocess.run([binary_path(build_dir, "corrald"), "-c", str(conf), "--check"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 0 and "[web]\nlisten = 127.0.0.1:8470\n" in res.stdout


def test_sigterm_stops_it_cleanly(web):
    web.proc.terminate()
    assert web.proc.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory, build_dir):
    binary_path(build_dir, "corral-web")
    dest = tmp_path_factory.mktemp("destdir")
    res = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr",
                          f"BUILD={os.path.relpath(build_dir, REPO)}"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return dest


def test_install_puts_corral_web_and_its_unit_in_place(installed):
    assert os.access(installed / "usr/bin/corral-web", os.X_OK)
    unit = (installed / "lib/systemd/system/corral-web.service").read_text()
    assert "ExecStart=/usr/bin/corral-web -c /etc/corral/corral.conf" in unit
    assert "LoadCredential=web.token:" in unit
    assert (installed / "usr/share/man/man8/corral-web.8").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_unit_verifies_and_its_exposure_is_at_most_1_5(installed, build_dir, tmp_path):
    text = (installed / "lib/systemd/system/corral-web.service").read_text()
    path = tmp_path / "corral-web.service"
    path.write_text(text.replace("/usr/bin/corral-web", os.path.join(build_dir, "corral-web")))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    res = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for corral-web.service: ([0-9.]+)", res.stdout)
    assert m, res.stdout + res.stderr
    print(f"systemd-analyze security exposure: {m.group(1)}")
    assert float(m.group(1)) <= 1.5
