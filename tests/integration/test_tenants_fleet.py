"""Tenants across a fleet (docs/protocol.md, "Tenants"): two corrald
instances sharing one Redis, their workers calling the AI stand-in, which
counts what reaches it per tenant (the payload's "tenant" field). A
tenant's limits hold fleet-wide, and a tenant at its limit does not hold
the others back."""
import json

import pytest

from conftest import get_job, qkey, wait_until
from test_supervisor import Corrald, reap
from worker_fixtures import stub  # noqa: F401 (a fixture)
from conftest import binary_path

Q = "prompts"
SVC = "ai"


@pytest.fixture
def fleet(build_dir, tmp_path, redis_server):
    exe = binary_path(build_dir, "corrald")
    started = []
    key = tmp_path / "ai.key"
    key.write_text("sk-tenant-test\n")

    def start(url, queue="", hosts=2):
        for h in range(hosts):
            conf = tmp_path / f"host{h}.conf"
            conf.write_text(
                redis_server.redis_section() +
                "[pool]\nmin = 2\nmax = 2\nconcurrency = 2\ndrain_timeout = 5s\n"
                "[scale]\ntick = 250ms\n"
                f"[queue {Q}]\nhandler = http\nservice = {SVC}\ntimeout = 5s\n{queue}\n"
                f"[service {SVC}]\nurl = {url}\napi_key_file = {key}\n")
            started.append(Corrald(exe, str(conf), str(tmp_path / f"host{h}.log")))
        for c in started:
            wait_until(lambda: len(c.workers()) == 2, what="each host's workers")
        return started

    yield start
    reap(started)


def put(r, tenant, n, delay_ms=0):
    """n jobs of tenant (its name also in the payload, for the stand-in)."""
    payload = json.dumps({"tenant": tenant, "stub": {"delay_ms": delay_ms}})
    opts = json.dumps({"tenant": tenant})
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.fcall("corral_enqueue", 1, Q, payload, opts)
    return pipe.execute()


def all_done(r, ids):
    return all(get_job(r, Q, i)["state"] == "done" for i in ids)


def stub_tenants(srv):
    with srv.stub.lock:
        return json.loads(json.dumps(srv.stub.tenants)), list(srv.stub.tenant_starts)


def test_tenant_max_inflight_is_never_exceeded_fleet_wide_with_two_corralds(r, stub, fleet):
    # 2 hosts x 2 workers x 2 slots: 8 calls could run at once.
    fleet(stub.url, queue="tenant_max_inflight = 2")
    ids = put(r, "a", 30, delay_ms=100) + put(r, "b", 30, delay_ms=100)
    wait_until(lambda: all_done(r, ids), timeout=60, what="every job")
    tenants, _ = stub_tenants(stub)
    assert tenants["a"]["calls"] == 30 and tenants["b"]["calls"] == 30
    assert tenants["a"]["peak"] == 2 and tenants["b"]["peak"] == 2
    assert stub.stub.max_inflight == 4


def test_a_tenant_at_its_limit_does_not_hold_the_others_back(r, stub, fleet):
    fleet(stub.url, queue="tenant_max_inflight = 1")
    hog = put(r, "hog", 40, delay_ms=200)
    wait_until(lambda: stub_tenants(stub)[0].get("hog", {}).get("calls", 0) >= 1,
               what="the hog's first call")
    small = put(r, "small", 10)
    wait_until(lambda: all_done(r, small), timeout=30, what="the small tenant's jobs")
    hog_done = sum(1 for i in hog if get_job(r, Q, i)["state"] == "done")
    # One hog call at a time, 200 ms each: the small tenant did not wait for it.
    assert hog_done < 15, hog_done
    tenants, _ = stub_tenants(stub)
    assert tenants["hog"]["peak"] == 1
    wait_until(lambda: all_done(r, hog), timeout=60, what="the hog's jobs")


def test_tenant_rate_holds_per_tenant_and_tenants_go_on_side_by_side(r, stub, fleet):
    fleet(stub.url, queue="tenant_rate = 5/s")
    ids = put(r, "a", 15) + put(r, "b", 15)
    wait_until(lambda: all_done(r, ids), timeout=30, what="every job")
    _, starts = stub_tenants(stub)
    for t in ("a", "b"):
        times = sorted(at for who, at in starts if who == t)
        assert len(times) == 15
        worst = max(sum(1 for x in times if s <= x < s + 0.95) for s in times)
        assert worst <= 5, (t, worst)
    every = sorted(at for _, at in starts)
    # 30 calls at 5/s each for two tenants side by side: about 3 s, not 6
    assert every[-1] - every[0] < 4.5


def test_an_idle_tenant_leaves_no_keys_behind_in_a_fleet(r, stub, fleet):
    fleet(stub.url, queue="tenant_max_inflight = 2\ntenant_weights = a:2")
    ids = put(r, "a", 10) + put(r, "b", 10)
    wait_until(lambda: all_done(r, ids), timeout=30, what="every job")
    K = qkey(Q)
    # K:tok is the queue's usage totals (docs/tokens.md), not a tenant's key
    assert sorted(k for k in r.keys(K + ":t*") if k != K + ":tok") == []


def test_tenant_tokens_from_the_config_park_a_tenant_at_its_window_and_others_go_on(
        r, stub, fleet):
    # Every call spends the 100 tokens it was enqueued with (the option
    # tokens and the stand-in's usage agree): a window of 200 takes two.
    fleet(stub.url, queue="tenant_tokens = 200/1h", hosts=1)
    window = r.time()[0] // 3600

    def put_tokens(tenant, n):
        payload = json.dumps({"tenant": tenant, "stub": {"usage": "openai",
                                                         "input_tokens": 100,
                                                         "output_tokens": 0}})
        opts = json.dumps({"tenant": tenant, "tokens": 100})
        return [r.fcall("corral_enqueue", 1, Q, payload, opts) for _ in range(n)]

    hog = put_tokens("hog", 5)
    small = put_tokens("small", 2)
    wait_until(lambda: all_done(r, small), timeout=30, what="the small tenant's jobs")
    K = qkey(Q)
    wait_until(lambda: sum(1 for i in hog if get_job(r, Q, i)["state"] == "done") >= 2,
               timeout=10, what="the hog's first two calls")
    if r.time()[0] // 3600 == window:  # the window did not turn meanwhile
        states = sorted(get_job(r, Q, i)["state"] for i in hog)
        assert states == ["done"] * 2 + ["queued"] * 3
        assert r.zrange(K + ":tpark", 0, -1) == ["1|hog"]
        assert r.get(K + ":tt:hog") == "200" and r.get(K + ":tt:small") == "200"
    assert r.hget(K + ":conf", "tenant_tokens_ms") == "3600000"
