"""Production-shaped Redis for the tests of docs/ha.md: TLS, Sentinel and a
DNS-style failover, all real processes from Debian's packages on loopback,
in temp dirs, on free ports.

- Pki: a CA, a server certificate for localhost/127.0.0.1, a client
  certificate, and the bad cases -- a server and a client certificate from
  another CA, a server certificate for another name, an expired one --
  made with the openssl command.
- TlsRedis: redis-server with --tls-port (and a unix socket for the tests'
  own admin client), presenting any of Pki's server certificates.
- SentinelCluster: a master, a replica and three redis-sentinel processes
  monitoring them, with the failovers of issue 18: SENTINEL FAILOVER, kill -9
  of the master, the master frozen (SIGSTOP) past down-after-milliseconds
  and then resumed to find itself demoted. Optionally all of it over TLS.
- ManagedPair: a master and a replica behind DnsSwitch, a loopback address
  that moves (tcpswitch.py); switch() swaps their roles with REPLICAOF and
  moves the address, as a managed Redis does with its DNS name.

Fixtures (import them into a test module: `from hafixtures import *`):
`pki` (session), `tls_redis` (a factory), `sentinel_cluster` (a factory),
`managed_pair`. Every process is killed and every dir removed at the end.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import redis

from conftest import free_port, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
MASTER_NAME = "corral-master"


def _run(args, cwd):
    p = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{p.stdout}")


def _ping(client):
    try:
        return client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
        return False


# --- certificates --------------------------------------------------------

_CA_CNF = """[ca]
default_ca = ca_default
[ca_default]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = policy_any
copy_extensions = none
unique_subject = no
[policy_any]
commonName = supplied
"""


class Pki:
    """Certificates made with openssl in dir (EC P-256: quick to make).

    paths(name) -> (cert, key) for name in:
      "server"        for DNS:localhost and IP:127.0.0.1, signed by ca
      "client"        a client certificate signed by ca
      "other-server"  the same names, signed by other-ca (not trusted)
      "other-client"  a client certificate signed by other-ca
      "wrong-name"    for DNS:wrong.example only, signed by ca
      "expired"       the server's names, valid only on 2020-01-01, signed by ca
    and .ca / .other_ca, the two CA certificates. The expired one is signed
    with `openssl ca -startdate -enddate`, since `openssl x509 -days` cannot
    make a certificate that is already out of date."""

    SERVER_SAN = "DNS:localhost,IP:127.0.0.1"

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        self.ca = self._make_ca("ca", "corral test CA")
        self.other_ca = self._make_ca("other-ca", "some other CA")
        self._sign("server", "ca", "localhost", self.SERVER_SAN, "serverAuth")
        self._sign("client", "ca", "corral-client", None, "clientAuth")
        self._sign("other-server", "other-ca", "localhost", self.SERVER_SAN, "serverAuth")
        self._sign("other-client", "other-ca", "corral-client", None, "clientAuth")
        self._sign("wrong-name", "ca", "wrong.example", "DNS:wrong.example", "serverAuth")
        self._sign("expired", "ca", "localhost", self.SERVER_SAN, "serverAuth",
                   dates=("20200101000000Z", "20200102000000Z"))

    def _make_ca(self, name, cn):
        d = os.path.join(self.dir, name + ".db")
        os.makedirs(d)
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(_CA_CNF)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        crt = os.path.join(self.dir, name + ".crt")
        _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
              os.path.join(self.dir, name + ".key"), "-out", crt, "-days", "3650",
              "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.dir)
        return crt

    def _sign(self, name, ca, cn, san, usage, dates=None):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        _run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn], self.dir)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % usage)
            if san:
                f.write("subjectAltName=%s\n" % san)
        start, end = dates or ("20200101000000Z", "20991231000000Z")
        _run(["openssl", "ca", "-config", "ca.cnf", "-batch", "-notext",
              "-cert", os.path.join(self.dir, ca + ".crt"),
              "-keyfile", os.path.join(self.dir, ca + ".key"),
              "-in", csr, "-out", os.path.join(self.dir, name + ".crt"),
              "-startdate", start, "-enddate", end, "-extfile", ext],
             os.path.join(self.dir, ca + ".db"))
        os.chmod(key, 0o600)

    def paths(self, name):
        return os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")


def tls_client_kwargs(pki, client="client", ca=None, check_hostname=True):
    """redis-py keyword arguments for a verified TLS connection with a
    client certificate (client=None for none)."""
    kw = dict(ssl=True, ssl_ca_certs=ca or pki.ca, ssl_cert_reqs="required",
              ssl_check_hostname=check_hostname)
    if client:
        kw["ssl_certfile"], kw["ssl_keyfile"] = pki.paths(client)
    return kw


def _tls_server_args(pki, cert="server", auth_clients="yes"):
    """redis-server (and redis-sentinel) options for a TLS-only port; its own
    connections (replication, sentinel links) present the client certificate."""
    crt, key = pki.paths(cert)
    ccrt, ckey = pki.paths("client")
    return ["--tls-cert-file", crt, "--tls-key-file", key, "--tls-ca-cert-file", pki.ca,
            "--tls-client-cert-file", ccrt, "--tls-client-key-file", ckey,
            "--tls-auth-clients", auth_clients]


# --- redis-server nodes ---------------------------------------------------


class Node:
    """One redis-server: a loopback TCP port (TLS when tls_args are given,
    plain otherwise) and a unix socket for the tests' admin client, which
    works whatever the TCP side does. Restartable on the same addresses."""

    def __init__(self, name, root, tls_args=None, extra=()):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=root)
        self.socket = os.path.join(self.dir, "redis.sock")
        self.port = free_port()
        self.tls_args = tls_args
        self.extra = list(extra)
        self.proc = None
        self.frozen = False

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def start(self, replicaof=None):
        args = ["redis-server", "--bind", "127.0.0.1", "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--dir", self.dir, "--save", "",
                "--appendonly", "no", "--loglevel", "notice", "--repl-diskless-sync-delay", "0",
                "--logfile", os.path.join(self.dir, "redis.log")]
        if self.tls_args:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-replication", "yes"]
            args += self.tls_args
        else:
            args += ["--port", str(self.port)]
        if replicaof is not None:
            args += ["--replicaof", replicaof.addr[0], str(replicaof.addr[1])]
        self.proc = subprocess.Popen(args + self.extra)
        c = self.client()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server {self.name} exited at start; see "
                                     f"{self.dir}/redis.log")
            return _ping(c)

        wait_until(up, timeout=10, what=f"redis-server {self.name} to answer PING")
        c.close()
        return self

    def client(self, **kw):
        return redis.Redis(unix_socket_path=self.socket, decode_responses=True,
                           socket_timeout=5, **kw)

    def role(self):
        """"master", "slave", or None when it does not answer."""
        c = self.client()
        try:
            return c.execute_command("ROLE")[0]
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return None
        finally:
            c.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """kill -9, as a crashed host."""
        if self.proc is not None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
                self.frozen = False
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def in_sync_with(self, master):
        """This replica has its link up and has applied everything master
        has written."""
        mc, rc = master.client(), self.client()
        try:
            mi, ri = mc.info("replication"), rc.info("replication")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            mc.close()
            rc.close()
        return (ri.get("role") == "slave" and ri.get("master_link_status") == "up"
                and ri.get("slave_repl_offset", -1) >= mi.get("master_repl_offset", 0))


def wait_in_sync(replica, master, timeout=15):
    wait_until(lambda: replica.in_sync_with(master), timeout=timeout,
               what=f"{replica.name} to be in sync with {master.name}")


# --- TLS redis-server -----------------------------------------------------


class TlsRedis(Node):
    """A redis-server whose TCP port speaks TLS only, presenting Pki's
    certificate `cert`; auth_clients is --tls-auth-clients (yes: a client
    certificate signed by the CA is required)."""

    def __init__(self, pki, root, cert="server", auth_clients="yes"):
        super().__init__("tls-" + cert, root, _tls_server_args(pki, cert, auth_clients))
        self.pki = pki

    def tls_client(self, host="localhost", client="client", **kw):
        """A verified redis-py client over TLS presenting Pki's client
        certificate `client` (None: none); kw overrides the TLS options."""
        opts = tls_client_kwargs(self.pki, client=client)
        opts.update(kw)
        return redis.Redis(host=host, port=self.port, socket_timeout=5, **opts)


# --- Sentinel -------------------------------------------------------------


class Sentinel:
    def __init__(self, index, root, master, quorum, down_after_ms, failover_timeout_ms,
                 password=None, tls_args=None):
        self.index = index
        self.dir = os.path.join(root, f"sentinel{index}")
        os.makedirs(self.dir)
        self.port = free_port()
        self.password = password
        self.tls = tls_args is not None
        self.conf = os.path.join(self.dir, "sentinel.conf")
        lines = [
            "bind 127.0.0.1", f"dir {self.dir}",
            f"logfile {os.path.join(self.dir, 'sentinel.log')}",
            f"sentinel monitor {MASTER_NAME} {master.addr[0]} {master.addr[1]} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if tls_args:
            lines += ["port 0", f"tls-port {self.port}", "tls-replication yes"]
            it = iter(tls_args)
            lines += [f"{k.lstrip('-')} {v}" for k, v in zip(it, it)]
        else:
            lines.append(f"port {self.port}")
        if password:
            lines.append(f"requirepass {password}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def start(self):
        self.proc = subprocess.Popen(["redis-sentinel", self.conf])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class SentinelCluster:
    """A master, a replica and `sentinels` redis-sentinel processes with
    quorum 2 monitoring them under MASTER_NAME, on loopback. With pki set,
    every port -- data nodes, replication, sentinels -- is TLS only.

    down_after_ms is the sentinels' down-after-milliseconds: how long the
    master must be silent before it is failed over (freeze() stays past it).
    failover_timeout_ms bounds how soon the same sentinels may fail over
    again (2x it), so short runs can fail over several times."""

    def __init__(self, root, sentinels=3, down_after_ms=1000, failover_timeout_ms=3000,
                 password=None, pki=None):
        self.root = root
        self.pki = pki
        self.password = password
        tls_args = _tls_server_args(pki, "server", "yes") if pki else None
        self.nodes = [Node("node0", root, tls_args), Node("node1", root, tls_args)]
        self.down_after_ms = down_after_ms
        self.sentinels = [
            Sentinel(i, root, self.nodes[0], 2, down_after_ms, failover_timeout_ms, password,
                     tls_args) for i in range(sentinels)]
        self.extra = []  # sentinels outside the quorum (add_stale_sentinel)

    # addresses -----------------------------------------------------------

    def sentinel_addrs(self):
        """"127.0.0.1:PORT, ..." as `[redis] sentinels` takes them."""
        return ", ".join(f"{s.addr[0]}:{s.addr[1]}" for s in self.sentinels)

    def sentinel_client(self, i=0, **kw):
        s = self.sentinels[i]
        opts = dict(host=s.addr[0], port=s.port, decode_responses=True, socket_timeout=5,
                    password=self.password)
        if self.pki:
            opts.update(tls_client_kwargs(self.pki, check_hostname=False))
        opts.update(kw)
        return redis.Redis(**opts)

    def node_at(self, port):
        return next(n for n in self.nodes if n.port == int(port))

    def master_addr(self, i=0):
        """What sentinel i answers to get-master-addr-by-name, or None."""
        c = self.sentinel_client(i)
        try:
            a = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            return (a[0], int(a[1])) if a else None
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return None
        finally:
            c.close()

    def master(self):
        """The node the sentinels (sentinel 0) name as master."""
        return self.node_at(self.master_addr()[1])

    def replica(self):
        m = self.master()
        return next(n for n in self.nodes if n is not m)

    # start and readiness -------------------------------------------------

    def start(self):
        self.nodes[0].start()
        self.nodes[1].start(replicaof=self.nodes[0])
        wait_in_sync(self.nodes[1], self.nodes[0])
        for s in self.sentinels:
            s.start()
        self.wait_ready()
        return self

    def _sentinel_view(self, i):
        c = self.sentinel_client(i)
        try:
            m = c.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            m = dict(zip(m[::2], m[1::2]))
            reps = c.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            reps = [dict(zip(r[::2], r[1::2])) for r in reps]
            return m, reps
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            return None, []
        finally:
            c.close()

    def ready(self):
        """Every sentinel agrees on the master, sees the other sentinels, and
        knows a replica that is up and linked: a failover can start now."""
        want = None
        for i, s in enumerate(self.sentinels):
            if not s.running():
                continue
            m, reps = self._sentinel_view(i)
            if m is None or "s_down" in m["flags"] or "o_down" in m["flags"]:
                return False
            addr = (m["ip"], int(m["port"]))
            if want is None:
                want = addr
            if addr != want or int(m["num-other-sentinels"]) < sum(
                    x.running() for x in self.sentinels) - 1:
                return False
            good = [r for r in reps if r["flags"] == "slave" and r["master-link-status"] == "ok"]
            if not good:
                return False
        node = self.node_at(want[1])
        return node.role() == "master"

    def wait_ready(self, timeout=60):
        wait_until(self.ready, timeout=timeout, interval=0.1,
                   what="the sentinels to agree on a master with a linked replica")

    def wait_switched(self, old, timeout=30):
        """Waits until every running sentinel names a master other than node
        old and that node says ROLE master; returns the new master node."""
        def switched():
            addrs = {self.master_addr(i) for i, s in enumerate(self.sentinels) if s.running()}
            if len(addrs) != 1:
                return None
            addr = addrs.pop()
            if addr is None or addr[1] == old.port:
                return None
            node = self.node_at(addr[1])
            return node if node.role() == "master" else None

        return wait_until(switched, timeout=timeout, interval=0.05,
                          what=f"the sentinels to fail over from {old.name}")

    # the failovers of issue 18 -------------------------------------------

    def failover(self):
        """SENTINEL FAILOVER: a switch the operator asks for. Returns
        (old master, new master)."""
        self.wait_ready()
        old = self.master()
        c = self.sentinel_client(0)

        def asked():
            try:
                return c.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            except redis.ResponseError as e:  # NOGOODSLAVE / INPROG: not yet
                if "NOGOODSLAVE" in str(e) or "INPROG" in str(e):
                    return False
                raise

        wait_until(asked, timeout=20, interval=0.2, what="SENTINEL FAILOVER to be accepted")
        c.close()
        return old, self.wait_switched(old)

    def kill_master(self, restart=True):
        """kill -9 of the master; once the sentinels have switched, the old
        node is started again as a replica of the new master (restart=True),
        as a host that reboots. Returns (old master, new master)."""
        self.wait_ready()
        old = self.master()
        old.kill()
        new = self.wait_switched(old)
        if restart:
            old.start(replicaof=new)
        return old, new

    def freeze_master(self, past_ms=None):
        """SIGSTOP of the master until the sentinels have switched (at least
        past_ms, default down-after-milliseconds + 500 ms), then SIGCONT: the
        old master comes back believing it is master, and is demoted by the
        sentinels. Returns (old master, new master) once old is a replica."""
        self.wait_ready()
        old = self.master()
        t0 = time.monotonic()
        old.freeze()
        try:
            new = self.wait_switched(old)
            rest = (past_ms if past_ms is not None else self.down_after_ms + 500) / 1000.0
            rest -= time.monotonic() - t0
            if rest > 0:
                time.sleep(rest)  # a fixed freeze length is the fault itself, not a wait
        finally:
            old.thaw()
        # Sentinel demotes a node that claims the wrong role only after 8 s
        # of its INFO saying so, and reads INFO every 10 s: up to ~20 s.
        wait_until(lambda: old.role() == "slave", timeout=40, interval=0.1,
                   what=f"{old.name} to be demoted after SIGCONT")
        return old, new

    def add_stale_sentinel(self):
        """One more sentinel that names the replica as MASTER_NAME's master,
        as a sentinel cut off from its peers through a failover would (it
        monitors the replica under the same name). Not in .sentinels:
        returns its "127.0.0.1:PORT"."""
        replica = self.replica()
        s = Sentinel(len(self.sentinels) + len(self.extra), self.root, replica, 1,
                     self.down_after_ms, 180000, self.password,
                     _tls_server_args(self.pki, "server", "yes") if self.pki else None)
        s.start()
        self.extra.append(s)
        c = redis.Redis(host="127.0.0.1", port=s.port, decode_responses=True, socket_timeout=5,
                        password=self.password)
        wait_until(lambda: _ping(c), what="the stale sentinel")
        c.close()
        return f"127.0.0.1:{s.port}"

    def cleanup(self):
        for s in self.sentinels + self.extra:
            s.kill()
        for n in self.nodes:
            n.kill()


# --- a DNS-style switch without Sentinel ----------------------------------


class DnsSwitch:
    """tcpswitch.py in its own process: 127.0.0.1:port relays to a target
    that switch_to() moves for new connections only (a DNS name pointed
    elsewhere); drop() cuts the open ones."""

    def __init__(self, root, target):
        self.port = free_port()
        self.control = os.path.join(root, "tcpswitch.ctl")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "tcpswitch.py"), "--listen",
             f"127.0.0.1:{self.port}", "--target", f"{target[0]}:{target[1]}",
             "--control", self.control], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise AssertionError(f"tcpswitch.py did not start: {line!r}")

    def _ask(self, cmd):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.control)
            s.sendall((cmd + "\n").encode())
            reply = s.makefile().readline().strip()
        if not reply.startswith("OK"):
            raise AssertionError(f"tcpswitch {cmd}: {reply}")
        return reply

    def switch_to(self, addr):
        self._ask(f"TARGET {addr[0]} {addr[1]}")

    def drop(self):
        return int(self._ask("DROP").split()[-1])

    def stats(self):
        words = self._ask("STATS").split()[1:]
        return dict(w.split("=", 1) for w in words)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()


class ManagedPair:
    """A managed Redis without Sentinel: a master and a replica behind one
    address (DnsSwitch) that clients use. switch() promotes the replica with
    REPLICAOF NO ONE, moves the address to it, and demotes the old master
    with REPLICAOF new -- the order a managed service follows. Connections
    already open stay on the demoted node (their writes get READONLY)
    unless drop=True."""

    def __init__(self, root, pki=None):
        tls_args = _tls_server_args(pki, "server", "yes") if pki else None
        self.nodes = [Node("a", root, tls_args), Node("b", root, tls_args)]
        self.nodes[0].start()
        self.nodes[1].start(replicaof=self.nodes[0])
        wait_in_sync(self.nodes[1], self.nodes[0])
        self.master, self.replica = self.nodes
        self.dns = DnsSwitch(root, self.master.addr)

    @property
    def addr(self):
        return ("127.0.0.1", self.dns.port)

    def switch(self, drop=False):
        """Returns (old master, new master)."""
        old, new = self.master, self.replica
        wait_in_sync(new, old)
        new.client().execute_command("REPLICAOF", "NO", "ONE")
        self.dns.switch_to(new.addr)
        old.client().execute_command("REPLICAOF", new.addr[0], str(new.addr[1]))
        if drop:
            self.dns.drop()
        self.master, self.replica = new, old
        return old, new

    def cleanup(self):
        self.dns.stop()
        for n in self.nodes:
            n.kill()


# --- pytest fixtures --------------------------------------------------------


def _need(*programs):
    for p in programs:
        if shutil.which(p) is None:
            pytest.fail(f"{p} is not installed (make deps)")


@pytest.fixture(scope="session")
def pki():
    _need("openssl")
    d = tempfile.mkdtemp(prefix="corral-pki-")
    yield Pki(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_redis(pki):
    """Factory: tls_redis(cert="server", auth_clients="yes") -> a started
    TlsRedis."""
    _need("redis-server")
    root = tempfile.mkdtemp(prefix="corral-tls-")
    servers = []

    def make(cert="server", auth_clients="yes"):
        s = TlsRedis(pki, root, cert, auth_clients)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.kill()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sentinel_cluster(pki):
    """Factory: sentinel_cluster(**SentinelCluster options; tls=True for
    TLS everywhere) -> a started SentinelCluster, ready to fail over."""
    _need("redis-server", "redis-sentinel")
    root = tempfile.mkdtemp(prefix="corral-sentinel-")
    clusters = []

    def make(tls=False, **kw):
        c = SentinelCluster(root, pki=pki if tls else None, **kw)
        clusters.append(c)
        return c.start()

    yield make
    for c in clusters:
        c.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def managed_pair():
    """Factory: managed_pair(pki=None) -> a ManagedPair."""
    _need("redis-server")
    root = tempfile.mkdtemp(prefix="corral-managed-")
    pairs = []

    def make(pki=None):
        p = ManagedPair(root, pki)
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.cleanup()
    shutil.rmtree(root, ignore_errors=True)
