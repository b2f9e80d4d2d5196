"""The TLS route (common/tls.c, supervisor/tlsproxy.c; docs/ha.md, "TLS")
against the real TLS redis-server of hafixtures.py, driven by
tests/helpers/ha_probe before the programs use it: a connection through
stunnel works, each bad certificate is refused with its own sentence, and
the supervised stunnel comes back after kill -9."""
import os
import signal
import subprocess

import pytest
import redis

from conftest import MODE, wait_until
from hafixtures import *  # noqa: F401,F403 (fixtures)

pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="no corral program here: run once")


@pytest.fixture
def probe(build_dir):
    path = os.path.join(build_dir, "tests", "helpers", "ha_probe")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (make test builds it)")
    return path


def tls_conf(tmp_path, pki, port, host="localhost", client="client", ca=None, name=None,
             extra=""):
    text = f"[redis]\nurl = rediss://{host}:{port}/0\ntls_ca_file = {ca or pki.ca}\n"
    if client:
        crt, key = pki.paths(client)
        text += f"tls_cert_file = {crt}\ntls_key_file = {key}\n"
    if name:
        text += f"tls_server_name = {name}\n"
    conf = tmp_path / "tls.conf"
    conf.write_text(text + extra)
    return str(conf)


def ping(probe, conf):
    return subprocess.run([probe, "tls-ping", conf], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_connection_through_stunnel_reaches_the_tls_server(probe, tls_redis, pki, tmp_path, host):
    s = tls_redis()
    r = ping(probe, tls_conf(tmp_path, pki, s.port, host=host))
    assert (r.returncode, r.stdout, r.stderr) == (0, "PONG\n", "")


BAD = [
    # (server certificate, client certificate, our CA, tls_server_name, what we must say)
    ("other-server", "client", None, None,
     "the server's certificate is not signed by a CA in [redis] tls_ca_file = {ca}: unable to "
     "get local issuer certificate"),
    ("server", "client", "other", None,
     "the server's certificate is not signed by a CA in [redis] tls_ca_file = {other_ca}: "
     "self-signed certificate in certificate chain"),
    ("wrong-name", "client", None, None,
     "the server's certificate is not for localhost (set [redis] tls_server_name"),
    ("server", "client", None, "wrong.example",
     "the server's certificate is not for wrong.example ([redis] tls_server_name)"),
    ("expired", "client", None, None,
     "the server's certificate is out of date: certificate has expired"),
    ("server", None, None, None,
     "refused by the server: it requires a client certificate (set [redis] tls_cert_file and "
     "tls_key_file)"),
    ("server", "other-client", None, None,
     "refused by the server: it does not accept the client certificate in [redis] "
     "tls_cert_file = {other_client}"),
]


@pytest.mark.parametrize("cert,client,ca,name,want", BAD,
                         ids=["other-ca", "wrong-ca-file", "name-mismatch", "server-name-mismatch",
                              "expired", "no-client-cert", "client-cert-other-ca"])
def test_each_bad_certificate_is_refused_with_its_own_message(
        probe, tls_redis, pki, tmp_path, cert, client, ca, name, want):
    s = tls_redis(cert=cert)
    conf = tls_conf(tmp_path, pki, s.port, client=client,
                    ca=pki.other_ca if ca == "other" else None, name=name)
    r = ping(probe, conf)
    assert r.returncode == 1, r.stdout
    want = want.format(ca=pki.ca, other_ca=pki.other_ca,
                       other_client=pki.paths("other-client")[0])
    assert r.stderr.startswith(f"TLS to localhost:{s.port} "), r.stderr
    assert want in r.stderr, r.stderr


def test_rediss_url_on_a_plaintext_port_is_refused_not_spoken_in_clear(
        probe, redis_server, pki, tmp_path):
    plain = Node("plain", str(tmp_path)).start()
    try:
        r = ping(probe, tls_conf(tmp_path, pki, plain.port))
    finally:
        plain.kill()
    assert r.returncode == 1
    assert "the server does not answer in TLS (a plaintext port?" in r.stderr, r.stderr


def test_unusable_client_certificate_is_named_before_stunnel_starts(probe, tls_redis, pki,
                                                                    tmp_path):
    s = tls_redis()
    conf = tls_conf(tmp_path, pki, s.port, client=None,
                    extra=f"tls_cert_file = {tmp_path}/missing.crt\n"
                          f"tls_key_file = {pki.paths('client')[1]}\n")
    r = ping(probe, conf)
    assert r.returncode == 1
    assert r.stderr == (f"[redis] tls_cert_file = {tmp_path}/missing.crt: cannot read it: No such "
                        "file or directory\n")


def test_certificate_file_stunnel_cannot_load_is_a_setup_error(probe, tls_redis, pki, tmp_path):
    s = tls_redis()
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    conf = tls_conf(tmp_path, pki, s.port, client=None,
                    extra=f"tls_cert_file = {junk}\ntls_key_file = {pki.paths('client')[1]}\n")
    r = ping(probe, conf)
    assert r.returncode == 1
    assert "the TLS proxy (stunnel4) refused its configuration" in r.stderr, r.stderr


# --- corrald's supervised stunnel ------------------------------------------------


class Supervised:
    """ha_probe tls-supervise: the supervisor module on its own event loop,
    its health in a file."""

    def __init__(self, probe, conf, root, later=None):
        self.dir = os.path.join(root, "tls")
        self.status_path = os.path.join(root, "status")
        self.log = open(os.path.join(root, "supervise.log"), "w")
        self.proc = subprocess.Popen([probe, "tls-supervise", conf, self.dir, self.status_path]
                                     + ([later] if later else []), stderr=self.log)

    def status(self):
        try:
            with open(self.status_path) as f:
                return dict(l.split("=", 1) for l in f.read().splitlines())
        except FileNotFoundError:
            return {}

    def wait(self, what, timeout=15, **want):
        def match():
            st = self.status()
            return st if all(st.get(k) == str(v) for k, v in want.items()) else None

        return wait_until(match, timeout=timeout, what=what)

    def socket(self, host, port):
        return os.path.join(self.dir, f"{host}_{port}.sock")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=15)
        self.log.close()
        return rc


@pytest.fixture
def supervised(probe, tmp_path):
    made = []

    def make(conf, later=None):
        s = Supervised(probe, conf, str(tmp_path), later)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_supervised_stunnel_serves_redis_on_a_unix_socket(supervised, tls_redis, pki, tmp_path):
    s = tls_redis()
    sup = supervised(tls_conf(tmp_path, pki, s.port))
    sup.wait("the proxy up", state="up", routes=1, fault="ok")
    c = redis.Redis(unix_socket_path=sup.socket("localhost", s.port), socket_timeout=5)
    assert c.set("k", "v") and c.get("k") == b"v"
    assert s.client().get("k") == "v"
    assert oct(os.stat(sup.dir).st_mode & 0o777) == "0o700"
    assert sup.stop() == 0  # a clean stop: stunnel reaped, its sockets and config removed
    assert os.listdir(sup.dir) == []


def test_killed_stunnel_is_restarted_and_serves_again(supervised, tls_redis, pki, tmp_path):
    s = tls_redis()
    sup = supervised(tls_conf(tmp_path, pki, s.port))
    first = sup.wait("the proxy up", state="up")
    os.kill(int(first["pid"]), signal.SIGKILL)
    again = sup.wait("the proxy restarted", state="up", restarts=1)
    assert again["pid"] != first["pid"]
    c = redis.Redis(unix_socket_path=sup.socket("localhost", s.port), socket_timeout=5)
    assert c.ping()


def test_route_added_to_a_running_stunnel_keeps_open_connections(supervised, tls_redis, pki,
                                                                 tmp_path):
    a, b = tls_redis(), tls_redis()
    sup = supervised(tls_conf(tmp_path, pki, a.port), later=f"localhost:{b.port}")
    first = sup.wait("the proxy up", state="up", routes=1)
    open_conn = redis.Redis(unix_socket_path=sup.socket("localhost", a.port), socket_timeout=5)
    assert open_conn.set("before", "1")
    conn_id = open_conn.client_id()
    sup.proc.send_signal(signal.SIGUSR1)
    st = sup.wait("the second route bound", state="up", routes=2)
    assert st["pid"] == first["pid"] and st["restarts"] == "0"  # reloaded, not restarted
    # the connection made before the reload is the same one, still working
    assert open_conn.get("before") == b"1" and open_conn.client_id() == conn_id
    new = redis.Redis(unix_socket_path=sup.socket("localhost", b.port), socket_timeout=5)
    assert new.set("on-b", "1") and b.client().get("on-b") == "1"


def test_supervised_health_names_a_refused_certificate(supervised, tls_redis, pki, tmp_path):
    s = tls_redis(cert="wrong-name")
    sup = supervised(tls_conf(tmp_path, pki, s.port))
    sup.wait("the proxy up", state="up")
    c = redis.Redis(unix_socket_path=sup.socket("localhost", s.port), socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        c.ping()
    st = sup.wait("the fault in the health", fault="name-mismatch")
    assert st["error"].startswith(f"TLS to localhost:{s.port} refused: the server's certificate "
                                  "is not for localhost")
    assert st["state"] == "up"  # stunnel itself is fine; the route is refused


def test_stunnel_that_cannot_start_backs_off_and_says_why(supervised, tls_redis, pki, tmp_path):
    s = tls_redis()
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    sup = supervised(tls_conf(tmp_path, pki, s.port, client=None,
                              extra=f"tls_cert_file = {junk}\n"
                                    f"tls_key_file = {pki.paths('client')[1]}\n"))
    st = sup.wait("a restart after the failed start", restarts=2)
    assert st["fault"] == "setup"
    assert "refused its configuration" in st["error"]
    assert st["state"] in ("backoff", "starting")
