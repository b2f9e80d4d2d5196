"""The service gate's functions (queue/lua/gate.lua; docs/protocol.md, "The
service gate") against a real redis-server: permits granted and reported
by the breaker, rate and max_inflight rules of services.lua, permits that
expire, and a queue declared with service_gate whose calls leave the
service's keys alone. On one Redis every key is on the one node, so the
functions run here as they do on a Cluster's service node."""
import json

import pytest
import redis

from conftest import declare, enqueue, reserve, server_ms, wait_until

SK = "corral:{svc:ai}"


def declare_service(r, **settings):
    r.fcall("corral_declare_service", 1, SK, json.dumps(settings))


def acquire(r, n, worker="h1:1", max_inflight=0, ttl_ms=60000):
    got, first, probe, wait_ms, why = r.fcall("corral_gate_acquire", 1, SK, worker, n,
                                              max_inflight, ttl_ms)
    return {"n": got, "ids": list(range(first, first + got)), "probe": probe,
            "wait_ms": wait_ms, "why": why}


def report(r, grant, kind, worker="h1:1", ms=10, why="", usage=(-1, 0, 0)):
    args = []
    for pid in grant["ids"]:
        args += [pid, grant["probe"], kind, ms, why, *usage]
    return r.fcall("corral_gate_report", 1, SK, worker, *args)


def breaker(r):
    return json.loads(r.fcall_ro("corral_breaker", 1, SK))


def test_the_tagged_service_key_keeps_its_keys_in_its_own_slot(r):
    declare_service(r, rate=5, rate_period_ms=60000)
    acquire(r, 2)
    keys = set(r.keys("corral*"))
    assert SK in keys and SK + ":rl" in keys and SK + ":pm" in keys
    # every key of the service hashes to the slot of "svc:ai" (the tag)
    assert all(k.startswith("corral:{svc:ai}") or k == "corral:services" for k in keys), keys
    assert r.sismember("corral:services", "ai")


def test_failures_reported_to_the_gate_trip_the_breaker_and_it_grants_nothing(r):
    declare_service(r, min_calls=4, failure_rate=50, open_for_ms=60000)
    g = acquire(r, 4)
    assert g["n"] == 4 and g["wait_ms"] == 0
    assert report(r, g, "fail", why="HTTP 503") == 4
    b = breaker(r)
    assert b["state"] == "open" and "HTTP 503" in b["reason"]
    g2 = acquire(r, 3)
    assert g2["n"] == 0 and g2["wait_ms"] > 50000 and g2["why"].startswith("breaker open")


def test_a_half_open_breaker_grants_only_its_probes_and_closes_on_their_success(r):
    declare_service(r, min_calls=2, failure_rate=50, open_for_ms=100, half_open_calls=2)
    report(r, acquire(r, 2), "fail")
    assert breaker(r)["state"] == "open"
    wait_until(lambda: server_ms(r) > breaker(r)["open_until_ms"], what="open time over")
    g = acquire(r, 5)
    assert g["n"] == 2 and g["probe"] == 1 and "half-open" in g["why"]
    assert acquire(r, 1)["n"] == 0
    report(r, g, "ok")
    assert breaker(r)["state"] == "closed"
    assert acquire(r, 5)["n"] == 5


def test_the_rate_counts_every_permit_of_every_worker(r):
    declare_service(r, rate=5, rate_period_ms=60000)
    a = acquire(r, 3, worker="h1:1")
    b = acquire(r, 3, worker="h2:1")
    assert (a["n"], b["n"]) == (3, 2)
    assert acquire(r, 1, worker="h3:1")["why"].startswith("rate 5 per 60000 ms")
    report(r, a, "unused", worker="h1:1")  # no call made: the rate gets them back
    assert acquire(r, 5, worker="h3:1")["n"] == 3
    report(r, b, "ok", worker="h2:1")  # calls made: they keep counting
    assert acquire(r, 1, worker="h3:1")["n"] == 0


def test_max_inflight_counts_a_hosts_permits_until_they_are_reported(r):
    declare_service(r)
    a = acquire(r, 3, worker="h1:1", max_inflight=4)
    b = acquire(r, 3, worker="h1:2", max_inflight=4)
    assert (a["n"], b["n"]) == (3, 1)
    assert acquire(r, 2, worker="h2:1", max_inflight=4)["n"] == 2  # another host
    report(r, a, "unused")  # given back
    assert acquire(r, 5, worker="h1:2", max_inflight=4)["n"] == 3


def test_permits_of_a_worker_that_never_reports_expire_and_free_their_slots(r):
    declare_service(r, min_calls=1, failure_rate=50, open_for_ms=100, half_open_calls=1)
    g = acquire(r, 2, worker="h1:1", max_inflight=2, ttl_ms=200)
    assert g["n"] == 2
    assert acquire(r, 1, worker="h1:2", max_inflight=2)["n"] == 0
    wait_until(lambda: acquire(r, 1, worker="h1:2", max_inflight=2, ttl_ms=200)["n"] == 1,
               what="the expired permits' slots back")
    assert r.zcard(SK + ":pm") == 1
    # a report of an expired permit still counts its outcome, releases nothing twice
    assert report(r, g, "ok", worker="h1:1") == 0
    assert r.hget(SK, "inflight:h1") == "1"


def test_a_throttle_reported_to_the_gate_holds_every_worker(r):
    declare_service(r)
    g = acquire(r, 1)
    report(r, g, "throttle", ms=30000, why="429 Too Many Requests")
    got = acquire(r, 1, worker="h9:1")
    assert got["n"] == 0 and got["why"].startswith("throttled: 429")


def test_usage_reported_to_the_gate_fills_the_token_budget(r):
    declare_service(r, tokens=1000, tokens_period_ms=60000)
    g = acquire(r, 1)
    report(r, g, "ok", usage=(700, 400, 0))
    got = acquire(r, 1)
    assert got["n"] == 0 and "budget" in got["why"]
    assert breaker(r)["tokens_used"] == 1100


def test_a_queue_declared_with_service_gate_leaves_its_service_alone(r):
    declare_service(r, min_calls=1, failure_rate=1, rate=1)
    declare(r, "q", service="ai", service_gate=True)
    for _ in range(3):
        enqueue(r, "q")
    before = r.hgetall(SK)
    jobs = r.fcall("corral_reserve", 1, "q", "h1:1", 3, 0)
    assert len(jobs) == 3  # no rate of 1, no gate element: the worker's permits decide
    assert jobs[0][6] == "ai"
    r.fcall("corral_fail", 1, "q", "h1:1", *[x for j in jobs for x in (j[0], j[1], "retry", "e")])
    assert r.hgetall(SK) == before and not r.exists(SK + ":rl")
    assert json.loads(r.fcall_ro("corral_stats", 1, "q"))["service"] == "ai"


def test_a_gated_queue_with_a_fallback_list_leases_to_the_service_the_worker_names(r):
    declare(r, "q", service=["a", "b"], service_gate=True)
    assert r.hget("corral:{q}:conf", "service") == "a,b"
    for _ in range(3):
        enqueue(r, "q")
    jobs = r.fcall("corral_reserve", 1, "q", "h1:1", 2, 0, "b", "model-b")
    assert [j[6] for j in jobs] == ["b", "b"]
    j = json.loads(r.fcall_ro("corral_job", 1, "q", jobs[0][0]))
    assert j["served_by"] == "b" and j["served_model"] == "model-b"
    # No service named (a worker of a queue with one service): as before.
    (one,) = r.fcall("corral_reserve", 1, "q", "h1:1", 1, 0)
    assert one[6] == "a" and "served_by" not in json.loads(r.fcall_ro("corral_job", 1, "q", one[0]))
    # The queue's stats count what each service was given (fallback.lua).
    st = json.loads(r.fcall_ro("corral_stats", 1, "q"))
    assert st["service"] == "a" and st["services"] == ["a", "b"] and st["served"] == {"b": 2}
    assert not r.exists("corral:svc:a") and not r.exists("corral:svc:b")


def test_a_reserve_naming_a_service_outside_the_list_is_refused(r):
    declare(r, "q", service=["a", "b"], service_gate=True)
    jid = enqueue(r, "q")
    with pytest.raises(redis.ResponseError, match='BADARG reserve: service "c" is not in the '
                                                  'service list of queue "q"'):
        r.fcall("corral_reserve", 1, "q", "h1:1", 1, 0, "c", "")
    assert json.loads(r.fcall_ro("corral_job", 1, "q", jid))["state"] == "queued"


def test_a_gate_report_of_an_unknown_kind_is_refused(r):
    declare_service(r)
    g = acquire(r, 1)
    with pytest.raises(redis.ResponseError, match="kind must be ok, fail, none, unused, throttle or quota"):
        report(r, g, "maybe")
    assert r.zcard(SK + ":pm") == 1  # nothing released


def test_a_report_drops_expired_permits_too(r):
    declare_service(r)
    acquire(r, 3, worker="h1:1", ttl_ms=100)
    g = acquire(r, 1, worker="h2:1")
    wait_until(lambda: server_ms(r) > int(r.zrange(SK + ":pm", 0, 0, withscores=True)[0][1]),
               what="the first permits to expire")
    report(r, g, "ok", worker="h2:1")
    assert r.zcard(SK + ":pm") == 0 and breaker(r)["inflight"] == 0
