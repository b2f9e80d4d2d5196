"""corrald, its workers and corralctl as the least-privilege Redis ACL user
of docs/operations.md, over TCP with AUTH."""
import json
import os
import re
import socket
import subprocess

import pytest
import redis

from conftest import ACL_PASSWORD, LUA, RedisServer, acl_setuser_args, binary_path, wait_until


@pytest.fixture
def acl_redis():
    """A redis-server whose user "corral" has the ACL line of
    docs/operations.md, reached over TCP (RedisServer in tcp-acl mode) ->
    (server, an admin client on its unix socket)."""
    server = RedisServer(mode="tcp-acl")
    server.start()
    admin = server.client(decode_responses=True)
    yield server, admin
    admin.close()
    server.cleanup()


def test_the_documented_acl_user_runs_the_whole_pool(acl_redis, build_dir, tmp_path):
    server, admin = acl_redis
    conf = tmp_path / "c.conf"
    conf.write_text(server.redis_section() + "[pool]\nmin = 2\nmax = 3\n[scale]\ntick = 250ms\n"
                    "[queue jobs]\nhandler = echo\n")
    assert "url = redis://corral@" in conf.read_text()
    exe = binary_path(build_dir, "corrald")
    log = tmp_path / "corrald.log"
    with open(log, "w") as out:
        d = subprocess.Popen([exe, "-c", str(conf)], stderr=out)
        try:
            host = socket.gethostname()
            wait_until(lambda: admin.hget(f"corral:host:{host}", "workers") == "2",
                       timeout=15, what="the pool to start as the ACL user")
            ctl = os.path.join(build_dir, "corralctl")
            res = subprocess.run([ctl, "-c", str(conf), "enqueue", "jobs", '{"acl": 1}',
                                  "--wait", "10s"], capture_output=True, text=True, timeout=30)
            assert res.returncode == 0, res.stderr
            assert json.loads(res.stdout) == {"acl": 1}
            st = subprocess.run([ctl, "-c", str(conf), "status", "--json"],
                                capture_output=True, text=True, timeout=30)
            assert st.returncode == 0, st.stderr
            assert json.loads(st.stdout)["hosts"][0]["workers"] == 2
        finally:
            d.terminate()
            d.wait(timeout=20)
    text = log.read_text()
    assert "NOPERM" not in text and "failed" not in text, text
    assert ACL_PASSWORD not in text
    # The user really is limited: an admin command is refused.
    limited = redis.Redis(port=server.port, username="corral", password=ACL_PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.execute_command("CONFIG", "GET", "dir")


def test_the_acl_line_allows_every_command_the_functions_call():
    """A command missing from the documented ACL fails only under that user
    and only on the path that calls it (a breaker reset, say): check them
    all here, from the library's source."""
    # Every command word in the first argument of a call, through the
    # rcall upvalue or redis.call (a choice such as
    # "front and 'LPUSH' or 'RPUSH'" names both).
    with open(LUA) as f:
        firsts = re.findall(r"(?:\brcall|redis\.call)\(([^,)]*)", f.read())
    used = {c.lower() for a in firsts for c in re.findall(r"'([A-Z]+)'", a)}
    assert len(used) >= 30, sorted(used)  # the scan sees the library's calls
    allowed = {a[1:] for a in acl_setuser_args() if a.startswith("+")}
    assert used and not used - allowed, f"missing from the ACL line: {sorted(used - allowed)}"
