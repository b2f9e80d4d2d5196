"""The production-shaped Redis of hafixtures.py, proven with redis-py alone
before corral is put on it: TLS refuses each bad certificate and plaintext,
the sentinels fail over in each of the three ways of issue 18, and the
DNS-style switch moves new connections while open ones stay behind."""
import socket
import ssl

import pytest
import redis

from conftest import MODE, wait_until
from hafixtures import *  # noqa: F401,F403 (fixtures)
from hafixtures import MASTER_NAME, tls_client_kwargs

# These use redis-py alone, so the suite's second run (the programs over
# TCP as the ACL user) would only repeat them.
pytestmark = pytest.mark.skipif(MODE == "tcp-acl", reason="no corral program here: run once")


# --- TLS --------------------------------------------------------------------


def tls_error(server, **kw):
    """The error a verified TLS client gets from server, as text."""
    c = server.tls_client(**kw)
    with pytest.raises((redis.ConnectionError, ssl.SSLError)) as e:
        c.ping()
    c.close()
    return str(e.value)


def test_tls_redis_answers_a_verified_client_with_a_client_certificate(tls_redis):
    s = tls_redis()
    assert s.tls_client(host="localhost").ping()
    assert s.tls_client(host="127.0.0.1").ping()


def test_tls_redis_refuses_plaintext_on_its_port(tls_redis):
    s = tls_redis()
    c = redis.Redis(port=s.port, socket_timeout=2)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        c.ping()


def test_certificate_from_another_ca_is_refused_by_the_client(tls_redis):
    s = tls_redis(cert="other-server")
    assert "unable to get local issuer certificate" in tls_error(s)


def test_certificate_for_another_name_is_refused_by_the_client(tls_redis):
    s = tls_redis(cert="wrong-name")
    assert "Hostname mismatch" in tls_error(s, host="localhost")
    assert "IP address mismatch" in tls_error(s, host="127.0.0.1")


def test_expired_certificate_is_refused_by_the_client(tls_redis):
    s = tls_redis(cert="expired")
    assert "certificate has expired" in tls_error(s)


# In TLS 1.3 the server checks the client's certificate after the client
# has finished its handshake, so the client learns of the refusal on its
# first read (the alert) or, about 1 time in 20, on its first write (EOF).
REFUSED_EOF = "EOF occurred in violation of protocol"


def test_client_without_certificate_is_refused_by_the_server(tls_redis):
    s = tls_redis()
    msg = tls_error(s, client=None)
    assert "certificate required" in msg or REFUSED_EOF in msg, msg


def test_client_certificate_from_another_ca_is_refused_by_the_server(tls_redis):
    s = tls_redis()
    msg = tls_error(s, client="other-client")
    assert "unknown ca" in msg or REFUSED_EOF in msg, msg


# --- Sentinel ---------------------------------------------------------------


def write_and_read(node, key):
    c = redis.Redis(host=node.addr[0], port=node.port, socket_timeout=5)
    c.set(key, "v")
    return c.get(key)


def test_sentinels_publish_switch_master_on_failover(sentinel_cluster):
    cl = sentinel_cluster()
    sub = cl.sentinel_client(1).pubsub()
    sub.subscribe("+switch-master")
    wait_until(lambda: sub.get_message(timeout=0.1), what="the subscription")
    old, new = cl.failover()

    def switch_message():
        m = sub.get_message(timeout=0.1)
        return m if m and m["type"] == "message" else None

    m = wait_until(switch_message, timeout=10, what="+switch-master")
    assert m["data"].split() == [MASTER_NAME, "127.0.0.1", str(old.port), "127.0.0.1",
                                 str(new.port)]
    sub.close()


def demoted(node):
    """node says ROLE slave and refuses writes."""
    if node.role() != "slave":
        return False
    with pytest.raises(redis.ReadOnlyError):
        write_and_read(node, "on-demoted")
    return True


def test_failover_kill_and_freeze_in_a_row_each_leave_one_writable_master(sentinel_cluster):
    cl = sentinel_cluster()
    seen = []
    for fault in (cl.failover, cl.kill_master, cl.freeze_master):
        old, new = fault()
        seen.append((old.name, new.name))
        assert new.role() == "master"
        assert write_and_read(new, fault.__name__) == b"v"
        # sentinel demotes a live old master once its INFO has said master
        # for 8 s (a killed one is restarted as a replica by the fixture)
        wait_until(lambda: demoted(old), timeout=40, interval=0.1,
                   what=f"{old.name} to be demoted after {fault.__name__}")
    assert seen == [("node0", "node1"), ("node1", "node0"), ("node0", "node1")]


def test_sentinels_with_a_password_refuse_clients_without_it(sentinel_cluster):
    cl = sentinel_cluster(password="sentinel-pw")
    assert cl.master_addr() == cl.nodes[0].addr
    c = cl.sentinel_client(0, password=None)
    with pytest.raises(redis.AuthenticationError):
        c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)


def test_sentinel_cluster_over_tls_fails_over(sentinel_cluster, pki):
    cl = sentinel_cluster(tls=True)
    plain = redis.Redis(port=cl.sentinels[0].port, socket_timeout=2)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        plain.ping()
    old, new = cl.failover()
    c = redis.Redis(host="localhost", port=new.port, socket_timeout=5, **tls_client_kwargs(pki))
    assert c.set("k", "v")


# --- DNS-style switch without Sentinel -----------------------------------------


def test_dns_switch_moves_new_connections_and_leaves_open_ones_on_the_demoted_master(
        managed_pair):
    p = managed_pair()
    pinned = redis.Redis(port=p.addr[1], socket_timeout=5)
    pinned.set("before", "1")
    old, new = p.switch()
    with pytest.raises(redis.ReadOnlyError):
        pinned.set("after", "1")  # the open connection still reaches the demoted node
    fresh = redis.Redis(port=p.addr[1], socket_timeout=5)
    assert fresh.set("after", "1")
    assert fresh.execute_command("ROLE")[0] == b"master"
    assert fresh.get("before") == b"1"  # the replica had it before the switch
    assert new.client().get("after") == "1"


def test_dns_switch_drop_cuts_open_connections(managed_pair):
    p = managed_pair()
    c = socket.create_connection(p.addr)
    c.sendall(b"PING\r\n")
    assert c.recv(64) == b"+PONG\r\n"
    p.switch(drop=True)
    c.settimeout(5)
    assert c.recv(64) == b""  # closed by the switch
    c.close()
