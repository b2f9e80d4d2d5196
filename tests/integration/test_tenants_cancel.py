"""Cancel by tenant (corral_cancel_tenant, `corralctl cancel QUEUE --tenant
T`; docs/protocol.md, "Cancel"): every queued, scheduled and running job of
the tenant ends cancelled as a single cancel would end it, the other
tenants' jobs are untouched, the work comes in bounded calls, and the
tenant leaves no key, place in a turn or running slot behind."""
import json
import subprocess

import pytest

from conftest import binary_path, declare, enqueue, get_job, qkey, reserve, stats

Q = "cq"
K = qkey(Q)


def cancel_tenant(r, t, limit=None):
    """Calls corral_cancel_tenant until its cursor is "0" -> (cancelled,
    the replies)."""
    cursor, total, replies = "0", 0, []
    while True:
        args = [t, cursor] + ([limit] if limit is not None else [])
        n, cursor = r.fcall("corral_cancel_tenant", 1, Q, *args)
        replies.append((n, cursor))
        total += n
        if cursor == "0":
            return total, replies
        assert len(replies) < 1000, "the cursor never came back to 0"


def state(r, job_id):
    return get_job(r, Q, job_id)["state"]


def tenant_keys(r, t):
    """Every trace tenant t leaves in the queue's tenant keys."""
    left = [k for k in r.keys(K + ":t*") if k.endswith(":" + t)]
    for k in r.keys(K + ":tq:*"):
        if t in r.lrange(k, 0, -1):
            left.append(f"{k} holds {t}")
    left += [f"parked {m}" for m in r.zrange(K + ":tpark", 0, -1) if m.endswith("|" + t)]
    if r.hexists(K + ":ti", t):
        left.append(f"{K}:ti has {t}")
    left += [f"{K}:tcr {v}" for v in r.hvals(K + ":tcr") if v.endswith(" " + t)]
    return left


def test_cancel_tenant_ends_its_queued_scheduled_and_running_jobs_and_no_others(r):
    declare(r, Q, tenant_max_inflight=3, tenant_weights={"a": 3})
    first = [enqueue(r, Q, tenant="a") for _ in range(3)]
    running = first[:2]
    assert [j[0] for j in reserve(r, Q, 2)] == running
    assert r.hget(K + ":tcr", "1") == "2 a"  # a's weighted turn goes on
    queued = first[2:] + [enqueue(r, Q, tenant="a") for _ in range(2)]
    queued.append(enqueue(r, Q, tenant="a", priority="high"))
    sched = [enqueue(r, Q, tenant="a", delay_ms=600000) for _ in range(2)]
    others = [enqueue(r, Q, tenant="b") for _ in range(3)]
    others.append(enqueue(r, Q, {"x": 1}))  # the default tenant
    other_sched = enqueue(r, Q, tenant="b", delay_ms=600000)
    p = r.pubsub()
    p.subscribe("corral:ctl:host1:1")
    assert p.get_message(timeout=5)["type"] == "subscribe"

    total, _ = cancel_tenant(r, "a")

    assert total == 8
    for i in running + queued + sched:
        assert state(r, i) == "cancelled", i
    for i in others:
        assert state(r, i) == "queued"
    assert state(r, other_sched) == "scheduled"
    heard = set()
    for _ in range(2):
        m = p.get_message(timeout=5)
        while m is not None and m["type"] != "message":
            m = p.get_message(timeout=5)
        assert m is not None, "a running job's worker was not told"
        heard.add(m["data"].split()[2])
    p.close()
    assert heard == set(running)
    assert tenant_keys(r, "a") == []
    assert stats(r, Q)["depth"] == 4 and stats(r, Q)["inflight"] == 0
    # b and the default tenant go on, in turn
    got = {j[0] for j in reserve(r, Q, 10)}
    assert got == set(others)


def test_cancel_tenant_works_in_calls_of_at_most_limit_jobs(r):
    declare(r, Q)
    pipe = r.pipeline(transaction=False)
    for i in range(2500):
        pipe.fcall("corral_enqueue", 1, Q, "{}", json.dumps({"tenant": "big"}))
    for i in range(300):
        pipe.fcall("corral_enqueue", 1, Q, "{}",
                   json.dumps({"tenant": "big" if i % 2 else "small", "delay_ms": 600000}))
    pipe.execute()
    keep = enqueue(r, Q, tenant="small")

    total, replies = cancel_tenant(r, "big", 1000)

    assert total == 2650
    queued_calls = [n for n, cursor in replies if cursor.startswith("q")]
    assert queued_calls == [1000, 1000], replies
    assert all(n <= 1000 for n, _ in replies)
    assert tenant_keys(r, "big") == []
    assert r.zcard(K + ":sched") == 150
    assert stats(r, Q)["depth"] == 1
    assert reserve(r, Q, 1)[0][0] == keep


def test_cancel_tenant_of_an_unknown_tenant_cancels_nothing(r):
    declare(r, Q)
    kept = enqueue(r, Q, tenant="a")
    assert cancel_tenant(r, "nobody") == (0, [(0, "0")])
    assert state(r, kept) == "queued"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "é"])
def test_cancel_tenant_refuses_a_bad_tenant_name_with_badtenant(r, bad):
    declare(r, Q)
    kept = enqueue(r, Q, tenant="a")
    with pytest.raises(Exception) as e:
        r.fcall("corral_cancel_tenant", 1, Q, bad)
    assert str(e.value).startswith("BADTENANT")
    assert state(r, kept) == "queued"


def test_cancel_tenant_refuses_a_bad_cursor(r):
    declare(r, Q)
    with pytest.raises(Exception) as e:
        r.fcall("corral_cancel_tenant", 1, Q, "a", "x1")
    assert str(e.value).startswith("BADARG") and "cursor" in str(e.value)


@pytest.fixture
def ctl(build_dir, tmp_path, redis_server, r):
    exe = binary_path(build_dir, "corralctl")
    conf = tmp_path / "corral.conf"
    conf.write_text(redis_server.redis_section() + f"\n[queue {Q}]\nhandler = echo\n")

    def run(*args):
        return subprocess.run([exe, "-c", str(conf), *args], capture_output=True, text=True,
                              timeout=20)

    return run


def test_corralctl_cancel_tenant_cancels_every_job_of_the_tenant(ctl, r):
    for t in ("a", "a", "a", "b"):
        p = ctl("enqueue", Q, "{}", "--tenant", t)
        assert p.returncode == 0, p.stderr
    p = ctl("cancel", Q, "--tenant", "a")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "3 jobs cancelled"
    assert stats(r, Q)["depth"] == 1
    assert ctl("cancel", Q, "--tenant", "a").stdout.strip() == "0 jobs cancelled"


def test_corralctl_cancel_refuses_a_bad_tenant_name(ctl, r):
    p = ctl("enqueue", Q, "{}", "--tenant", "a")
    assert p.returncode == 0, p.stderr
    p = ctl("cancel", Q, "--tenant", "a b")
    assert p.returncode == 2
    assert 'bad tenant name "a b"' in p.stderr
    assert stats(r, Q)["depth"] == 1


def test_corralctl_cancel_tenant_goes_on_over_calls_until_none_is_left(ctl, r):
    """1,500 jobs: more than one call of 1,000 takes; corralctl follows the
    cursor and prints the whole count."""
    assert ctl("enqueue", Q, "{}", "--tenant", "b").returncode == 0  # declares the queue
    pipe = r.pipeline(transaction=False)
    for _ in range(3):
        pipe.fcall("corral_enqueue_many", 1, Q, json.dumps({"tenant": "a"}), *["{}"] * 500)
    pipe.execute()
    p = ctl("cancel", Q, "--tenant", "a")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "1500 jobs cancelled"
    assert stats(r, Q)["depth"] == 1
    assert tenant_keys(r, "a") == []
