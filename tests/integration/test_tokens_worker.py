"""Usage and token budgets through real corral-worker processes against the
AI stand-in (docs/tokens.md): the answer's usage (whole and streamed) in
the job record and the ledger, bad usage flagged estimated, token 429s
deferred without spending an attempt, and the ledger equal to the stand-in's
own count over a run with retries and 429s."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO, get_job, qkey, wait_until
from worker_fixtures import Worker

sys.path.insert(0, os.path.join(REPO, "tests"))
import aistub  # noqa: E402

Q = "prompts"
K = qkey(Q)
SVC = "ai"


@pytest.fixture
def stub():
    srv = aistub.Server().start()
    yield srv
    srv.stop()


def control(srv, body, path="/_control"):
    req = urllib.request.Request(base(srv) + path, data=json.dumps(body).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def base(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}"


def stub_tokens(srv):
    with urllib.request.urlopen(base(srv) + "/_tokens", timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def workers(build_dir, tmp_path, redis_server):
    exe = os.path.join(build_dir, "corral-worker")
    if not os.path.exists(exe):
        pytest.skip("corral-worker not built")
    started = []
    key = tmp_path / "ai.key"
    key.write_text("sk-tokens-test\n")

    def start(srv, service="", queue="", n=1, concurrency=4):
        for i in range(n):
            conf = tmp_path / f"w{len(started)}.conf"
            conf.write_text(
                redis_server.redis_section() +
                f"[pool]\nconcurrency = {concurrency}\ndrain_timeout = 5s\n"
                f"[queue {Q}]\nhandler = http\nservice = {SVC}\ntimeout = 5s\n"
                f"backoff = 50ms..100ms\n{queue or 'max_attempts = 10'}\n"
                f"[service {SVC}]\nurl = {base(srv)}/v1/chat/completions\n"
                f"api_key_file = {key}\n{service}\n")
            w = Worker(exe, str(conf), str(tmp_path / f"w{len(started)}.log"))
            started.append(w)
        c = redis_server.client(decode_responses=True)
        wait_until(lambda: c.exists(f"{K}:conf") and c.exists(f"corral:svc:{SVC}"),
                   what="the workers to declare the queue and service")
        c.close()
        return started

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.terminate()
            try:
                w.proc.wait(timeout=10)
            except Exception:
                w.proc.kill()
                w.proc.wait()
        if not w.out.closed:
            w.out.close()
        assert "Sanitizer" not in w.logs() and "runtime error" not in w.logs(), w.logs()


def enqueue(r, payload, **opts):
    args = [json.dumps(payload)] + ([json.dumps(opts)] if opts else [])
    return r.fcall("corral_enqueue", 1, Q, *args)


def await_end(r, jid, timeout=20):
    fin = f"{K}:fin:{jid}"
    state = r.blmove(fin, fin, timeout, "RIGHT", "RIGHT")
    assert state is not None, f"job {jid} did not end: {get_job(r, Q, jid)}"
    return get_job(r, Q, jid)


def tok_totals(r):
    return {k: int(v) for k, v in r.hgetall(f"{K}:tok").items()}


def test_the_answers_usage_and_cost_land_in_the_job_record_and_the_ledger(r, stub, workers):
    workers(stub, service="price_input = 2.5\nprice_output = 10\n")
    p = {"model": "gpt-4o", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}],
         "stub": {"usage": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 1100,
                  "output_tokens": 250}}
    j = await_end(r, enqueue(r, p))
    assert j["state"] == "done"
    assert j["usage"] == {"input_tokens": 1100, "output_tokens": 250,
                          "model": "gpt-4o-2024-08-06", "estimated": False,
                          "cost": 0.00525, "cost_nano": 5250000}
    assert tok_totals(r) == {"in": 1100, "out": 250, "cost_nano": 5250000, "calls": 1}
    s = json.loads(r.fcall_ro("corral_stats", 1, Q))
    assert s["tokens_in"] == 1100 and s["tokens_out"] == 250 and s["tokens_per_min"] > 0
    assert s["breaker"]["usage"]["cost_nano"] == 5250000


def corralctl(build_dir, redis_server, tmp_path, *args):
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    out = subprocess.run([os.path.join(build_dir, "corralctl"), "-c", str(conf), *args],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_and_metrics_show_tokens_cost_and_the_budgets(r, stub, workers, build_dir,
                                                           redis_server, tmp_path):
    workers(stub, service="tokens = 90000/1m\nprice_input = 2.5\nprice_output = 10\n"
                          "budget = 20/d\n")
    p = {"model": "gpt-4o", "max_tokens": 250,
         "stub": {"usage": "openai", "input_tokens": 1100, "output_tokens": 250}}
    assert await_end(r, enqueue(r, p))["state"] == "done"
    m = corralctl(build_dir, redis_server, tmp_path, "metrics")
    assert 'corral_queue_tokens_total{queue="prompts",direction="input"} 1100\n' in m
    assert 'corral_queue_tokens_total{queue="prompts",direction="output"} 250\n' in m
    assert 'corral_queue_cost_total{queue="prompts"} 0.00525' in m
    assert 'corral_service_tokens_total{service="ai",direction="input"} 1100\n' in m
    assert 'corral_service_spent{service="ai"} 0.00525' in m
    assert 'corral_service_budget{service="ai"} 20\n' in m
    assert 'corral_service_tokens_limit{service="ai"} 90000\n' in m
    st = corralctl(build_dir, redis_server, tmp_path, "status")
    row = [ln for ln in st.splitlines() if ln.startswith("service ai")]
    assert row and "0.00525/20" in row[0] and "1350/90000" in row[0], st
    q = [ln for ln in st.splitlines() if ln.startswith("queue prompts")]
    # the rates over the same minutes for the service and its one queue
    # (cost/hour is over each one's own span, read a moment apart: equal
    # to a part in a thousand)
    assert q and q[0].split()[2] == row[0].split()[2], st
    assert abs(float(q[0].split()[3]) / float(row[0].split()[3]) - 1) < 1e-3, st
    assert int(q[0].split()[2]) >= 1350 * 60 // 120
    js = json.loads(corralctl(build_dir, redis_server, tmp_path, "status", "--json"))
    assert js["queues"][0]["usage_total"]["input_tokens"] == 1100


@pytest.mark.parametrize("shape", ["openai", "anthropic", "responses"])
def test_a_streamed_answers_usage_comes_from_its_final_events(r, stub, workers, shape):
    workers(stub)
    p = {"model": "m", "max_tokens": 5, "stream": True,
         "stub": {"sse": shape, "input_tokens": 42, "output_tokens": 5}}
    j = await_end(r, enqueue(r, p))
    assert j["state"] == "done", j
    assert j["usage"]["input_tokens"] == 42 and j["usage"]["output_tokens"] == 5
    assert j["usage"]["estimated"] is False


@pytest.mark.parametrize("usage_body", [None, {"prompt_tokens": -1, "completion_tokens": 3},
                                        {"prompt_tokens": "12", "completion_tokens": 3},
                                        {"prompt_tokens": 2e9, "completion_tokens": 3}])
def test_bad_usage_keeps_the_estimate_flagged_estimated(r, stub, workers, usage_body):
    workers(stub)
    p = {"model": "m", "max_tokens": 9,
         "stub": {"usage": "openai", "input_tokens": 5, "output_tokens": 3,
                  "usage_body": usage_body}}
    jid = enqueue(r, p)
    raw_len = len(json.dumps(p))
    j = await_end(r, jid)
    assert j["state"] == "done"
    u = j["usage"]
    assert u["estimated"] is True
    assert u["input_tokens"] == -(-raw_len // 4)
    assert u["output_tokens"] == (9 if usage_body is None else 3)
    assert tok_totals(r)["calls"] == 1 and tok_totals(r)["estimated"] == 1


def test_a_token_429_defers_by_the_token_reset_without_spending_an_attempt(r, stub, workers):
    control(stub, {"tpm": {"limit": 60, "window_ms": 1500}})
    workers(stub, queue="max_attempts = 1", concurrency=1)
    spec = {"usage": "openai", "input_tokens": 40, "output_tokens": 10}
    a = enqueue(r, {"max_tokens": 10, "stub": spec})
    ja = await_end(r, a)
    b = enqueue(r, {"max_tokens": 10, "stub": spec})
    jb = await_end(r, b)
    assert ja["state"] == jb["state"] == "done", jb
    assert jb["attempts"] == 1 and jb["deferrals"] >= 1
    calls = stub_tokens(stub)["calls"]
    assert [c["status"] for c in calls][:2] == [200, 429]
    t = stub_tokens(stub)["total"]
    assert t["rejected"] >= 1


def test_the_ledger_equals_the_stand_ins_count_over_retries_and_429s(r, stub, workers):
    control(stub, {"tpm": {"limit": 400, "window_ms": 1000}})
    workers(stub, n=2, concurrency=4)
    ids = []
    for i in range(30):
        spec = {"usage": "openai" if i % 3 else "anthropic", "output_tokens": 5 + i % 4}
        if i % 5 == 0:
            spec.update({"status": 503, "fail_times": 1, "key": f"k{i}"})
        ids.append(enqueue(r, {"model": "m", "max_tokens": 8, "i": i, "stub": spec}))
    for jid in ids:
        assert await_end(r, jid, timeout=60)["state"] == "done"
    t = stub_tokens(stub)["total"]
    assert t["calls"] == 30 and t["rejected"] > 0  # 429s happened
    led = tok_totals(r)
    assert (led["in"], led["out"], led["calls"]) == (t["input"], t["output"], 30)
    s = json.loads(r.fcall_ro("corral_stats", 1, Q))
    assert (s["tokens_in"], s["tokens_out"]) == (t["input"], t["output"])
    svc = json.loads(r.fcall_ro("corral_breaker", 1, SVC))["usage"]
    assert (svc["input_tokens"], svc["output_tokens"]) == (t["input"], t["output"])


def test_the_ledger_stays_exact_when_a_worker_is_killed_mid_call(r, stub, workers):
    control(stub, {"tpm": {"limit": 250, "window_ms": 1000}})
    ws = workers(stub, n=2, concurrency=4)
    ids = []
    for i in range(24):
        spec = {"usage": "openai", "output_tokens": 5 + i % 3, "key": f"k{i}",
                "delay_ms": 1500 if i < 8 else 100}
        if i % 4 == 1:
            spec.update({"status": 503, "fail_times": 1})
        ids.append(enqueue(r, {"model": "m", "max_tokens": 8, "i": i, "stub": spec}))
    # Both workers hold calls of 1.5 s: kill one well inside them, so its
    # calls are cut before any answer (the stand-in serves none of them).
    wait_until(lambda: stub.stub.inflight >= 8, what="both workers' slots in calls")
    time.sleep(0.3)
    victim = ws[0]
    victim.proc.kill()
    victim.proc.wait()
    held = {get_job(r, Q, j)["worker"] for j in ids
            if get_job(r, Q, j)["state"] == "active" and
            get_job(r, Q, j)["worker"].endswith(f":{victim.proc.pid}")}
    for w in held:  # what corrald does when a worker dies
        r.fcall("corral_reclaim_worker", 1, Q, w)
    for jid in ids:
        assert await_end(r, jid, timeout=60)["state"] == "done"
    rep = stub_tokens(stub)
    t = rep["total"]
    assert any(c["status"] == "gone" for c in rep["calls"]), "no call was cut"
    assert t["calls"] == 24 and t["rejected"] > 0  # and 429s happened
    led = tok_totals(r)
    assert (led["in"], led["out"], led["calls"]) == (t["input"], t["output"], 24)


def test_with_a_token_budget_the_fleet_stays_under_the_providers_limit(r, stub, workers):
    control(stub, {"tpm": {"limit": 600, "window_ms": 2000}})
    workers(stub, n=2, concurrency=4, service="tokens = 600/2s\n")
    ids = [enqueue(r, {"model": "m", "max_tokens": 40, "stub": {"usage": "openai"}})
           for _ in range(24)]
    for jid in ids:
        assert await_end(r, jid, timeout=60)["state"] == "done"
    t = stub_tokens(stub)["total"]
    assert t["rejected"] == 0, stub_tokens(stub)["windows"]
    assert t["calls"] == 24
