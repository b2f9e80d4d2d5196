"""TLS wired into the programs (docs/ha.md, "TLS"): corrald starts the
host's stunnel for a rediss url and its workers reach Redis through it;
corralctl uses corrald's proxy, or starts its own for the command's life
when there is none; each bad certificate is named in corrald's log and in
corralctl's error."""
import json
import os
import subprocess

import pytest

from conftest import MODE, binary_path, get_job, wait_until
from hafixtures import *  # noqa: F401,F403 (fixtures)
from test_ha_tls import BAD
from test_supervisor import Corrald, reap

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="its own TLS redis-server: run once")

Q = "prompts"


def write_conf(tmp_path, pki, port, client="client", ca=None, name=None):
    text = f"[redis]\nurl = rediss://localhost:{port}/0\ntls_ca_file = {ca or pki.ca}\n"
    if client:
        crt, key = pki.paths(client)
        text += f"tls_cert_file = {crt}\ntls_key_file = {key}\n"
    if name:
        text += f"tls_server_name = {name}\n"
    text += ("[pool]\nmin = 1\nmax = 1\nconcurrency = 2\n[scale]\ntick = 250ms\n"
             f"[queue {Q}]\nhandler = echo\n")
    conf = tmp_path / "tls.conf"
    conf.write_text(text)
    return str(conf)


def ctl(build_dir, conf, tls_dir, *args):
    env = dict(os.environ, CORRAL_TLS_DIR=str(tls_dir))
    return subprocess.run([binary_path(build_dir, "corralctl"), "-c", conf, *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_corrald_its_worker_and_corralctl_work_through_corralds_tls_proxy(
        tls_redis, pki, tmp_path, build_dir):
    s = tls_redis()
    conf = write_conf(tmp_path, pki, s.port)
    tls_dir = tmp_path / "tls"
    d = Corrald(os.path.join(build_dir, "corrald"), conf, str(tmp_path / "corrald.log"),
                env=dict(os.environ, CORRAL_TLS_DIR=str(tls_dir)))
    try:
        admin = s.client()
        wait_until(lambda: admin.keys("corral:host:*"), timeout=20,
                   what="corrald's heartbeat through TLS\n" + d.logs())
        out = ctl(build_dir, conf, tls_dir, "enqueue", Q, '{"hello": 1}')
        assert out.returncode == 0, out.stderr
        jid = out.stdout.strip()
        wait_until(lambda: (get_job(admin, Q, jid) or {}).get("state") == "done",
                   what="the worker to run the job through TLS")
        st = ctl(build_dir, conf, tls_dir, "status", "--json")
        assert st.returncode == 0, st.stderr
        hosts = json.loads(st.stdout)["hosts"]
        assert hosts and hosts[0]["tls"] == "up" and hosts[0]["tls_error"] == ""
        assert sorted(os.listdir(tls_dir)) and not os.path.exists(tmp_path / "no-such")
    finally:
        reap([d])


def test_corralctl_without_corrald_starts_a_private_proxy_for_the_command(
        tls_redis, pki, tmp_path, build_dir):
    s = tls_redis()
    conf = write_conf(tmp_path, pki, s.port)
    out = ctl(build_dir, conf, tmp_path / "no-corrald-here", "enqueue", Q, "{}")
    assert out.returncode == 0, out.stderr
    assert get_job(s.client(), Q, out.stdout.strip())["state"] == "queued"
    # the private proxy is gone with the command
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).returncode != 0


@pytest.mark.parametrize("cert,client,ca,name,want", BAD,
                         ids=["other-ca", "wrong-ca-file", "name-mismatch", "server-name-mismatch",
                              "expired", "no-client-cert", "client-cert-other-ca"])
def test_each_bad_certificate_is_named_in_corralds_log_and_corralctls_error(
        tls_redis, pki, tmp_path, build_dir, cert, client, ca, name, want):
    s = tls_redis(cert=cert)
    conf = write_conf(tmp_path, pki, s.port, client=client,
                      ca=pki.other_ca if ca == "other" else None, name=name)
    want = want.format(ca=pki.ca, other_ca=pki.other_ca,
                       other_client=pki.paths("other-client")[0])
    out = ctl(build_dir, conf, tmp_path / "no-corrald-here", "enqueue", Q, "{}")
    assert out.returncode == 1
    assert want in out.stderr, out.stderr
    d = Corrald(os.path.join(build_dir, "corrald"), conf, str(tmp_path / "corrald.log"),
                env=dict(os.environ, CORRAL_TLS_DIR=str(tmp_path / "tls")))
    try:
        wait_until(lambda: want in d.logs(), timeout=20, what=f"{want!r} in corrald's log")
    finally:
        reap([d])
