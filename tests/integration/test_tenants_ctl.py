"""corralctl and corrald --check with tenants (docs/protocol.md, "Tenants"):
status shows the tenants with the most waiting, status --tenants all of
them, metrics a series per top tenant and the rest as one, tenant sets a
weight, dead lists and retries one tenant's jobs; --check names a bad
tenant_weights line."""
import json
import subprocess

import pytest

from conftest import binary_path, qkey

Q = "demo"


@pytest.fixture
def conf(tmp_path, redis_server):
    path = tmp_path / "corral.conf"
    path.write_text(redis_server.redis_section() + f"""
[queue {Q}]
handler = echo
max_attempts = 1
tenant_max_inflight = 1
tenant_metrics_top = 3
""")
    return str(path)


@pytest.fixture
def ctl(build_dir, conf, r):
    exe = binary_path(build_dir, "corralctl")

    def run(*args):
        return subprocess.run([exe, "-c", conf, *args], capture_output=True, text=True,
                              timeout=20)

    return run


def fill(ctl, counts):
    """Enqueues counts[t] jobs for each tenant t through corralctl."""
    for t, n in counts.items():
        for _ in range(n):
            p = ctl("enqueue", Q, json.dumps({"t": t}), "--tenant", t)
            assert p.returncode == 0, p.stderr


def test_enqueue_refuses_a_bad_tenant_naming_it(ctl, r):
    p = ctl("enqueue", Q, "{}", "--tenant", "no spaces")
    assert p.returncode == 1
    assert 'bad tenant "no spaces"' in p.stderr
    assert not r.keys(qkey(Q) + ":job:*")


def test_status_shows_the_ten_tenants_with_the_most_waiting(ctl):
    fill(ctl, {f"t{i:02d}": 1 + i % 4 for i in range(12)})
    out = ctl("status").stdout
    assert "queue demo: 12 tenants, 30 waiting, 0 running" in out
    rows = [line.split()[0] for line in out.split("TENANT", 1)[1].splitlines()[1:] if line]
    assert len(rows) == 10
    assert rows[:3] == ["t03", "t07", "t11"]  # 4 waiting each, then by name
    every = ctl("status", "--tenants", Q).stdout
    assert len([line for line in every.splitlines() if line.startswith("t")]) == 12
    js = json.loads(ctl("status", "--json").stdout)
    tenants = js["queues"][0]["tenants"]
    assert tenants["count"] == 12 and tenants["waiting"] == 30
    assert tenants["tenants"][0] == {"tenant": "t03", "waiting": 4, "inflight": 0,
                                     "oldest_wait_ms": tenants["tenants"][0]["oldest_wait_ms"],
                                     "limited": False, "weight": 1}
    alljs = json.loads(ctl("status", "--tenants", Q, "--json").stdout)
    assert len(alljs["tenants"]) == 12


def test_metrics_has_a_series_per_top_tenant_and_sums_the_rest(ctl):
    fill(ctl, {"a": 4, "b": 3, "c": 2, "d": 1, "e": 1})
    out = ctl("metrics").stdout
    waiting = [line for line in out.splitlines() if line.startswith("corral_tenant_waiting{")]
    assert waiting == ['corral_tenant_waiting{queue="demo",tenant="a"} 4',
                       'corral_tenant_waiting{queue="demo",tenant="b"} 3',
                       'corral_tenant_waiting{queue="demo",tenant="c"} 2',
                       'corral_tenant_waiting{queue="demo",tenant="*"} 2']
    assert 'corral_queue_tenants{queue="demo"} 5' in out


def test_tenant_sets_a_weight_at_run_time(ctl, r):
    fill(ctl, {"gold": 1})  # declares the queue
    p = ctl("tenant", Q, "gold", "--weight", "3")
    assert p.returncode == 0, p.stderr
    assert r.hget(qkey(Q) + ":conf", "tenant_weights") == "gold:3"
    js = json.loads(ctl("status", "--tenants", Q, "--json").stdout)
    assert js["tenants"][0]["weight"] == 3
    bad = ctl("tenant", Q, "gold", "--weight", "0")
    assert bad.returncode == 2 and "1 to 1000" in bad.stderr


def test_dead_list_and_retry_take_a_tenant_filter(ctl, r):
    fill(ctl, {"a": 2, "b": 1})
    # every job fails permanently: dead
    while True:
        jobs = r.fcall("corral_reserve", 1, Q, "h:1", 10)
        if not jobs:
            if not r.exists(qkey(Q) + ":tpark") and not r.keys(qkey(Q) + ":t:*"):
                break
            r.fcall("corral_promote", 1, Q)
        for j in jobs:
            r.fcall("corral_fail", 1, Q, "h:1", j[0], j[1], "permanent", "no")
    listed = ctl("dead", Q, "list", "--tenant", "a").stdout.splitlines()
    assert len(listed) == 2
    assert len(ctl("dead", Q, "list").stdout.splitlines()) == 3
    p = ctl("dead", Q, "retry", "--tenant", "a")
    assert p.stdout.strip() == "2 jobs queued again"
    assert r.llen(qkey(Q) + ":dead") == 1
    assert r.llen(qkey(Q) + ":t:1:a") == 2


@pytest.mark.parametrize("line, message", [
    ("tenant_weights = gold:0", 'tenant gold: weight: must be from 1 to 1000 (got "0")'),
    ("tenant_weights = gold", 'item 1, "gold": expected TENANT:WEIGHT'),
    ("tenant_weights = a b:2", 'bad tenant name "a b"'),
    ("tenant_weights = a:2, a:3", "tenant a has a weight twice"),
    ("tenant_rate = 5", "tenant_rate:"),
])
def test_corrald_check_names_a_bad_tenant_setting(build_dir, tmp_path, line, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"[queue q]\nhandler = echo\n{line}\n")
    p = subprocess.run([binary_path(build_dir, "corrald"), "--check", "-c", str(conf)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert f"bad.conf:3: [queue q] {line.split(' =')[0]}:" in p.stderr
    assert message in p.stderr


def test_status_reads_no_tenants_for_a_queue_that_never_had_one(ctl, r):
    p = ctl("enqueue", Q, "{}")
    assert p.returncode == 0, p.stderr
    q = json.loads(ctl("status", "--json").stdout)["queues"][0]
    assert q["tenanted"] is False and "tenants" not in q
    assert "tenants," not in ctl("status").stdout
    fill(ctl, {"a": 1})
    q = json.loads(ctl("status", "--json").stdout)["queues"][0]
    assert q["tenanted"] is True and q["tenants"]["count"] == 1
