"""corralctl status lays its tables out the same way on every refresh:
rows in name order (hosts, queues, services), columns as wide as their
widest cell, each queue's priorities in its level order; and it shows the
outcomes a host holds that Redis has not taken (docs/status-watch.md)."""
import json
import re
import subprocess
import time

import pytest

from conftest import binary_path, declare, enqueue, wait_until

LEVELS = ["urgent", "high", "normal", "low", "bulk"]
LONG = "q" * 30 + "-with-a-name-as-long-as-a-queue-may-be"[:34]  # 64 characters


@pytest.fixture
def ctl(build_dir, tmp_path, redis_server, r):
    conf = tmp_path / "c.conf"
    conf.write_text(redis_server.redis_section())
    exe = binary_path(build_dir, "corralctl")

    def run(*args):
        res = subprocess.run([exe, "-c", str(conf), *args], capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, res.stderr
        return res.stdout
    run.argv = [exe, "-c", str(conf)]
    return run


def beat(r, host, age_ms=0, **fields):
    """A host heartbeat as corrald writes it (supervisor/heartbeat.c)."""
    now = int(time.time() * 1000) - age_ms
    h = {"host": host, "pid": 1, "workers": 2, "busy": 1, "slots": 8, "min": 1, "max": 4,
         "desired": 2, "last_decision": "steady 2: a test", "queues": "a", "redis": "ok",
         "started_ms": now, "heartbeat_ms": now, "version": "0"}
    h.update(fields)
    r.hset(f"corral:host:{host}", mapping=h)
    r.zadd("corral:hosts", {host: now})


def test_hosts_keep_their_order_whichever_beat_last(ctl, r):
    orders, tables = set(), set()
    for i in range(12):
        # the newer beat alternates: the hosts index is ordered by beat time
        beat(r, "alpha", age_ms=0 if i % 2 else 500)
        beat(r, "beta", age_ms=500 if i % 2 else 0)
        s = json.loads(ctl("status", "--json"))
        orders.add(tuple(h["host"] for h in s["hosts"]))
        text = ctl("status")
        tables.add(tuple(l.split()[0] for l in text.splitlines() if l.startswith(("alpha", "beta"))))
    assert orders == {("alpha", "beta")}
    assert tables == {("alpha", "beta")}


def tokens(line):
    """(start, end, text) of each cell: cells are two or more blanks apart."""
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", line)]


def check_aligned(block, right):
    """Every row's cells start where their title starts (left-aligned
    columns) or end where it ends (right-aligned ones)."""
    head, rows = block[0], block[1:]
    cols = tokens(head)
    assert rows, block
    for row in rows:
        cells = tokens(row)
        assert len(cells) >= len(cols), (head, row)
        for (hs, he, title), (cs, ce, text) in zip(cols, cells):
            if title in right:
                assert ce == he, f"{title!r} not right-aligned in {row!r}"
            else:
                assert cs == hs, f"{title!r} not left-aligned in {row!r}"


def blocks(text):
    """The status tables, as lists of lines (title row first). Redis's own
    warnings (the tests' servers persist nothing) are not tables."""
    out, cur = [], []
    for line in text.splitlines():
        if line.startswith("warning: redis: "):
            continue
        if line.strip():
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def test_long_names_and_five_levels_keep_every_column_in_line(ctl, r):
    declare(r, LONG, priorities=LEVELS)
    declare(r, "a")
    for level, n in zip(LEVELS, [1, 12, 123, 1234, 3]):
        pipe = r.pipeline(transaction=False)
        for _ in range(n):
            pipe.fcall("corral_enqueue", 1, LONG, "{}", json.dumps({"priority": level}))
        pipe.execute()
    enqueue(r, "a")
    beat(r, "a-host-whose-name-is-rather-longer-than-twenty", workers=12, busy=100, slots=128)
    beat(r, "b", last_decision="hold 2: nothing to do")
    text = ctl("status")
    queues, hosts, services = blocks(text)
    assert queues[0].startswith("QUEUE") and hosts[0].startswith("HOST")
    check_aligned(queues, {"DEPTH", "RUN", "SCHED", "DEAD", "IN/s", "DONE/s", "FAIL/s", "P50ms",
                           "P95ms", "OLDEST"})
    check_aligned(hosts, {"WORKERS", "BUSY/SLOTS", "MIN/DESIRED/MAX", "BEAT"})
    assert [l.split()[0] for l in queues[1:]] == ["a", LONG]
    # the priorities in the queue's level order, highest first
    row = next(l for l in queues if l.startswith(LONG))
    assert "urgent=1 high=12 normal=123 low=1234 bulk=3" in row
    s = json.loads(ctl("status", "--json"))
    q = next(q for q in s["queues"] if q["name"] == LONG)
    assert list(q["depth_by_priority"]) == LEVELS


def test_a_hosts_unwritten_outcomes_show_in_status_json_and_metrics(ctl, r):
    beat(r, "calm")
    beat(r, "cut-off", unwritten=3)
    s = json.loads(ctl("status", "--json"))
    by = {h["host"]: h for h in s["hosts"]}
    assert by["cut-off"]["unwritten"] == 3 and by["calm"]["unwritten"] == 0
    text = ctl("status")
    assert "warning: host cut-off holds 3 outcomes Redis has not taken yet" in text
    assert "host calm holds" not in text
    metrics = ctl("metrics")
    assert 'corral_host_unwritten_outcomes{host="cut-off"} 3' in metrics
    assert 'corral_host_unwritten_outcomes{host="calm"} 0' in metrics


def test_watch_columns_do_not_narrow_when_numbers_shrink(ctl, r, tmp_path):
    declare(r, "a")
    pipe = r.pipeline(transaction=False)
    for _ in range(12345):
        pipe.fcall("corral_enqueue", 1, "a", "{}")
    pipe.execute()
    out = open(tmp_path / "out", "w")
    p = subprocess.Popen(ctl.argv + ["status", "--watch", "0.1"], stdout=out,
                         stderr=subprocess.DEVNULL)

    def last_view():
        return (tmp_path / "out").read_text().rsplit("QUEUE", 1)[-1]
    try:
        wait_until(lambda: re.search(r"^a +12345 ", last_view(), re.M),
                   what="the deep queue in view")
        r.delete("corral:{a}:q:1")  # the normal level's list: depth 12345 -> 0
        wait_until(lambda: re.search(r"^a +0 ", last_view(), re.M),
                   what="the emptied queue in view")
    finally:
        p.terminate()
        p.wait(timeout=10)
        out.close()
    text = (tmp_path / "out").read_text()
    heads = {l for l in text.splitlines() if l.startswith("QUEUE")}
    assert len(heads) == 1, heads
