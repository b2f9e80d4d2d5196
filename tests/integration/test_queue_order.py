"""Which job corral_reserve hands out next: strict or weighted order across
priority levels, FIFO within a level, and no starvation when weighted."""
import json
from collections import Counter

from conftest import declare, enqueue, qkey, reserve

Q = "jobs"
K = qkey(Q)
LEVELS = ["high", "normal", "low"]


def enqueue_many(r, per_level, levels=LEVELS):
    """Enqueues per_level jobs into each named level (pipelined); returns
    {level: [ids in enqueue order]}."""
    pipe = r.pipeline(transaction=False)
    for level in levels:
        for i in range(per_level):
            pipe.fcall("corral_enqueue", 1, Q, json.dumps({"level": level, "i": i}),
                       json.dumps({"priority": level}))
    ids = pipe.execute()
    return {level: ids[k * per_level:(k + 1) * per_level] for k, level in enumerate(levels)}


def reserve_one_at_a_time(r, count, worker="host1:1"):
    """count reserves of one job each, as idle workers make them."""
    pipe = r.pipeline(transaction=False)
    for _ in range(count):
        pipe.fcall("corral_reserve", 1, Q, worker, 1)
    return [j for batch in pipe.execute() for j in batch]


def test_strict_order_serves_every_higher_level_first(r):
    declare(r, Q, order="strict")
    ids = {}
    for level in ["low", "normal", "high", "low", "high", "normal", "low"]:
        ids.setdefault(level, []).append(enqueue(r, Q, priority=level))
    got = [j[0] for j in reserve(r, Q, 7)]
    assert got == ids["high"] + ids["normal"] + ids["low"]


def test_strict_order_lets_a_later_high_job_jump_the_queue(r):
    declare(r, Q, order="strict")
    lows = [enqueue(r, Q, priority="low") for _ in range(3)]
    assert reserve(r, Q)[0][0] == lows[0]
    high = enqueue(r, Q, priority="high")
    assert reserve(r, Q)[0][0] == high
    assert [j[0] for j in reserve(r, Q, 5)] == lows[1:]


def test_fifo_within_a_level_in_strict_order(r):
    declare(r, Q, order="strict")
    ids = enqueue_many(r, 200, ["normal"])["normal"]
    got = [j[0] for j in reserve(r, Q, 50)] + [j[0] for j in reserve_one_at_a_time(r, 150)]
    assert got == ids


def test_fifo_within_each_level_in_weighted_order(r):
    declare(r, Q, order="weighted", weights=[6, 3, 1])
    ids = enqueue_many(r, 100)
    seen = {level: [] for level in LEVELS}
    for j in reserve(r, Q, 300):
        seen[j[5]].append(j[0])
    assert seen == ids


def test_weighted_order_serves_levels_in_proportion_to_their_weights(r):
    weights = [6, 3, 1]
    declare(r, Q, order="weighted", weights=weights)
    enqueue_many(r, 1000)  # 1,000 per level: none empties within 1,000 picks
    taken = reserve(r, Q, 100) + reserve_one_at_a_time(r, 400)
    for _ in range(10):
        taken += reserve(r, Q, 50)
    assert len(taken) == 1000
    counts = Counter(j[5] for j in taken)
    assert all(r.llen(f"{K}:q:{i}") > 0 for i in range(3)), "a level ran dry"
    for level, w in zip(LEVELS, weights):
        want = w / sum(weights)
        assert abs(counts[level] / 1000 - want) <= 0.1 * want, (level, counts)


def test_weighted_order_splits_between_the_non_empty_levels_only(r):
    declare(r, Q, order="weighted", weights=[6, 3, 1])
    enqueue_many(r, 1000, ["high", "low"])  # normal stays empty
    counts = Counter(j[5] for j in reserve_one_at_a_time(r, 700) + reserve(r, Q, 300))
    assert counts["normal"] == 0
    assert abs(counts["high"] / 1000 - 6 / 7) <= 0.1 * 6 / 7, counts
    assert abs(counts["low"] / 1000 - 1 / 7) <= 0.1 * 1 / 7, counts


def test_weighted_order_never_starves_the_lowest_level(r):
    declare(r, Q, order="weighted", weights=[6, 3, 1])
    enqueue_many(r, 20, ["high", "normal"])
    low = enqueue(r, Q, priority="low")
    served = []
    for _ in range(10):  # higher levels keep being refilled
        enqueue(r, Q, priority="high")
        enqueue(r, Q, priority="normal")
        served.append(reserve(r, Q)[0][0])
    assert low in served


def test_strict_order_starves_lower_levels_while_higher_ones_have_work(r):
    # the contrast to the test above: strict means strict
    declare(r, Q, order="strict")
    low = enqueue(r, Q, priority="low")
    served = []
    for _ in range(20):
        enqueue(r, Q, priority="high")
        served.append(reserve(r, Q)[0][0])
    assert low not in served
    assert reserve(r, Q)[0][0] == low
