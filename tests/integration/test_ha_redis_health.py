"""Redis's fitness for corral's jobs (issue 18 item 4, docs/operations.md):
`status --json` gains a `redis` object, and corrald's log and `corralctl
status` warn when the eviction policy can evict corral's keys, when memory
is near maxmemory, and when neither AOF nor RDB is on."""
import json
import os
import subprocess

import pytest

from conftest import MODE, binary_path, wait_until
from hafixtures import managed_pair  # noqa: F401
from test_supervisor import Corrald, reap

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own Redis servers: run once")

Q = "prompts"


def conf_for(tmp_path, node):
    conf = tmp_path / "h.conf"
    conf.write_text(f"[redis]\nurl = unix://{node.socket}\n"
                    "[pool]\nmin = 1\nmax = 1\n[scale]\ntick = 250ms\n"
                    f"[queue {Q}]\nhandler = echo\n")
    return str(conf)


def status(build_dir, conf, *args):
    return subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, "status", *args],
                          capture_output=True, text=True, timeout=30)


def test_status_json_has_a_redis_object_with_role_replicas_memory_and_persistence(
        managed_pair, build_dir, tmp_path):
    p = managed_pair()
    m = p.master.client()
    m.config_set("maxmemory-policy", "noeviction")
    m.config_set("appendonly", "yes")
    m.config_set("maxmemory", str(512 * 1024 * 1024))
    out = status(build_dir, conf_for(tmp_path, p.master), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)["redis"]
    assert r["role"] == "master" and r["master"] == p.master.socket
    assert len(r["replicas"]) == 1
    rep = r["replicas"][0]
    assert rep["port"] == p.replica.port and rep["state"] == "online" and rep["lag_s"] >= 0
    assert 0 < r["used_memory"] < r["maxmemory"] == 512 * 1024 * 1024
    assert r["maxmemory_policy"] == "noeviction"
    assert r["persistence"]["aof"] is True and r["warnings"] == []
    text = status(build_dir, conf_for(tmp_path, p.master))
    assert "warning: redis:" not in text.stdout


def test_eviction_policy_full_memory_and_no_persistence_are_warned_by_status_and_corrald(
        managed_pair, build_dir, tmp_path):
    p = managed_pair()
    m = p.master.client()
    m.config_set("maxmemory-policy", "allkeys-lru")
    m.config_set("appendonly", "no")
    m.config_set("save", "")
    conf = conf_for(tmp_path, p.master)
    assert status(build_dir, conf).returncode == 0  # loads the library while there is room
    used = int(m.info("memory")["used_memory"])
    m.config_set("maxmemory", str(int(used * 1.05)))
    out = status(build_dir, conf, "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)["redis"]
    assert r["persistence"] == {"aof": False, "rdb": False}
    ws = r["warnings"]
    assert any(w.startswith("maxmemory-policy is allkeys-lru: Redis may evict") for w in ws), ws
    assert any(w.startswith("memory is ") and "% of maxmemory" in w for w in ws), ws
    assert any(w.startswith("neither AOF nor RDB is on") for w in ws), ws
    text = status(build_dir, conf).stdout
    assert text.count("warning: redis: ") == 3, text
    m.config_set("maxmemory", "0")  # corrald must be able to write its heartbeat
    d = Corrald(os.path.join(build_dir, "corrald"), conf, str(tmp_path / "corrald.log"))
    try:
        wait_until(lambda: "maxmemory-policy is allkeys-lru" in d.logs()
                   and "neither AOF nor RDB is on" in d.logs(),
                   what="corrald's warnings\n" + d.logs())
    finally:
        reap([d])
    # said once, not on every sweep
    assert d.logs().count("maxmemory-policy is allkeys-lru") == 1
