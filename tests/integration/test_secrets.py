"""A service that echoes the credentials it was sent (the API key of
api_key_file, the values of credential headers): whatever status it
answers with, and in whatever form it re-encodes them, no credential may
reach anything corral stores, logs or shows -- the job's error and result,
the job's hash in Redis, the dead list, corralctl's wait, job, status and
breaker output, the heartbeat, and the logs of corrald and its workers."""
import json
import socket
import subprocess

import pytest

from conftest import binary_path, wait_until
from secretscan import TEST_SECRET_PREFIX, find_leaks, views
from test_supervisor import Corrald, reap
from worker_fixtures import HTTP_Q, await_end, make_worker, stub, stub_stats  # noqa: F401
from worker_fixtures import enqueue as wf_enqueue
from worker_fixtures import job as wf_job

Q = "prompts"
SVC = "ai"
# Characters a service re-encodes ("/", "+", "="), so the escaped forms differ.
KEY = TEST_SECRET_PREFIX + "k3y/A+b=Z9qL"
HEADER_SECRET = TEST_SECRET_PREFIX + "hdr/7+W=x2mP"
STATUSES = [401, 400, 403, 500, 302]
FORMS = ["raw", "json_slash", "url", "lower", "html"]


@pytest.fixture
def pool(build_dir, tmp_path, redis_server, r):
    """corrald with one worker of four slots serving an http queue whose
    service has an api_key_file and a credential header; stderr of corrald
    and its worker goes to corrald.log."""
    exe = binary_path(build_dir, "corrald")
    started = []
    key = tmp_path / "ai.key"
    key.write_text(KEY + "\n")
    conf = tmp_path / "c.conf"

    def start(url, service=""):
        conf.write_text(
            redis_server.redis_section() +
            "[pool]\nmin = 1\nmax = 2\nconcurrency = 4\ndrain_timeout = 5s\n"
            "[scale]\ntick = 250ms\n"
            f"[queue {Q}]\nhandler = http\nservice = {SVC}\ntimeout = 5s\nmax_attempts = 1\n"
            f"[service {SVC}]\nurl = {url}\napi_key_file = {key}\n"
            f"header = X-Api-Secret: {HEADER_SECRET}\nheader = X-Team: corral-tests\n"
            f"{service}\n")
        c = Corrald(exe, str(conf), str(tmp_path / "corrald.log"))
        started.append(c)
        wait_until(lambda: len(c.workers()) == 1, what="the worker")
        return c

    def ctl(*args):
        res = subprocess.run([binary_path(build_dir, "corralctl"), "-c", str(conf), *args],
                             capture_output=True, text=True, timeout=30)
        return res.stdout + res.stderr

    start.ctl = ctl
    yield start
    reap(started)


def enqueue(r, spec):
    return r.fcall("corral_enqueue", 1, Q, json.dumps({"stub": spec}))


def job(r, jid):
    return json.loads(r.fcall_ro("corral_job", 1, Q, jid))


def assert_no_leak(texts):
    """No test secret, and no 8-character start of one (a key cut short by
    a truncated text), in any of texts."""
    found = []
    starts = [KEY[:8].lower(), HEADER_SECRET[:8].lower()]
    for where, text in texts:
        found += find_leaks(text, where)
        found += [f"{where}: {s!r} in {text!r}" for s in starts
                  if any(s in v for v in views(text))]
    assert not found, "\n".join(found)


def everything(r, pool, c, ids):
    """Every place the issue names, as (where, text)."""
    ctl = pool.ctl
    out = [("corrald.log", c.logs()), ("status", ctl("status")),
           ("status --json", ctl("status", "--json")),
           ("breaker --json", ctl("breaker", SVC, "--json")), ("breaker", ctl("breaker")),
           ("dead list", ctl("dead", Q, "list"))]
    host = socket.gethostname()
    out.append(("heartbeat", json.dumps(r.hgetall(f"corral:host:{host}"))))
    out.append(("service hash", json.dumps(r.hgetall(f"corral:svc:{SVC}"))))
    for jid in ids:
        out.append((f"job {jid} hash", json.dumps(r.hgetall(f"corral:{{{Q}}}:job:{jid}"))))
        out.append((f"job {jid} --json", ctl("job", Q, jid, "--json")))
        out.append((f"wait {jid}", ctl("wait", Q, jid, "--timeout", "1s")))
    return out


def test_a_credential_echoed_in_an_error_answer_is_stored_and_logged_redacted(r, stub, pool):
    """401, 400, 403, 500 and a 302, each echoing the key and the secret
    header raw, JSON-escaped, percent-encoded, lower-cased and as HTML
    entities; and one where the key is cut by the error excerpt."""
    c = pool(stub.url)
    ids = {}
    for status in STATUSES:
        for form in FORMS:
            ids[(status, form)] = enqueue(r, {"status": status, "echo_secrets": form})
    # The excerpt of an error answer is its first 200 bytes: this puts the
    # cut 10 characters into the key.
    prefix = len('{"error": {"message": "') + len("Incorrect API key provided: Bearer ")
    ids[(401, "cut")] = enqueue(r, {"status": 401, "echo_secrets": "raw",
                                    "echo_pad": 200 - prefix - 10})
    for jid in ids.values():
        wait_until(lambda: job(r, jid)["state"] == "dead", timeout=20, what=f"job {jid} dead")
    for (status, form), jid in ids.items():
        err = job(r, jid)["error"]
        # The answer was echoed (the error quotes it) and the key was taken out.
        assert err.startswith(f"HTTP {status}: "), err
        assert "Incorrect API key provided" in err, err
        if form in ("raw", "json_slash", "url", "lower", "html"):
            assert "[REDACTED]" in err, err
    assert "job failed" in c.logs()  # the worker logged each error
    assert_no_leak(everything(r, pool, c, ids.values()))


def test_a_credential_echoed_in_a_429_reaches_no_status_heartbeat_or_breaker(r, stub, pool):
    """A 429 quoting the key: the throttle's reason is shown by status (LAST
    DECISION), the heartbeat and the breaker; none of them holds the key."""
    c = pool(stub.url)
    throttled = enqueue(r, {"status": 429, "echo_secrets": "raw", "retry_after": "60"})
    wait_until(lambda: job(r, throttled)["state"] == "scheduled", what="the job deferred")
    # Jobs waiting for the throttled service: corrald holds its pool and says why.
    for _ in range(8):
        r.fcall("corral_enqueue", 1, Q, "{}")
    host = socket.gethostname()
    wait_until(lambda: "throttled" in r.hget(f"corral:host:{host}", "last_decision") or "",
               timeout=15, what="LAST DECISION to name the throttle")
    b = json.loads(pool.ctl("breaker", SVC, "--json"))
    assert b["throttle_reason"].startswith("HTTP 429: ") and "[REDACTED]" in \
        b["throttle_reason"], b
    assert "[REDACTED]" in job(r, throttled)["error"]
    assert_no_leak(everything(r, pool, c, [throttled]))


def test_a_credential_echoed_in_a_quota_error_reaches_no_breaker_reason(r, stub, pool):
    """A billing 429 (insufficient_quota) quoting the key, percent-encoded:
    the breaker opens with the answer as its reason, without the key."""
    c = pool(stub.url)
    jid = enqueue(r, {"status": 429, "echo_secrets": "url", "echo_type": "insufficient_quota"})
    wait_until(lambda: job(r, jid)["state"] == "scheduled", what="the job deferred")
    b = json.loads(pool.ctl("breaker", SVC, "--json"))
    assert b["state"] == "open" and b["reason"].startswith("quota: HTTP 429: "), b
    assert "[REDACTED]" in b["reason"], b
    wait_until(lambda: "breaker open" in c.logs(), what="corrald to log the open breaker")
    assert_no_leak(everything(r, pool, c, [jid]))


def test_a_credential_echoed_in_a_result_is_stored_redacted(r, stub, pool):
    """A 200 whose completion quotes the key: the result keeps the answer
    with the key taken out."""
    c = pool(stub.url)
    jid = enqueue(r, {"echo_secrets": "raw"})
    wait_until(lambda: job(r, jid)["state"] == "done", what="the job done")
    res = json.loads(job(r, jid)["result"])
    assert "you sent" in res["choices"][0]["message"]["content"]
    assert "[REDACTED]" in res["choices"][0]["message"]["content"]
    assert_no_leak(everything(r, pool, c, [jid]))
    assert_no_leak([("result", pool.ctl("wait", Q, jid))])


def test_the_scan_finds_each_form_of_a_test_secret():
    """The check itself: it sees the key however it is written."""
    import html
    import urllib.parse
    for text in [KEY, KEY.lower(), urllib.parse.quote(KEY, safe=""), KEY.replace("/", "\\/"),
                 html.escape(KEY).replace("-", "&#45;"), json.dumps({"k": KEY})]:
        assert find_leaks(text, "t"), text
    assert not find_leaks("HTTP 401: Incorrect API key provided: Bearer [REDACTED]", "t")


def test_two_http_queues_with_calls_in_flight_each_take_out_their_own_key(r, stub, tmp_path,
                                                                          make_worker):
    """The credentials of a queue are gathered on its first call; a second
    queue's first call while the first queue's calls are under way must
    leave those calls theirs (the worker once crashed here)."""
    key2 = tmp_path / "second.key"
    key2.write_text(KEY + "\n")
    w = make_worker(HTTP_Q + "\nmax_attempts = 1\n"
                    "[queue second]\nhandler = http\nservice = other\nmax_attempts = 1\n"
                    f"[service other]\nurl = {stub.url}\napi_key_file = {key2}\n"
                    f"header = X-Api-Secret: {HEADER_SECRET}\n",
                    stub.url, extra=("--queue", "prompts", "--queue", "second"))
    slow = {"status": 401, "echo_secrets": "raw", "delay_ms": 600}
    first = [wf_enqueue(r, {"stub": slow}) for _ in range(2)]
    wait_until(lambda: stub_stats(stub)["inflight"] == 2, what="the first queue's calls")
    second = [r.fcall("corral_enqueue", 1, "second", json.dumps({"stub": slow}))
              for _ in range(2)]
    for jid in first:
        assert await_end(r, jid)["state"] == "dead"
    for jid in second:
        fin = f"corral:{{second}}:fin:{jid}"
        assert r.blmove(fin, fin, 15, "RIGHT", "RIGHT") == "dead"
    errors = [wf_job(r, j)["error"] for j in first]
    errors += [json.loads(r.fcall_ro("corral_job", 1, "second", j))["error"] for j in second]
    assert all("Incorrect API key provided: Bearer [REDACTED]" in e for e in errors), errors
    assert w.proc.poll() is None, w.logs()
    assert_no_leak([("worker log", w.logs())] + [("error", e) for e in errors])
