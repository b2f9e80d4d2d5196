"""Sentinel discovery (queue/sentinel.c; docs/ha.md, "Finding the master")
against the real master, replica and three redis-sentinel processes of
hafixtures.py, driven by tests/helpers/ha_probe before the programs use it:
the sentinels are asked in turn, an answer is believed only when the node's
ROLE says master, a failover is followed, and +switch-master is read."""
import os
import subprocess

import pytest

from conftest import MODE, free_port
from hafixtures import *  # noqa: F401,F403 (fixtures)
from hafixtures import MASTER_NAME

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="no corral program here: run once")


@pytest.fixture
def probe(build_dir):
    path = os.path.join(build_dir, "tests", "helpers", "ha_probe")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (make test builds it)")
    return path


def conf_for(tmp_path, sentinels, name=MASTER_NAME, extra=""):
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"[redis]\nurl = redis:///0\nsentinels = {sentinels}\n"
                    f"sentinel_master = {name}\n{extra}")
    return str(conf)


def master(probe, conf, env=None):
    return subprocess.run([probe, "master", conf], capture_output=True, text=True, timeout=60,
                          env=env)


def test_master_is_found_through_the_sentinels(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster()
    r = master(probe, conf_for(tmp_path, cl.sentinel_addrs()))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"127.0.0.1 {cl.nodes[0].port}\n"


def test_unreachable_sentinel_is_skipped(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster()
    cl.sentinels[0].kill()
    dead = f"127.0.0.1:{free_port()}"
    r = master(probe, conf_for(tmp_path, f"{dead}, {cl.sentinel_addrs()}"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"127.0.0.1 {cl.nodes[0].port}\n"


def test_sentinel_that_names_a_replica_is_not_believed(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster()
    stale = cl.add_stale_sentinel()
    # the stale sentinel alone: its answer fails the ROLE check
    r = master(probe, conf_for(tmp_path, stale))
    assert r.returncode == 1
    assert (f"{stale}: 127.0.0.1:{cl.nodes[1].port} is a replica (of 127.0.0.1:"
            f"{cl.nodes[0].port}), not the master") in r.stderr, r.stderr
    # asked first, it is passed over for the next sentinel
    r = master(probe, conf_for(tmp_path, f"{stale}, {cl.sentinel_addrs()}"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"127.0.0.1 {cl.nodes[0].port}\n"


def test_every_sentinel_failing_is_reported_with_what_each_said(probe, sentinel_cluster,
                                                                tmp_path):
    cl = sentinel_cluster()
    dead = f"127.0.0.1:{free_port()}"
    one = f"127.0.0.1:{cl.sentinels[0].port}"
    r = master(probe, conf_for(tmp_path, f"{dead}, {one}", name="no-such-master"))
    assert r.returncode == 1
    assert r.stderr.startswith('no master "no-such-master" from the sentinels: '), r.stderr
    assert f"{dead}: {dead}: Connection refused" in r.stderr, r.stderr
    assert f'{one}: it monitors no master named "no-such-master"' in r.stderr, r.stderr


def test_sentinel_password_is_sent_from_its_file(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster(password="sentinel-pw-3141")
    pw = tmp_path / "sentinel.pass"
    pw.write_text("sentinel-pw-3141\n")
    r = master(probe, conf_for(tmp_path, cl.sentinel_addrs(),
                               extra=f"sentinel_password_file = {pw}\n"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"127.0.0.1 {cl.nodes[0].port}\n"
    # without it every sentinel refuses; with a wrong one, the file is named, the password never
    r = master(probe, conf_for(tmp_path, cl.sentinel_addrs()))
    assert r.returncode == 1 and "NOAUTH" in r.stderr, r.stderr
    pw.write_text("wrong-pw-2718\n")
    r = master(probe, conf_for(tmp_path, cl.sentinel_addrs(),
                               extra=f"sentinel_password_file = {pw}\n"))
    assert r.returncode == 1
    assert f"authentication failed (password from {pw})" in r.stderr, r.stderr
    assert "wrong-pw-2718" not in r.stderr and "sentinel-pw-3141" not in r.stderr


def test_new_master_is_found_after_a_failover(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster()
    old, new = cl.failover()
    r = master(probe, conf_for(tmp_path, cl.sentinel_addrs()))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"127.0.0.1 {new.port}\n"


def test_switch_master_event_names_the_new_master(probe, sentinel_cluster, tmp_path):
    cl = sentinel_cluster()
    w = subprocess.Popen([probe, "watch", conf_for(tmp_path, cl.sentinel_addrs()), "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "subscribed\n"
        old, new = cl.kill_master(restart=False)
        out, err = w.communicate(timeout=30)
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()
    assert w.returncode == 0, err
    assert out == f"{MASTER_NAME} 127.0.0.1 {old.port} 127.0.0.1 {new.port}\n"


def test_master_is_found_over_tls_through_a_private_stunnel(probe, sentinel_cluster, pki,
                                                           tmp_path):
    cl = sentinel_cluster(tls=True)
    crt, key = pki.paths("client")
    conf = tmp_path / "tls-sentinel.conf"
    conf.write_text(f"[redis]\nurl = rediss:///0\nsentinels = {cl.sentinel_addrs()}\n"
                    f"sentinel_master = {MASTER_NAME}\ntls_ca_file = {pki.ca}\n"
                    f"tls_cert_file = {crt}\ntls_key_file = {key}\n")
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_TLS_DIR"}
    r = master(probe, str(conf), env=env)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"127.0.0.1 {cl.nodes[0].port}\n"
