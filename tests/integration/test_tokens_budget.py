"""Token and spend budgets in the Function library (docs/tokens.md): the
enqueue option tokens, the grant in the reserve, jobs held back without
spending an attempt, jobs that can never fit ended dead, the settlement
with real usage (counted once), the provider's view, the spend budget."""
import json

import pytest

from conftest import declare, enqueue, get_job, qkey

Q = "prompts"
K = qkey(Q)
SVC = "openai"
SK = f"corral:svc:{SVC}"


def declare_service(r, **settings):
    base = {"min_calls": 1000}
    base.update(settings)
    return r.fcall("corral_declare_service", 1, SVC, json.dumps(base))


@pytest.fixture
def q(r):
    declare(r, Q, lease_ms=60000, service=SVC)
    return r


def reserve_gated(r, n, worker="host1:1"):
    """corral_reserve with max_inflight 0 -> (jobs, gate text or None)."""
    out = r.fcall("corral_reserve", 1, Q, worker, n, 0)
    gate = out[-1] if out and isinstance(out[-1], str) else None
    return [j for j in out if not isinstance(j, str)], gate


def settle(r, jid, run, inp, outp, model="m", estimated=0, cost=0, remaining=-1, reset=-1,
           worker="host1:1"):
    return r.fcall("corral_settle", 1, Q, worker, jid, run, inp, outp, model, estimated, cost,
                   remaining, reset)


def payload(max_tokens, pad=0):
    return json.dumps({"model": "m", "max_tokens": max_tokens, "p": "x" * pad})


def estimate(p, bytes_per_token=4):
    return -(-len(p) // bytes_per_token) + json.loads(p)["max_tokens"]


@pytest.mark.parametrize("bad", [0, -5, 1.5, "12", True, 1e10, None, [3]])
def test_a_tokens_option_that_is_not_a_positive_whole_number_is_refused_with_badtokens(q, bad):
    with pytest.raises(Exception) as e:
        q.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"tokens": bad}))
    assert str(e.value).startswith("BADTOKENS ")
    assert "tokens must be a whole number from 1 to 1000000000" in str(e.value)
    assert q.llen(f"{K}:q:1") == 0


def test_a_job_is_granted_only_while_its_estimate_fits_the_window(q):
    p = payload(300)
    est = estimate(p)
    declare_service(q, tokens=3 * est + est // 2, tokens_period_ms=60000)
    ids = [enqueue(q, Q, p) for _ in range(5)]
    jobs, gate = reserve_gated(q, 5)
    assert [j[0] for j in jobs] == ids[:3]
    assert gate is not None and "token budget" in gate
    assert f"{est} tokens do not fit the {est // 2} left" in gate
    wait_ms = int(gate.split()[1])
    assert 59000 <= wait_ms <= 60001
    # held back in order, no attempt spent
    assert q.lrange(f"{K}:q:1", 0, -1) == ids[3:]
    for jid in ids[3:]:
        j = get_job(q, Q, jid)
        assert j["state"] == "queued" and j["attempts"] == 0
    b = json.loads(q.fcall_ro("corral_breaker", 1, SVC))
    assert b["tokens_used"] == 3 * est and b["tokens_left"] == est // 2
    assert "token budget" in b["hold"] and b["tokens_wait_until_ms"] > 0


def test_the_tokens_option_is_the_whole_estimate(q):
    declare_service(q, tokens=1000)
    a = enqueue(q, Q, payload(10), tokens=600)
    b = enqueue(q, Q, payload(10), tokens=500)
    jobs, gate = reserve_gated(q, 2)
    assert [j[0] for j in jobs] == [a] and "500 tokens do not fit the 400 left" in gate
    assert get_job(q, Q, b)["attempts"] == 0


def test_a_job_whose_estimate_is_above_the_whole_budget_ends_dead_with_the_reason(q):
    declare_service(q, tokens=1000, tokens_period_ms=60000)
    big = enqueue(q, Q, payload(5000))
    ok = enqueue(q, Q, payload(10))
    jobs, gate = reserve_gated(q, 2)
    assert [j[0] for j in jobs] == [ok] and gate is None
    j = get_job(q, Q, big)
    assert j["state"] == "dead"
    assert j["error"].startswith("the estimate of ")
    assert "tokens is above the budget of 1000 tokens per 1m (service openai)" in j["error"]


def test_settling_gives_back_what_the_estimate_overcounted_and_counts_once(q):
    p = payload(400)
    est = estimate(p)
    declare_service(q, tokens=2 * est + 200, price_input_nano=2_500_000_000,
                    price_output_nano=10_000_000_000)
    a, b, c = (enqueue(q, Q, p) for _ in range(3))
    jobs, gate = reserve_gated(q, 3)
    assert [j[0] for j in jobs] == [a, b] and gate
    assert settle(q, a, jobs[0][1], 100, 50, cost=750000) == ["settled"]
    assert settle(q, a, jobs[0][1], 100, 50, cost=750000) == ["SETTLED"]
    jobs2, _ = reserve_gated(q, 1)
    assert [j[0] for j in jobs2] == [c]  # est - 150 given back made room
    usage = get_job(q, Q, a)["usage"]
    assert usage == {"input_tokens": 100, "output_tokens": 50, "model": "m",
                     "estimated": False, "cost": 0.00075, "cost_nano": 750000}
    tot = q.hgetall(f"{K}:tok")
    assert tot == {"in": "100", "out": "50", "cost_nano": "750000", "calls": "1"}
    v = json.loads(q.fcall_ro("corral_breaker", 1, SVC))
    assert v["usage"]["input_tokens"] == 100 and v["usage"]["cost_nano"] == 750000
    s = json.loads(q.fcall_ro("corral_stats", 1, Q))
    assert s["tokens_in"] == 100 and s["tokens_out"] == 50 and s["cost_nano"] == 750000


def test_a_call_without_usage_gives_its_whole_estimate_back_and_counts_nothing(q):
    p = payload(100)
    declare_service(q, tokens=estimate(p))
    a = enqueue(q, Q, p)
    b = enqueue(q, Q, p)
    jobs, _ = reserve_gated(q, 2)
    assert len(jobs) == 1
    assert settle(q, a, jobs[0][1], -1, -1) == ["settled"]
    assert [j[0] for j in reserve_gated(q, 1)[0]] == [b]
    assert q.exists(f"{K}:tok") == 0


def test_the_providers_remaining_tokens_cap_the_window_until_its_reset(q):
    declare_service(q, tokens=100000)
    ids = [enqueue(q, Q, payload(100)) for _ in range(3)]
    jobs, _ = reserve_gated(q, 1)
    settle(q, ids[0], jobs[0][1], 10, 10, remaining=0, reset=30000)
    jobs, gate = reserve_gated(q, 2)
    assert jobs == [] and "token budget" in gate
    assert 29000 <= int(gate.split()[1]) <= 30000


def test_a_spent_budget_holds_jobs_until_the_period_turns(q):
    declare_service(q, budget_nano=1_000_000, budget_period_ms=86400000,
                    price_input_nano=1_000_000_000, price_output_nano=1_000_000_000)
    a = enqueue(q, Q, payload(10))
    b = enqueue(q, Q, payload(10))
    jobs, _ = reserve_gated(q, 1)
    settle(q, a, jobs[0][1], 600, 400, cost=1_000_000)
    jobs, gate = reserve_gated(q, 1)
    assert jobs == [] and gate.split(" ", 2)[2] == "spend budget: 0.001 of 0.001 per 1d spent"
    assert get_job(q, Q, b)["state"] == "queued"
    v = json.loads(q.fcall_ro("corral_breaker", 1, SVC))
    assert v["spent_nano"] == 1_000_000 and v["budget_nano"] == 1_000_000


def test_a_job_whose_estimated_cost_is_above_the_spend_budget_ends_dead(q):
    declare_service(q, budget_nano=1000, price_input_nano=1_000_000_000)
    a = enqueue(q, Q, payload(10, pad=4000))
    assert reserve_gated(q, 1) == ([], None)
    err = get_job(q, Q, a)["error"]
    assert err.startswith("the estimated cost of ") and "above the spend budget of 0.000001 per 1d" in err


@pytest.mark.parametrize("group", [
    ["1", "1", "10"],                                      # not a group of nine
    ["1", "1", "-2", "5", "m", "0", "0", "-1", "-1"],      # a count below -1
    ["1", "1", "10", "2000000000", "m", "0", "0", "-1", "-1"],  # a count over 10^9
    ["1", "1", "10", "5", "m", "0", "-3", "-1", "-1"],     # a negative cost
    ["1", "1", "ten", "5", "m", "0", "0", "-1", "-1"],     # not a number
])
def test_a_malformed_settle_is_refused_and_writes_nothing(q, group):
    declare_service(q, tokens=1000)
    jid = enqueue(q, Q, payload(10))
    jobs, _ = reserve_gated(q, 1)
    before = q.hgetall(f"{K}:job:{jid}"), q.hgetall(SK)
    with pytest.raises(Exception) as e:
        q.fcall("corral_settle", 1, Q, "host1:1", *group)
    assert str(e.value).startswith("BADARG ")
    assert (q.hgetall(f"{K}:job:{jid}"), q.hgetall(SK)) == before
    assert q.exists(f"{K}:tok") == 0


def test_a_settle_for_a_run_that_never_was_is_stale_and_counts_nothing(q):
    declare_service(q, tokens=1000)
    jid = enqueue(q, Q, payload(10))
    assert settle(q, jid, "1", 10, 5) == ["STALE"]  # not reserved yet
    assert settle(q, "999", "1", 10, 5) == ["STALE"]
    assert q.exists(f"{K}:tok") == 0


def test_a_settlement_that_gives_tokens_back_wakes_the_workers_the_budget_held(q):
    p = payload(300)
    declare_service(q, tokens=estimate(p))
    a = enqueue(q, Q, p)
    enqueue(q, Q, p)
    jobs, gate = reserve_gated(q, 2)
    assert len(jobs) == 1 and "token budget" in gate
    wake = f"{SK}:wake:host1"
    assert q.llen(wake) == 0
    settle(q, a, jobs[0][1], 10, 10)
    assert q.llen(wake) >= 1  # the held worker is told at once, not at the gate's end


def test_once_jobs_fit_again_the_service_no_longer_shows_the_wait(q):
    p = payload(300)
    declare_service(q, tokens=estimate(p))
    a = enqueue(q, Q, p)
    enqueue(q, Q, p)
    jobs, gate = reserve_gated(q, 2)
    assert "token budget" in json.loads(q.fcall_ro("corral_breaker", 1, SVC))["hold"]
    settle(q, a, jobs[0][1], 0, 0)  # all of it given back
    assert len(reserve_gated(q, 1)[0]) == 1
    v = json.loads(q.fcall_ro("corral_breaker", 1, SVC))
    assert v["hold"] == "" and "tokens_wait_until_ms" not in v


def test_tenant_jobs_held_back_by_the_budget_go_back_to_their_tenant_in_order(q):
    """A tenant's jobs that the token budget holds back return to the front
    of that tenant's own list (not the level's default list), the tenant
    stays in the turn, its running count is given back, and once the window
    has room the turn goes on where it was."""
    declare(q, Q, lease_ms=60000, service=SVC, tenant_max_inflight=10)
    declare_service(q, tokens=1000, tokens_period_ms=60000)
    a = [enqueue(q, Q, payload(10), tokens=400, tenant="acme") for _ in range(2)]
    b = [enqueue(q, Q, payload(10), tokens=400, tenant="bolt") for _ in range(2)]
    jobs, gate = reserve_gated(q, 4)
    # Round robin: acme, bolt fit (800 of 1000); acme's second is held.
    assert [j[0] for j in jobs] == [a[0], b[0]] and "token budget" in gate
    assert q.lrange(f"{K}:q:1", 0, -1) == [], "held tenant jobs must not go to the default list"
    assert q.lrange(f"{K}:t:1:acme", 0, -1) == [a[1]]
    assert q.lrange(f"{K}:t:1:bolt", 0, -1) == [b[1]]
    assert set(q.lrange(f"{K}:tq:1", 0, -1)) == {"acme", "bolt"}
    assert q.hget(f"{K}:ti", "acme") == "1" and q.hget(f"{K}:ti", "bolt") == "1"
    for jid in (a[1], b[1]):
        assert get_job(q, Q, jid)["state"] == "queued" and get_job(q, Q, jid)["attempts"] == 0
    # The window empties (its grants settled with no usage): both run.
    for j in jobs:
        settle(q, j[0], j[1], -1, -1)
        assert q.fcall("corral_ack", 1, Q, "host1:1", j[0], j[1], "ok") == ["done"]
    jobs, gate = reserve_gated(q, 4)
    assert sorted(j[0] for j in jobs) == sorted([a[1], b[1]]) and gate is None
