"""Integration test harness: a private redis-server per test session, on a
unix socket in a temp dir, and a fresh database with the corral Function
library loaded for every test. Helpers shared by the tests live here too
(import them with `from conftest import ...`); see README.md."""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import redis

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def assemble_library():
    """The Function library as the Makefile builds it (build/gen/corral.lua):
    the modules of queue/lua/ in the order of queue/lua/ORDER after the
    version of queue/lua/VERSION; written to a temp file, whose path is LUA."""
    lua = os.path.join(REPO, "queue", "lua")
    with open(os.path.join(lua, "ORDER")) as f:
        order = [line.strip() for line in f
                 if line.strip() and not line.lstrip().startswith("#")]
    with open(os.path.join(lua, "VERSION")) as f:
        version = f.read().strip()
    text = ("#!lua name=corral\n"
            "-- generated from queue/lua/ (ORDER, VERSION) by the Makefile: do not edit\n"
            f"local LIB_VERSION = {version}\n")
    for name in order:
        with open(os.path.join(lua, name)) as f:
            text += f.read()
    fd, path = tempfile.mkstemp(prefix="corral-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    atexit.register(os.unlink, path)
    return path


LUA = assemble_library()


def wait_until(pred, timeout=10.0, interval=0.01, what="condition"):
    """Polls pred until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# CORRAL_TEST_REDIS=tcp-acl runs the programs under test over TCP as the
# least-privilege ACL user of docs/operations.md; the tests' own admin
# client always uses the unix socket.
MODE = os.environ.get("CORRAL_TEST_REDIS", "unix")
ACL_PASSWORD = "corral-test-acl-pw"


def acl_setuser_args():
    text = open(os.path.join(REPO, "docs", "operations.md")).read()
    line = next(l for l in text.splitlines() if l.startswith("ACL SETUSER corral "))
    return [a.replace(">CHANGE-ME", ">" + ACL_PASSWORD) for a in line.split()[1:]]


# --- the tcp-acl pass: only the tests the mode can change ----------------------
#
# The mode reaches a test in one of three ways only: a program configured
# with redis_server.redis_section() (TCP as the ACL user instead of the
# socket), a test reading MODE, or one using ACL_PASSWORD. A test module
# that names none of them, nor imports a helper module of tests/ that
# does (worker_fixtures.py, test_supervisor.py, tests/chaos/chaosdriver.py,
# ...), runs the same commands as the same user in both passes: its test
# clients use the socket as the default user in either. Such modules are
# deselected in the tcp-acl pass (`make test` runs it after the unix one),
# so the second pass is the tests that drive corrald, corral-worker,
# corralctl, corral-web and the clients as the ACL user
# (tests/integration/README.md, "The tcp-acl pass").
# CORRAL_TEST_ACL_ALL=1 runs every test in that mode too.
_MODE_WORDS = re.compile(r"\b(?:redis_section|MODE|ACL_PASSWORD)\b")
_IMPORT = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.M)
_HELPER_DIRS = (os.path.join(REPO, "tests", "integration"), os.path.join(REPO, "tests", "chaos"))


def mode_dependent(path, _seen=None):
    """Whether the test module at path (or a tests/ module it imports,
    conftest.py aside) can see CORRAL_TEST_REDIS."""
    seen = _seen if _seen is not None else set()
    if path in seen:
        return False
    seen.add(path)
    with open(path) as f:
        text = f.read()
    if _MODE_WORDS.search(text):
        return True
    for name in _IMPORT.findall(text):
        if name in ("conftest", "secretscan"):
            continue
        for d in _HELPER_DIRS:
            dep = os.path.join(d, name + ".py")
            if os.path.exists(dep) and mode_dependent(dep, seen):
                return True
    return False


def pytest_collection_modifyitems(config, items):
    if MODE != "tcp-acl" or os.environ.get("CORRAL_TEST_ACL_ALL") == "1":
        return
    memo = {}
    keep, drop = [], []
    for item in items:
        path = str(item.fspath)
        if path not in memo:
            memo[path] = mode_dependent(path)
        (keep if memo[path] else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisServer:
    """A redis-server on a unix socket (and, in tcp-acl mode, a loopback TCP
    port with an ACL user); restartable on the same socket and port."""

    def __init__(self, appendonly=False, appendfsync="everysec", mode="unix"):
        self.dir = tempfile.mkdtemp(prefix="corral-redis-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.mode = mode
        self.port = free_port() if mode == "tcp-acl" else 0
        self.proc = None

    def redis_section(self):
        """The [redis] section programs under test should use."""
        if self.mode != "tcp-acl":
            return f"[redis]\nurl = unix://{self.socket}\n"
        pw = os.path.join(self.dir, "redis.pass")
        with open(pw, "w") as f:
            f.write(ACL_PASSWORD + "\n")
        return f"[redis]\nurl = redis://corral@127.0.0.1:{self.port}/0\npassword_file = {pw}\n"

    def start(self, appendonly=None):
        """Starts redis-server and waits (with a deadline) until it answers
        PING. appendonly=True/False changes the AOF setting for this and
        later starts; None keeps the current one."""
        if appendonly and not self.appendonly:
            # AOF files left from an earlier AOF period are older than what
            # was written since without AOF: never load them.
            shutil.rmtree(os.path.join(self.dir, "appendonlydir"), ignore_errors=True)
        if appendonly is not None:
            self.appendonly = appendonly
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--unixsocket", self.socket,
            "--unixsocketperm", "700", "--dir", self.dir, "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--loglevel", "warning",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        self.proc = subprocess.Popen(args)
        client = redis.Redis(unix_socket_path=self.socket)

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise AssertionError("redis-server exited at start; see redis.log")
                return False

        wait_until(up, timeout=10, what="redis-server to answer PING")
        if self.mode == "tcp-acl":
            client.execute_command("ACL", *acl_setuser_args())
        client.close()

    def stop(self, kill=False):
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def enable_aof(self):
        """Turns AOF on in the running server (CONFIG SET appendonly yes)
        and waits until the rewrite holding the current data is written, so
        everything before the call survives a later restart, even a kill."""
        c = self.client()
        try:
            c.config_set("appendonly", "yes")

            def rewritten():
                p = c.info("persistence")
                return (p["aof_enabled"] == 1 and p["aof_rewrite_in_progress"] == 0
                        and p["aof_rewrite_scheduled"] == 0)

            wait_until(rewritten, timeout=10, what="the AOF rewrite")
        finally:
            c.close()
        self.appendonly = True

    def restart(self, kill=False, appendonly=None):
        """Stops (SIGTERM, or SIGKILL with kill=True) and starts again on the
        same socket, port and directory, so clients and programs under test
        reconnect to the same address. With AOF on the data survives;
        appendonly=True turns AOF on first, so the current data survives
        this restart too; appendonly=False turns it off for the new start."""
        if appendonly and not self.appendonly and self.running():
            self.enable_aof()
        self.stop(kill=kill)
        self.start(appendonly=appendonly)

    def client(self, **kw):
        return redis.Redis(unix_socket_path=self.socket, **kw)

    def cleanup(self):
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make deps)")
    server = RedisServer(mode=MODE)
    server.start()
    yield server
    server.cleanup()


def load_library(client):
    with open(LUA) as f:
        client.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())


@pytest.fixture
def r(redis_server):
    """A client on a flushed database with the function library loaded."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis_server.client(decode_responses=True)
    client.flushall()
    load_library(client)
    yield client
    client.close()


def declare(client, queue, **settings):
    """Declares a queue with the given settings (corral_declare)."""
    return client.fcall("corral_declare", 1, queue, json.dumps(settings))


@pytest.fixture(scope="session")
def build_dir():
    """Where the C programs are: $CORRAL_BUILD, default <repo>/build."""
    return os.environ.get("CORRAL_BUILD", os.path.join(REPO, "build"))


def binary_path(build_dir, name):
    """The path of a built program, or skips the calling test when it has
    not been built."""
    path = os.path.join(build_dir, name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (make)")
    return path


# --- FCALL helpers for the queue tests -----------------------------------


def qkey(queue, prefix="corral"):
    """The key prefix K of a queue: "<prefix>:{<queue>}"."""
    return f"{prefix}:{{{queue}}}"


def enqueue(client, queue, payload="{}", **opts):
    """corral_enqueue with options given as keyword arguments -> job id.
    payload is JSON text, or any other value to be sent as JSON."""
    if not isinstance(payload, (str, bytes)):
        payload = json.dumps(payload)
    args = [payload] + ([json.dumps(opts)] if opts else [])
    return client.fcall("corral_enqueue", 1, queue, *args)


def enqueue_many(client, queue, n, payload="{}"):
    """n jobs with the same payload in one pipeline -> their ids."""
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        pipe.fcall("corral_enqueue", 1, queue, payload)
    return pipe.execute()


def reserve(client, queue, n=1, worker="host1:1"):
    """corral_reserve -> list of [id, run, attempts, max_attempts,
    timeout_ms, priority, service, payload]."""
    return client.fcall("corral_reserve", 1, queue, worker, n)


def get_job(client, queue, job_id):
    """corral_job decoded, or None when there is no such job."""
    raw = client.fcall_ro("corral_job", 1, queue, job_id)
    return json.loads(raw) if raw is not None else None


def stats(client, queue):
    """corral_stats decoded."""
    return json.loads(client.fcall_ro("corral_stats", 1, queue))


def server_ms(client):
    """The server's wall clock in ms, the clock the functions use."""
    s, us = client.time()
    return s * 1000 + us // 1000


def db_snapshot(client):
    """Every key with its type, value and whether it has a TTL: two equal
    snapshots mean nothing in the database changed (bar TTL countdown)."""
    snap = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        if kind == "string":
            val = client.get(key)
        elif kind == "list":
            val = client.lrange(key, 0, -1)
        elif kind == "hash":
            val = client.hgetall(key)
        elif kind == "zset":
            val = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            val = sorted(client.smembers(key))
        else:
            val = kind
        snap[key] = (kind, val, client.pttl(key) > 0)
    return snap


def wait_blocked(client, n=1, cmd=None, timeout=5.0):
    """Waits until n clients are blocked (CLIENT LIST flag "b"), in command
    cmd if given, so a test acts only once its waiters really wait."""
    def blocked():
        return sum("b" in c["flags"] and (cmd is None or c["cmd"] == cmd)
                   for c in client.client_list()) >= n
    wait_until(blocked, timeout=timeout, what=f"{n} client(s) blocked in {cmd or 'any'}")


# --- processes ---------------------------------------------------------------


def proc_stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError, ValueError):
        return None


def children(pid):
    """Pids of the live (not zombie) children of pid, sorted."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st is not None and st[1] == pid and st[0] != "Z":
            out.append(int(d))
    return sorted(out)


def kill_with_children(prog):
    """SIGKILL a Program (a corrald) and then every child it had (its
    workers), so that no process outlives its test: a draining orphan
    would talk to the next test's Redis. Closes its log."""
    kids = children(prog.proc.pid) if prog.proc.poll() is None else []
    if prog.proc.poll() is None:
        prog.proc.kill()
        prog.proc.wait()
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not prog.out.closed:
        prog.out.close()


def stop_clean(prog, timeout=30):
    """A clean stop of a corrald (SIGTERM, its drain) and then
    kill_with_children for whatever is left; under SANITIZE=1 the exits
    report leaks and memory errors in its log (its workers' stderr too),
    which fail the test here."""
    try:
        prog.stop(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    kill_with_children(prog)
    assert "Sanitizer" not in prog.logs() and "runtime error" not in prog.logs(), \
        prog.logs()[-3000:]


class Program:
    """A program under test, started with its stderr in a log file."""

    stop_timeout = 15

    def __init__(self, argv, log, mode="w", **popen):
        self.log = log
        self.out = open(log, mode)
        self.proc = subprocess.Popen(argv, stderr=self.out, **popen)

    def logs(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Sends sig (if it still runs) and waits -> its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout or self.stop_timeout)
        finally:
            self.out.close()


# --- the secret scan -----------------------------------------------------------

# No test key or password may appear in any Redis data or log of the run:
# tests/integration/secretscan.py checks after each test (an autouse
# fixture) and every log once at the end of the session.
from secretscan import pytest_sessionfinish, secret_scan  # noqa: F401,E402
