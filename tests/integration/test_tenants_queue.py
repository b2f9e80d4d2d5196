"""Fair shares between tenants in the Function library (tenants.lua): round
robin within a priority level, weights, strict priority over tenants,
per-tenant limits that park a tenant without holding others back, and no
keys left behind by a tenant with nothing waiting or running."""
import json
import time

import pytest

from conftest import declare, enqueue, get_job, qkey, reserve, stats, wait_until

Q = "tq"


def tenant_of(job_id, r):
    return get_job(r, Q, job_id).get("tenant", "")


def take(r, n, worker="host1:1"):
    """Reserves n jobs one call at a time -> their ids."""
    out = []
    for _ in range(n):
        jobs = reserve(r, Q, 1, worker)
        assert jobs, f"queue ran dry after {len(out)} jobs"
        out.append(jobs[0][0])
    return out


def ack(r, job, worker="host1:1"):
    return r.fcall("corral_ack", 1, Q, worker, job[0], job[1], "{}")


def test_jobs_of_one_level_come_round_robin_between_tenants_fifo_within_each(r):
    declare(r, Q)
    ids = {}
    for t in ("a", "b", "c"):
        ids[t] = [enqueue(r, Q, {"n": i}, tenant=t) for i in range(4)]
    got = take(r, 12)
    order = [tenant_of(i, r) for i in got]
    assert order == ["a", "b", "c"] * 4
    for t in ("a", "b", "c"):
        assert [i for i in got if i in ids[t]] == ids[t]


def test_jobs_without_a_tenant_take_their_turn_as_the_default_tenant(r):
    declare(r, Q)
    plain = [enqueue(r, Q) for _ in range(3)]
    named = [enqueue(r, Q, tenant="big") for _ in range(3)]
    got = take(r, 6)
    assert got == [plain[0], named[0], plain[1], named[1], plain[2], named[2]]


def test_one_reserve_of_many_jobs_takes_them_round_robin(r):
    declare(r, Q)
    for t in ("a", "b"):
        for _ in range(5):
            enqueue(r, Q, tenant=t)
    jobs = reserve(r, Q, 6)
    assert [tenant_of(j[0], r) for j in jobs] == ["a", "b"] * 3


def test_a_higher_priority_job_of_any_tenant_is_served_before_every_lower_one(r):
    declare(r, Q)
    for _ in range(3):
        enqueue(r, Q, tenant="a", priority="normal")
    high = enqueue(r, Q, tenant="b", priority="high")
    low = enqueue(r, Q, tenant="c", priority="low")
    got = take(r, 5)
    assert got[0] == high
    assert got[-1] == low


def test_a_tenant_of_weight_w_gets_w_jobs_per_turn(r):
    declare(r, Q, tenant_weights={"gold": 3})
    for t in ("gold", "tin"):
        for _ in range(8):
            enqueue(r, Q, tenant=t)
    order = [tenant_of(i, r) for i in take(r, 8)]
    assert order == ["gold"] * 3 + ["tin"] + ["gold"] * 3 + ["tin"]


def test_corral_tenant_weight_changes_a_weight_at_run_time(r):
    declare(r, Q)
    assert r.fcall("corral_tenant_weight", 1, Q, "a", 2) == "OK"
    for t in ("a", "b"):
        for _ in range(6):
            enqueue(r, Q, tenant=t)
    order = [tenant_of(i, r) for i in take(r, 6)]
    assert order == ["a", "a", "b", "a", "a", "b"]


@pytest.mark.parametrize("text, tenant, priority", [
    ('{"tenant":"a"}', "a", "normal"), ('{"tenant": "b.c:d@e-f_1"}', "b.c:d@e-f_1", "normal"),
    ('{ "tenant" : "c" }', "c", "normal"), ('{"tenant":"d","priority":"high"}', "d", "high"),
    ('{"tenant":"d", "priority": "high"}', "d", "high"), ('{"tenant":"e\\u0066"}', "ef", "normal"),
    ('{"priority":"high","tenant":"g"}', "g", "high"),
    ('{"tenant":"%s"}' % ("h" * 64), "h" * 64, "normal")])
def test_options_naming_a_tenant_are_read_as_the_json_decoder_reads_them(r, text, tenant, priority):
    """Options that name only a tenant skip the JSON decoder (tenants.lua,
    tenant_option): every other text, however close, is decoded as before."""
    declare(r, Q)
    job_id = r.fcall("corral_enqueue", 1, Q, "{}", text)
    job = get_job(r, Q, job_id)
    assert (job["tenant"], job["priority"]) == (tenant, priority)


def test_a_tenant_only_enqueue_takes_the_current_defaults_and_lends_nothing_to_the_next(r):
    """The tenant-only options reuse one table per settings (enqueue.lua):
    a redeclare's new defaults reach the next job, and a job without the
    option that follows one with it has no tenant."""
    declare(r, Q, max_attempts=3)
    first = get_job(r, Q, r.fcall("corral_enqueue", 1, Q, "{}", '{"tenant":"a"}'))
    plain = get_job(r, Q, r.fcall("corral_enqueue", 1, Q, "{}"))
    declare(r, Q, max_attempts=7)
    second = get_job(r, Q, r.fcall("corral_enqueue", 1, Q, "{}", '{"tenant":"b"}'))
    assert (first["tenant"], first["max_attempts"]) == ("a", 3)
    assert "tenant" not in plain
    assert (second["tenant"], second["max_attempts"]) == ("b", 7)


@pytest.mark.parametrize("text, code", [
    ('{"tenant":"a b"}', "BADTENANT"), ('{"tenant":""}', "BADTENANT"),
    ('{"tenant":"%s"}' % ("x" * 65), "BADTENANT"), ('{"tenant":"a"}x', "BADOPTION"),
    ('{"tenant":"a"}}', "BADOPTION"), ('{"tenant":"a","x":1}', "BADOPTION")])
def test_options_that_only_look_like_a_tenant_are_refused_as_before(r, text, code):
    declare(r, Q)
    before = sorted(r.keys("*"))
    with pytest.raises(Exception) as e:
        r.fcall("corral_enqueue", 1, Q, "{}", text)
    assert str(e.value).startswith(code)
    assert sorted(r.keys("*")) == before


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "é", "a/b", 5, None])
def test_a_bad_tenant_is_refused_with_badtenant_and_writes_nothing(r, bad):
    declare(r, Q)
    before = sorted(r.keys("*"))
    with pytest.raises(Exception) as e:
        r.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"tenant": bad}))
    assert str(e.value).startswith("BADTENANT")
    assert sorted(r.keys("*")) == before


def test_a_tenant_at_max_inflight_steps_out_and_the_others_go_on(r):
    declare(r, Q, tenant_max_inflight=2)
    for t in ("hog", "small"):
        for _ in range(5):
            enqueue(r, Q, tenant=t)
    jobs = reserve(r, Q, 10)
    tenants = [tenant_of(j[0], r) for j in jobs]
    assert tenants.count("hog") == 2 and tenants.count("small") == 2
    assert reserve(r, Q, 10) == []
    # one outcome frees a slot: the tenant takes its turn again at once
    ack(r, [j for j in jobs if tenant_of(j[0], r) == "hog"][0])
    more = reserve(r, Q, 10)
    assert [tenant_of(j[0], r) for j in more] == ["hog"]


def test_a_tenant_over_its_rate_waits_for_its_window_while_others_go_on(r):
    declare(r, Q, tenant_rate=3, tenant_rate_ms=1000)
    for _ in range(6):
        enqueue(r, Q, tenant="fast")
    enqueue(r, Q, tenant="other")
    first = [tenant_of(j[0], r) for j in reserve(r, Q, 10)]
    assert first.count("fast") == 3 and first.count("other") == 1
    assert reserve(r, Q, 10) == []
    start = time.monotonic()
    got = []
    wait_until(lambda: got.extend(reserve(r, Q, 10)) or got, timeout=3, what="the next window")
    assert time.monotonic() - start > 0.3
    assert len(got) == 3


def test_depth_in_stats_counts_the_tenants_jobs(r):
    declare(r, Q)
    enqueue(r, Q, tenant="a")
    enqueue(r, Q, tenant="b", priority="high")
    enqueue(r, Q)
    s = stats(r, Q)
    assert s["depth"] == 3
    assert s["depth_by_priority"] == {"high": 1, "normal": 2, "low": 0}


def test_corral_tenants_lists_the_most_waiting_first(r):
    declare(r, Q, tenant_max_inflight=1)
    for t, n in (("a", 1), ("b", 3), ("c", 2)):
        for _ in range(n):
            enqueue(r, Q, tenant=t)
    reserve(r, Q, 1)  # a's job runs
    reserve(r, Q, 10)  # b and c one each, then all at their limit
    v = json.loads(r.fcall_ro("corral_tenants", 1, Q, 2))
    assert v["count"] == 3 and v["waiting"] == 3 and v["inflight"] == 3
    assert [(t["tenant"], t["waiting"], t["inflight"]) for t in v["tenants"]] == \
        [("b", 2, 1), ("c", 1, 1)]
    assert v["tenants"][0]["limited"] is True
    assert v["tenants"][0]["weight"] == 1
    every = json.loads(r.fcall_ro("corral_tenants", 1, Q, 0))
    assert len(every["tenants"]) == 3


def test_a_cancelled_job_leaves_its_tenant_list_and_turn(r):
    declare(r, Q)
    only = enqueue(r, Q, tenant="a")
    enqueue(r, Q, tenant="b")
    assert r.fcall("corral_cancel", 1, Q, only) == "cancelled"
    got = [tenant_of(j[0], r) for j in reserve(r, Q, 5)]
    assert got == ["b"]
    assert not r.keys(qkey(Q) + ":t:*") and not r.keys(qkey(Q) + ":tq:*")
    assert not r.hexists(qkey(Q) + ":tn", "a")


def test_an_idle_tenant_leaves_no_keys_and_no_fields(r):
    declare(r, Q, tenant_max_inflight=1, tenant_rate=100, tenant_rate_ms=1000,
            tenant_weights={"w": 2})
    plain = set(r.keys("*"))
    for _ in range(3):
        enqueue(r, Q, tenant="gone")
    while True:
        jobs = reserve(r, Q, 5)
        if not jobs:
            break
        for j in jobs:
            ack(r, j)
    leftover = {k for k in r.keys(qkey(Q) + ":t*")} - plain
    # the rate window is the one key left, and it expires with its window
    assert leftover <= {qkey(Q) + ":tr:gone"}
    if leftover:
        assert 0 < r.pttl(qkey(Q) + ":tr:gone") <= 1000
    for h in (":tn", ":ti", ":tcr"):
        assert not r.exists(qkey(Q) + h), h


def test_requeued_jobs_go_back_to_their_tenant(r):
    declare(r, Q, lease_ms=100)
    a = enqueue(r, Q, tenant="a")
    job = reserve(r, Q, 1)[0]
    assert job[0] == a
    r.fcall("corral_defer", 1, Q, "host1:1", job[0], job[1], 0, "", "")
    assert get_job(r, Q, a)["state"] == "queued"
    assert r.llen(qkey(Q) + ":t:1:a") == 1
    assert reserve(r, Q, 1)[0][0] == a


def test_weights_hold_within_ten_percent_over_1200_jobs(r):
    declare(r, Q, tenant_weights={"gold": 3, "silver": 2})
    pipe = r.pipeline(transaction=False)
    for t in ("gold", "silver", "tin"):
        pipe.fcall("corral_enqueue_many", 1, Q, json.dumps({"tenant": t}),
                   *[json.dumps({"t": t})] * 1000)
    pipe.execute()
    counts, taken, size = {"gold": 0, "silver": 0, "tin": 0}, 0, 1
    while taken < 1200:
        for j in reserve(r, Q, size):
            counts[json.loads(j[7])["t"]] += 1
            taken += 1
        size = size % 7 + 1  # batches of 1 to 7 jobs
    for t, share in (("gold", 3 / 6), ("silver", 2 / 6), ("tin", 1 / 6)):
        want = share * taken
        assert abs(counts[t] - want) <= 0.1 * want, (t, counts, taken)


def test_a_queue_without_tenants_keeps_no_tenant_keys(r):
    declare(r, Q)
    for _ in range(3):
        enqueue(r, Q)
    jobs = reserve(r, Q, 3)
    for j in jobs:
        ack(r, j)
    assert not r.keys(qkey(Q) + ":t*")


def test_a_queue_in_weighted_order_serves_tenants_round_robin_within_each_level(r):
    declare(r, Q, order="weighted", weights=[1, 1, 1])
    for t in ("a", "b"):
        for _ in range(3):
            enqueue(r, Q, tenant=t, priority="normal")
    order = [tenant_of(i, r) for i in take(r, 6)]
    assert order == ["a", "b"] * 3
    assert reserve(r, Q, 1) == []


def test_a_lost_lease_frees_the_tenants_slot(r):
    declare(r, Q, tenant_max_inflight=1, lease_ms=100)
    for _ in range(2):
        enqueue(r, Q, tenant="a")
    first = reserve(r, Q, 5)
    assert len(first) == 1
    assert r.fcall("corral_reclaim_worker", 1, Q, "host1:1") == 1
    # the job went back to the front of its tenant, and the slot is free
    again = reserve(r, Q, 5)
    assert [j[0] for j in again] == [first[0][0]]
    assert r.hget(qkey(Q) + ":ti", "a") == "1"


def test_a_failed_job_frees_the_tenants_slot(r):
    declare(r, Q, tenant_max_inflight=1)
    for _ in range(2):
        enqueue(r, Q, tenant="a")
    job = reserve(r, Q, 5)[0]
    r.fcall("corral_fail", 1, Q, "host1:1", job[0], job[1], "permanent", "no")
    assert len(reserve(r, Q, 5)) == 1


def test_a_tenant_with_nothing_waiting_is_never_shown_limited(r):
    declare(r, Q, tenant_max_inflight=1)
    enqueue(r, Q, tenant="a")
    for _ in range(2):
        enqueue(r, Q, tenant="b")
    reserve(r, Q, 5)
    v = json.loads(r.fcall_ro("corral_tenants", 1, Q, 0))
    limited = {t["tenant"]: t["limited"] for t in v["tenants"]}
    assert limited == {"a": False, "b": True}
    assert r.zrange(qkey(Q) + ":tpark", 0, -1) == ["1|b"]


@pytest.mark.parametrize("settings, message", [
    ({"tenant_weights": [1, 2]}, "tenant_weights must be an object of weights"),
    ({"tenant_weights": {"a b": 2}}, 'bad tenant name "a b" in tenant_weights'),
    ({"tenant_weights": {"gold": 0}}, "tenant weight must be an integer from 1 to 1000, got 0"),
    ({"tenant_max_inflight": -1}, "tenant_max_inflight must be an integer from 0 to 1000000"),
    ({"tenant_rate": 5, "tenant_rate_ms": 0}, "tenant_rate_ms must be an integer from 1"),
])
def test_bad_tenant_settings_are_refused_and_keep_the_old_ones(r, settings, message):
    declare(r, Q, tenant_max_inflight=3)
    before = r.hgetall(qkey(Q) + ":conf")
    with pytest.raises(Exception) as e:
        declare(r, Q, **settings)
    assert str(e.value).startswith("BADSETTING") and message in str(e.value)
    assert r.hgetall(qkey(Q) + ":conf") == before


def test_a_redeclare_keeps_run_time_weights_of_tenants_it_does_not_name(r):
    declare(r, Q, tenant_weights={"gold": 3})
    r.fcall("corral_tenant_weight", 1, Q, "silver", 2)
    r.fcall("corral_tenant_weight", 1, Q, "gold", 5)
    declare(r, Q, tenant_weights={"gold": 4})
    assert r.hget(qkey(Q) + ":conf", "tenant_weights") == "gold:4,silver:2"
    for t in ("silver", "tin"):
        for _ in range(3):
            enqueue(r, Q, tenant=t)
    order = [tenant_of(i, r) for i in take(r, 6)]
    assert order == ["silver", "silver", "tin", "silver", "tin", "tin"]


def test_removing_the_limits_brings_parked_tenants_back(r):
    declare(r, Q, tenant_max_inflight=1)
    for _ in range(3):
        enqueue(r, Q, tenant="a")
    assert len(reserve(r, Q, 5)) == 1
    assert r.exists(qkey(Q) + ":tpark")
    declare(r, Q)
    assert len(reserve(r, Q, 5)) == 2
    assert not r.exists(qkey(Q) + ":ti") and not r.exists(qkey(Q) + ":tpark")


def test_a_tenant_that_comes_back_after_its_last_job_gets_one_place_in_the_turn(r):
    declare(r, Q)
    enqueue(r, Q, tenant="a")
    for _ in range(4):
        enqueue(r, Q, tenant="b")
    assert tenant_of(take(r, 1)[0], r) == "a"  # a's last job: a leaves the turn
    for _ in range(4):
        enqueue(r, Q, tenant="a")
    order = [tenant_of(i, r) for i in take(r, 8)]
    assert order == ["b", "a"] * 4
    assert r.llen(qkey(Q) + ":tq:1") == 0


def test_a_cancelled_default_job_leaves_no_second_place_for_the_default_tenant(r):
    declare(r, Q)
    plain = enqueue(r, Q)
    for _ in range(3):
        enqueue(r, Q, tenant="a")
    r.fcall("corral_cancel", 1, Q, plain)
    for _ in range(3):
        enqueue(r, Q)
    order = [tenant_of(i, r) for i in take(r, 6)]
    assert order == ["a", "", "a", "", "a", ""]


def test_a_default_job_of_a_higher_level_runs_before_the_tenants_of_a_lower_one(r):
    declare(r, Q)
    for t in ("a", "b"):
        enqueue(r, Q, tenant=t, priority="normal")
    high = enqueue(r, Q, priority="high")
    low = enqueue(r, Q, priority="low")
    got = take(r, 4)
    assert got[0] == high and got[-1] == low
    weighted = "tw"
    declare(r, weighted, order="weighted", weights=[100, 1, 1])
    enqueue(r, weighted, tenant="a", priority="normal")
    high = enqueue(r, weighted, priority="high")
    assert r.fcall("corral_reserve", 1, weighted, "host1:1", 1)[0][0] == high

    five = "five"  # the default level is p2: the reserve skips p0 and p1 only when both are empty
    declare(r, five, priorities=["p0", "p1", "p2", "p3", "p4"])
    enqueue(r, five, tenant="a", priority="p3")
    enqueue(r, five, priority="p2")
    p1 = enqueue(r, five, tenant="b", priority="p1")
    got = [r.fcall("corral_reserve", 1, five, "host1:1", 1)[0][0] for _ in range(3)]
    assert got[0] == p1
    assert [int(r.hget(qkey(five) + ":job:" + i, "prio")) for i in got] == [1, 2, 3]


def commands(r):
    """Commands the server ran (those of the Function library's calls too)
    but EXPIRE, which the statistics buckets run as the timing of the runs
    has it (a field's first increment, and a processing time sum of 0)."""
    info = r.info("commandstats")
    return sum(v["calls"] for k, v in info.items()
               if k not in ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_expire"))


def test_the_full_cycle_of_a_tenants_job_runs_at_most_three_commands_more(r):
    """Enqueue, reserve and ack of jobs of 50 tenants (one each, as when
    the workers keep up) against the same jobs without the option: per job
    the tenant's job pays its place in the turn (RPUSH) and the level's
    count at enqueue and at reserve (HINCRBY), and the reserve's EXISTS of
    the levels above the default one and LPOPs of the turn and the
    tenant's list cost one command more than the two LPOPs without, the
    count's answer sparing the EXISTS of "anything left?"; the rest is
    paid once (the flag tenanted, the start of a turn, the count's HDEL).
    docs/benchmarks.md, "Tenants": the full cycle within 10 % of the one
    without (an LMPOP in place of the EXISTS and LPOP of the turn was one
    command fewer but cost Redis some 4,000 instructions more); before, 8
    more per job."""
    n = 50

    def cycle(q, tenants):
        declare(r, q)
        r.config_resetstat()
        for i in range(n):
            if tenants:
                enqueue(r, q, tenant=f"t{i}")
            else:
                enqueue(r, q)
        for _ in range(n):
            job = r.fcall("corral_reserve", 1, q, "host1:1", 1)[0]
            assert r.fcall("corral_ack", 1, q, "host1:1", job[0], job[1], "{}") == ["done"]
        return commands(r)

    without = cycle("plain", False)
    with_tenants = cycle("fair", True)
    assert with_tenants - without <= 3 * n + 10
    assert not r.keys(qkey("fair") + ":t*")


def test_a_tenant_alone_in_its_turn_gives_a_reserve_of_many_jobs_in_a_few_commands(r):
    """One reserve of 100 jobs of the one tenant waiting: it serves one,
    comes round again at once (alone in the turn) and gives the rest in
    one pop, so the reserve's commands do not grow with the jobs."""
    declare(r, Q)
    pipe = r.pipeline(transaction=False)
    for _ in range(200):
        pipe.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"tenant": "solo"}))
    pipe.execute()
    r.config_resetstat()
    assert len(reserve(r, Q, 100)) == 100
    info = r.info("commandstats")
    # the 100 jobs' own HMGET and HSET (and one HSET a call at most of the
    # queue's K:conf, its next due time), and a handful for the tenants
    assert 100 <= info["cmdstat_hset"]["calls"] <= 101
    others = sum(v["calls"] for k, v in info.items()
                 if k not in ("cmdstat_hmget", "cmdstat_hset", "cmdstat_info"))
    assert others <= 20, info


@pytest.mark.parametrize("settings", [{}, {"tenant_weights": {"a": 3}},
                                      {"tenant_max_inflight": 2, "tenant_weights": {"b": 2}}])
def test_random_enqueues_reserves_acks_and_cancels_keep_the_turns_exact(r, settings):
    """A seeded random mix of enqueues (three tenants and the default one,
    three levels), reserves of 1-4, acks and cancels (of one job, of a
    tenant): after each step every named tenant with jobs at a level is in
    its turn exactly once or parked, the default tenant is in a turn that
    exists exactly while it has jobs there, the level's count is the sum
    of the tenants' lists, the running counts are the running jobs; then
    every job is served and nothing is left."""
    import random
    rnd = random.Random(14)
    declare(r, Q, **settings)
    K, levels, tenants = qkey(Q), 3, ["a", "b", "c", None]
    running, made = [], set()

    def check():
        parked = set(r.zrange(K + ":tpark", 0, -1))
        for lv in range(levels):
            turn = r.lrange(f"{K}:tq:{lv}", 0, -1)
            assert len(turn) == len(set(turn)), (lv, turn)
            total = 0
            for t in tenants[:3]:
                n = r.llen(f"{K}:t:{lv}:{t}")
                total += n
                placed = (t in turn) + (f"{lv}|{t}" in parked)
                assert placed == (1 if n else 0), (lv, t, n, turn, parked)
            if turn:
                assert ("" in turn) == (r.llen(f"{K}:q:{lv}") > 0), (lv, turn)
            assert int(r.hget(K + ":tn", f"#{lv}") or 0) == total, lv
        if settings.get("tenant_max_inflight"):
            for t in tenants[:3]:
                mine = sum(1 for j in running if tenant_of(j[0], r) == t)
                assert int(r.hget(K + ":ti", t) or 0) == mine, t

    for _ in range(400):
        op = rnd.random()
        if op < 0.45:
            t = rnd.choice(tenants)
            opts = {"priority": rnd.randrange(levels)}
            if t:
                opts["tenant"] = t
            made.add(enqueue(r, Q, **opts))
        elif op < 0.75:
            running += reserve(r, Q, rnd.randint(1, 4))
        elif op < 0.9 and running:
            job = running.pop(rnd.randrange(len(running)))
            assert ack(r, job) == ["done"]
        elif op < 0.97:
            queued = [i for i in made if get_job(r, Q, i)["state"] == "queued"]
            if queued:
                assert r.fcall("corral_cancel", 1, Q, rnd.choice(queued)) == "cancelled"
        else:
            t = rnd.choice(tenants[:3])
            cursor = "0"
            while True:
                _, cursor = r.fcall("corral_cancel_tenant", 1, Q, t, cursor, 2)
                if cursor == "0":
                    break
            running = [j for j in running if tenant_of(j[0], r) != t]
        check()
    for job in running:
        ack(r, job)
    while True:
        jobs = reserve(r, Q, 4)
        if not jobs:
            break
        for job in jobs:
            assert ack(r, job) == ["done"]
    states = {get_job(r, Q, i)["state"] for i in made}
    assert states <= {"done", "cancelled"}
    assert not r.keys(K + ":t*")
