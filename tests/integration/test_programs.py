"""Behaviour shared by the programs: loading the Function library when it is
missing or older, and log lines for a terminal or for journald."""
import os
import re
import signal
import subprocess

import pytest

from conftest import LUA, binary_path, wait_until


def library_version(r):
    return r.fcall_ro("corral_version", 0)


def stub_library(version):
    return ("#!lua name=corral\n"
            f"redis.register_function{{function_name='corral_version', "
            f"callback=function() return {version} end, flags={{'no-writes'}}}}\n")


@pytest.mark.parametrize("start", ["missing", "older"])
def test_programs_load_the_library_when_missing_or_older(build_dir, redis_server, r, start):
    with open(LUA) as f:
        ours = int(re.search(r"local LIB_VERSION = (\d+)", f.read()).group(1))
    if start == "missing":
        r.execute_command("FUNCTION", "DELETE", "corral")
    else:
        r.execute_command("FUNCTION", "LOAD", "REPLACE", stub_library(0))
    res = subprocess.run([binary_path(build_dir, "corralctl"), "--redis",
                          f"unix://{redis_server.socket}", "job", "q", "1"],
                         capture_output=True, text=True, timeout=20)
    assert 'unknown queue "q"' in res.stderr  # it got as far as calling the library
    assert library_version(r) == ours


def test_a_newer_library_is_left_alone(build_dir, redis_server, r):
    r.execute_command("FUNCTION", "LOAD", "REPLACE", stub_library(9999))
    subprocess.run([binary_path(build_dir, "corralctl"), "--redis",
                    f"unix://{redis_server.socket}", "job", "q", "1"],
                   capture_output=True, text=True, timeout=20)
    assert library_version(r) == 9999


def run_corrald_briefly(build_dir, tmp_path, env):
    conf = tmp_path / "c.conf"
    conf.write_text(f"[redis]\nurl = unix://{tmp_path}/absent.sock\n"
                    "[queue q]\nhandler = echo\n")
    log = tmp_path / "corrald.log"
    with open(log, "w") as out:
        p = subprocess.Popen([binary_path(build_dir, "corrald"), "-c", str(conf)],
                             stderr=out, env=env)
        wait_until(lambda: "redis unavailable" in log.read_text(), timeout=10,
                   what="corrald to report redis unavailable")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
    return log.read_text()


def test_logs_carry_a_timestamp_level_and_fields_on_a_terminal(build_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    text = run_corrald_briefly(build_dir, tmp_path, env)
    line = next(l for l in text.splitlines() if "redis unavailable" in l)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z corrald\[\d+\] warn redis unavailable", line)
    assert f"unix://{tmp_path}/absent.sock" in line


def test_logs_use_journald_priority_prefixes_under_systemd(build_dir, tmp_path):
    env = dict(os.environ, JOURNAL_STREAM="8:12345")
    text = run_corrald_briefly(build_dir, tmp_path, env)
    line = next(l for l in text.splitlines() if "redis unavailable" in l)
    assert line.startswith("<4>redis unavailable")
    assert not re.search(r"\d{4}-\d\d-\d\dT", line)
