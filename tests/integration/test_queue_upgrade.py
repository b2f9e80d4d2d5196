"""Library version 4 renamed the fields of a service's hash (version 3:
win, minc, fr, st, until, okp, i:<host>, c<i>...): declaring the service
again drops version 3's state (the breaker starts closed, its window
empty) and keeps only the calls in flight per host (docs/protocol.md,
"Upgrading")."""
import json

from conftest import declare, enqueue, reserve

SVC = "ai"
SK = f"corral:svc:{SVC}"


def test_declaring_a_version_3_service_starts_it_afresh_and_keeps_its_calls_in_flight(r):
    r.hset(SK, mapping={"win": 60000, "minc": 4, "fr": 50, "slow": 30000, "sr": 80,
                        "of": 30000, "om": 300000, "hc": 2, "rn": 0, "rp": 60000,
                        "st": "open", "until": 2 ** 50, "n": 3, "why": "failure rate 100%",
                        "okp": 1, "thr": 2 ** 50, "thr_why": "429", "bh": 7, "bad": 4,
                        "slp": 0, "i:h1": 2, "c7": 4, "f7": 4, "s7": 0})
    assert r.fcall("corral_declare_service", 1, SVC, json.dumps({"min_calls": 4})) == "OK"
    b = json.loads(r.fcall_ro("corral_breaker", 1, SVC))
    assert b["state"] == "closed" and b["calls"] == 0 and b["trips"] == 0
    assert b["throttled_until_ms"] == 0 and b["min_calls"] == 4
    assert b["inflight"] == 2 and b["inflight_by_host"] == {"h1": 2}
    fields = set(r.hkeys(SK))
    assert not fields & {"win", "minc", "st", "until", "okp", "i:h1", "c7", "thr", "slp"}
    assert "window_ms" in fields and r.hget(SK, "state") == "closed"
    # the calls in flight are given back by the jobs that hold them
    declare(r, "jobs", service=SVC)
    jid = enqueue(r, "jobs")
    run = reserve(r, "jobs", worker="h1:9")[0][1]
    assert json.loads(r.fcall_ro("corral_breaker", 1, SVC))["inflight"] == 3
    r.fcall("corral_ack", 1, "jobs", "h1:9", jid, run, "{}")
    assert json.loads(r.fcall_ro("corral_breaker", 1, SVC))["inflight"] == 2


def test_declaring_a_version_4_service_again_keeps_its_state(r):
    r.fcall("corral_declare_service", 1, SVC, json.dumps({"min_calls": 4}))
    r.hset(SK, mapping={"state": "open", "open_until_ms": 2 ** 50, "reason": "tripped"})
    r.fcall("corral_declare_service", 1, SVC, json.dumps({"min_calls": 5}))
    b = json.loads(r.fcall_ro("corral_breaker", 1, SVC))
    assert b["state"] == "open" and b["reason"] == "tripped" and b["min_calls"] == 5
