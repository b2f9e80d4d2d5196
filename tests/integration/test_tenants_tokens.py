"""Token windows per tenant in the Function library (tenant_tokens.lua,
`[queue Q] tenant_tokens = N/period`): the reserve counts each job's
estimate in its tenant's window, a tenant whose window has reached N is
parked while the others go on and comes back when the window turns,
settlement puts the real tokens in place of the estimate, an idle tenant's
window expires, and a queue without the setting runs no extra command."""
import json
import time

import pytest

from conftest import declare, enqueue, get_job, qkey, reserve, wait_until

Q = "ttq"
K = qkey(Q)
SVC = "llm"


def tenant_of(r, job_id):
    return get_job(r, Q, job_id).get("tenant", "")


def window(r, t):
    return int(r.get(f"{K}:tt:{t}") or 0)


def settle(r, job, inp, outp):
    return r.fcall("corral_settle", 1, Q, "host1:1", job[0], job[1], inp, outp, "m", 0, 0, -1,
                   -1)


def ack(r, job):
    return r.fcall("corral_ack", 1, Q, "host1:1", job[0], job[1], "{}")


def commands(r):
    """Commands the server ran (those of the Function library's calls too)."""
    info = r.info("commandstats")
    return sum(v["calls"] for k, v in info.items() if k not in ("cmdstat_info",
                                                                 "cmdstat_config|resetstat"))


def test_a_tenant_at_its_token_limit_steps_out_and_the_others_go_on(r):
    declare(r, Q, tenant_tokens=100, tenant_tokens_ms=60000)
    for _ in range(5):
        enqueue(r, Q, tokens=40, tenant="hog")
    for _ in range(3):
        enqueue(r, Q, tokens=10, tenant="small")
    got = [tenant_of(r, j[0]) for j in reserve(r, Q, 10)]
    # hog is granted jobs while its window is below 100: 0, 40, 80 -> 120
    assert got.count("hog") == 3 and got.count("small") == 3
    assert window(r, "hog") == 120 and window(r, "small") == 30
    assert reserve(r, Q, 10) == []
    v = json.loads(r.fcall_ro("corral_tenants", 1, Q, 0))
    assert {t["tenant"]: t["limited"] for t in v["tenants"]}["hog"] is True
    # a newcomer is not held back by hog's window
    enqueue(r, Q, tokens=10, tenant="late")
    assert [tenant_of(r, j[0]) for j in reserve(r, Q, 10)] == ["late"]


def test_a_tenant_at_its_token_limit_comes_back_when_the_window_turns(r):
    declare(r, Q, tenant_tokens=100, tenant_tokens_ms=400)
    for _ in range(3):
        enqueue(r, Q, tokens=100, tenant="a")
    assert len(reserve(r, Q, 10)) == 1
    assert reserve(r, Q, 10) == []
    start = time.monotonic()
    got = []
    wait_until(lambda: got.extend(reserve(r, Q, 10)) or got, timeout=3,
               what="the next token window")
    assert len(got) == 1  # the new window takes one job of 100 again
    assert time.monotonic() - start < 1.5
    assert window(r, "a") == 100


def test_the_window_counts_the_estimate_of_each_job(r):
    r.fcall("corral_declare_service", 1, SVC, json.dumps({"bytes_per_token": 2}))
    declare(r, Q, tenant_tokens=10 ** 6, tenant_tokens_ms=60000)
    declare(r, "other", tenant_tokens=10 ** 6, tenant_tokens_ms=60000, service=SVC)
    plain = json.dumps({"p": "x" * 391})  # 400 bytes
    capped = json.dumps({"max_tokens": 50, "p": "x" * 373})  # 400 bytes, cap 50
    assert len(plain) == 400 and len(capped) == 400
    enqueue(r, Q, plain, tenant="a")  # 400 / 4 (no service: the default 4)
    enqueue(r, Q, capped, tenant="a")  # 100 + 50
    enqueue(r, Q, plain, tenant="a", tokens=7)  # the option, as given
    enqueue(r, Q, plain)  # the default tenant is not limited nor counted
    assert len(reserve(r, Q, 10)) == 4
    assert window(r, "a") == 100 + 150 + 7
    assert not r.keys(f"{K}:tt:") and r.keys(f"{K}:tt:*") == [f"{K}:tt:a"]
    enqueue(r, "other", plain, tenant="a")  # the service's bytes_per_token: 400 / 2
    assert len(r.fcall("corral_reserve", 1, "other", "host1:1", 10)) == 1
    assert int(r.get(f"{qkey('other')}:tt:a")) == 200


def test_settlement_puts_the_real_tokens_in_the_window_and_brings_the_tenant_back(r):
    declare(r, Q, tenant_tokens=100, tenant_tokens_ms=60000)
    for _ in range(3):
        enqueue(r, Q, tokens=100, tenant="a")
    first = reserve(r, Q, 10)
    assert len(first) == 1 and window(r, "a") == 100
    assert reserve(r, Q, 10) == []
    assert settle(r, first[0], 20, 10) == ["settled"]
    assert window(r, "a") == 30
    assert settle(r, first[0], 20, 10) == ["SETTLED"]  # counted once
    assert window(r, "a") == 30
    second = reserve(r, Q, 10)  # back at once, not at the window's end
    assert len(second) == 1 and window(r, "a") == 130
    # a call without usage (it failed before the service counted it): its
    # estimate leaves the window
    assert settle(r, second[0], -1, -1) == ["settled"]
    assert window(r, "a") == 30


def test_a_job_held_back_by_the_service_budget_takes_its_estimate_back(r):
    r.fcall("corral_declare_service", 1, SVC, json.dumps({"tokens": 150,
                                                           "tokens_period_ms": 60000}))
    declare(r, Q, service=SVC, tenant_tokens=1000, tenant_tokens_ms=60000)
    for _ in range(3):
        enqueue(r, Q, tokens=100, tenant="a")
    for _ in range(3):
        jobs = [j for j in r.fcall("corral_reserve", 1, Q, "host1:1", 10, 0)
                if not isinstance(j, str)]
        assert len(jobs) <= 1
    assert window(r, "a") == 100
    assert r.llen(f"{K}:t:1:a") == 2


def test_an_idle_tenant_leaves_no_token_window_once_it_turns(r):
    declare(r, Q, tenant_tokens=1000, tenant_tokens_ms=300)
    enqueue(r, Q, tokens=10, tenant="gone")
    job = reserve(r, Q, 1)[0]
    assert settle(r, job, 5, 5) == ["settled"]
    ack(r, job)
    assert 0 < r.pttl(f"{K}:tt:gone") <= 300
    wait_until(lambda: not r.exists(f"{K}:tt:gone"), timeout=3, what="the window to expire")
    assert not [k for k in r.keys("*") if "gone" in k]
    for h in (":tn", ":ti", ":tcr", ":tpark"):
        assert not r.exists(K + h), h


def test_a_settlement_after_the_window_turned_leaves_the_new_window_alone(r):
    declare(r, Q, tenant_tokens=1000, tenant_tokens_ms=300)
    enqueue(r, Q, tokens=100, tenant="a")
    job = reserve(r, Q, 1)[0]
    wait_until(lambda: not r.exists(f"{K}:tt:a"), timeout=3, what="the window to turn")
    assert settle(r, job, 1, 1) == ["settled"]
    assert not r.exists(f"{K}:tt:a")


@pytest.mark.parametrize("settings, message", [
    ({"tenant_tokens": -1}, "tenant_tokens must be an integer from 0"),
    ({"tenant_tokens": 5, "tenant_tokens_ms": 0}, "tenant_tokens_ms must be an integer from 1"),
    ({"tenant_tokens": "many"}, "tenant_tokens must be an integer"),
])
def test_bad_tenant_token_settings_are_refused_and_keep_the_old_ones(r, settings, message):
    declare(r, Q, tenant_tokens=50, tenant_tokens_ms=1000)
    before = r.hgetall(f"{K}:conf")
    with pytest.raises(Exception) as e:
        declare(r, Q, **settings)
    assert str(e.value).startswith("BADSETTING") and message in str(e.value)
    assert r.hgetall(f"{K}:conf") == before


def test_removing_tenant_tokens_brings_parked_tenants_back(r):
    declare(r, Q, tenant_tokens=10, tenant_tokens_ms=60000)
    for _ in range(3):
        enqueue(r, Q, tokens=10, tenant="a")
    assert len(reserve(r, Q, 5)) == 1
    assert r.exists(f"{K}:tpark")
    declare(r, Q)
    assert len(reserve(r, Q, 5)) == 2


def test_a_queue_without_tenant_tokens_runs_no_extra_command_per_job(r):
    """The same jobs on two queues, one with tenant_tokens: the one without
    runs exactly the commands it ran before the setting existed, the one
    with it four more per job (GET, HMGET, HSET, INCRBY) and one PEXPIRE
    per window."""
    n = 20

    def cycle(q, **settings):
        declare(r, q, tenant_rate=1000, tenant_rate_ms=60000, **settings)
        for i in range(n):
            enqueue(r, q, tokens=5, tenant="ab"[i % 2])
        r.config_resetstat()
        for _ in range(n):
            job = r.fcall("corral_reserve", 1, q, "host1:1", 1)[0]
            r.fcall("corral_settle", 1, q, "host1:1", job[0], job[1], 5, 0, "m", 0, 0, -1, -1)
        return commands(r)

    without = cycle("plain")
    with_tokens = cycle("budgeted", tenant_tokens=10 ** 6, tenant_tokens_ms=60000)
    assert not r.keys(f"{qkey('plain')}:tt:*")
    assert with_tokens - without == 4 * n + 2
