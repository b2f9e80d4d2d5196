"""corrald, its workers and corralctl as the least-privilege Redis ACL user
of docs/operations.md, over TCP with AUTH."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

from conftest import REPO, wait_until


def acl_line():
    text = open(os.path.join(REPO, "docs", "operations.md")).read()
    return re.search(r"^ACL SETUSER corral .*$", text, re.M).group(0)


@pytest.fixture
def acl_redis():
    d = tempfile.mkdtemp(prefix="corral-acl-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--dir", d, "--save", "", "--appendonly", "no",
                          "--logfile", os.path.join(d, "redis.log")])
    admin = redis.Redis(port=port, decode_responses=True)
    wait_until(lambda: _ping(admin), what="redis-server over TCP")
    args = acl_line().split()[1:]  # after "ACL"
    args = [a.replace(">CHANGE-ME", ">s3cret-acl-pw") for a in args]
    admin.execute_command("ACL", *args)
    yield port, admin
    p.terminate()
    p.wait()
    shutil.rmtree(d, ignore_errors=True)


def _ping(c):
    try:
        return c.ping()
    except redis.ConnectionError:
        return False


def test_the_documented_acl_user_runs_the_whole_pool(acl_redis, build_dir, tmp_path):
    port, admin = acl_redis
    pw = tmp_path / "redis.pass"
    pw.write_text("s3cret-acl-pw\n")
    conf = tmp_path / "c.conf"
    conf.write_text(f"[redis]\nurl = redis://corral@127.0.0.1:{port}/0\npassword_file = {pw}\n"
                    "[pool]\nmin = 2\nmax = 3\n[scale]\ntick = 250ms\n"
                    "[queue jobs]\nhandler = echo\n")
    exe = os.path.join(build_dir, "corrald")
    if not os.path.exists(exe):
        pytest.skip("corrald not built")
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
    assert "s3cret-acl-pw" not in text
    # The user really is limited: an admin command is refused.
    limited = redis.Redis(port=port, username="corral", password="s3cret-acl-pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.execute_command("CONFIG", "GET", "dir")


def test_the_acl_line_allows_every_command_the_functions_call():
    """A command missing from the documented ACL fails only under that user
    and only on the path that calls it (a breaker reset, say): check them
    all here, from the library's source."""
    from conftest import LUA, acl_setuser_args
    with open(LUA) as f:
        used = {c.lower() for c in re.findall(r"redis\.call\('([A-Z]+)'", f.read())}
    allowed = {a[1:] for a in acl_setuser_args() if a.startswith("+")}
    assert used and not used - allowed, f"missing from the ACL line: {sorted(used - allowed)}"
