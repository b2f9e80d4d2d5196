"""Nothing an exec job starts outlives the job (docs/worker.md, "exec
hygiene"): not a child that started its own session (setsid), not a
double-forked daemon, not a process that keeps forking -- whether the run
ends by its timeout, by the command's own exit, by an aborted drain or by
the worker's death. Each command writes the pids of what it left behind
to a file; the test waits, with a deadline, for every one to be gone."""
import os
import signal
import sys

import pytest

from conftest import wait_until
from worker_fixtures import await_end, enqueue, make_worker  # noqa: F401 (a fixture)

# A daemon as the books describe it: fork, setsid, fork again, the middle
# process exits; the grandchild writes its pid and sleeps.
DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(300)
    os._exit(0)
os.wait()
"""


def alive(pid):
    """Whether pid is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def in_session(sid):
    """Live processes of session sid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d))
    return out


def in_group(pgid):
    """Live processes of process group pgid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d))
    return out


def pids(path):
    return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture
def left(tmp_path):
    """The file where commands write the pids they leave behind; at the
    end each of them, its session and the test's commands are killed, so a
    failing test leaves nothing either."""
    path = tmp_path / "left.pids"
    yield path

    def victims():
        found = [p for p in pids(path) if alive(p)]
        found += [p for q in pids(path) for p in in_session(q)]
        for c in commands(tmp_path):
            found.append(c)
            try:
                pgid = os.getpgid(c)
            except ProcessLookupError:
                continue
            if pgid != os.getpgrp():  # never the test's own group
                found += in_group(pgid)
        return set(found) - {os.getpid()}

    def kill_round():
        found = victims()
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return not found

    wait_until(kill_round, timeout=10, what="what the test left behind to be killed")


def commands(tmp_path):
    """Live processes whose command line names a file of tmp_path."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if str(tmp_path).encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def started(left, start):
    """Shell text running start (which leaves a process behind that writes
    its pid to left), then waiting until the pid is written: the run must
    not end before what it leaves behind is under way."""
    return (f"n=$(cat {left} 2>/dev/null | wc -l)\n{start}\n"
            f"while [ \"$(cat {left} 2>/dev/null | wc -l)\" -le \"$n\" ]; do sleep 0.01; done\n")


def setsid_child(left):
    """A child in its own session that writes its pid."""
    return started(left, f"setsid sh -c \"echo \\$\\$ >> {left}; exec sleep 300\" &")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_all_gone(left, n):
    wait_until(lambda: len(pids(left)) >= n, timeout=10, what=f"{n} pid(s) written")
    wait_until(lambda: not [p for p in pids(left) if alive(p)], timeout=10,
               what=f"every process left behind to be gone: {pids(left)}")


def test_a_setsid_grandchild_dies_with_the_run_at_its_timeout_and_retry(r, make_worker,
                                                                        tmp_path, left):
    script = write(tmp_path, "job.sh", f"{setsid_child(left)}sleep 30\n")
    make_worker(f"handler = exec\ncommand = /bin/sh {script}\nmax_attempts = 2\n"
                "backoff = 50ms..50ms\ntimeout = 500ms")
    j = await_end(r, enqueue(r, {}))
    assert j["state"] == "dead" and j["attempts"] == 2, j
    assert "timed out after 500 ms" in j["error"]
    assert_all_gone(left, 2)  # one per attempt


def test_a_double_forked_daemon_dies_with_the_run(r, make_worker, tmp_path, left):
    daemon = write(tmp_path, "daemon.py", DAEMON)
    script = write(tmp_path, "job.sh", started(left, f"{sys.executable} {daemon} {left}") +
                   "sleep 30\n")
    make_worker(f"handler = exec\ncommand = /bin/sh {script}\nmax_attempts = 1\n"
                "timeout = 1s")
    j = await_end(r, enqueue(r, {}))
    assert j["state"] == "dead" and "timed out" in j["error"], j
    assert_all_gone(left, 1)


def test_a_command_that_exits_0_takes_its_setsid_child_with_it(r, make_worker, tmp_path,
                                                                left):
    """Done, with the command's output as the result; the child it left
    running (holding the job's stdout) is killed, as systemd's
    KillMode=control-group does when a service's main process exits."""
    script = write(tmp_path, "job.sh", f"{setsid_child(left)}cat\n")
    make_worker(f"handler = exec\ncommand = /bin/sh {script}\ntimeout = 10s")
    j = await_end(r, enqueue(r, {"x": 1}))
    assert j["state"] == "done" and j["result"] == '{"x": 1}', j
    assert_all_gone(left, 1)


def test_a_descendant_that_keeps_forking_is_killed_with_all_it_forked(r, make_worker,
                                                                       tmp_path, left):
    # Its own session, forking a sleeper every 10 ms until it is killed.
    loop = f"setsid sh -c 'echo $$ >> {left}; while :; do sleep 300 & sleep 0.01; done' &"
    script = write(tmp_path, "job.sh", started(left, loop) + "sleep 30\n")
    make_worker(f"handler = exec\ncommand = /bin/sh {script}\nmax_attempts = 1\n"
                "timeout = 700ms")
    j = await_end(r, enqueue(r, {}))
    assert j["state"] == "dead", j
    wait_until(lambda: pids(left), what="the forking loop's pid")
    sid = pids(left)[0]
    wait_until(lambda: not in_session(sid), timeout=10,
               what=f"every process of session {sid} to be gone")


def test_an_aborted_drain_kills_what_the_command_started(r, make_worker, tmp_path, left):
    script = write(tmp_path, "job.sh", f"{setsid_child(left)}sleep 30\n")
    w = make_worker(f"handler = exec\ncommand = /bin/sh {script}\ntimeout = 60s")
    enqueue(r, {})
    wait_until(lambda: pids(left), what="the command to start its child")
    w.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "draining" in w.logs(), what="the worker to start draining")
    w.proc.send_signal(signal.SIGTERM)  # the second one aborts the run
    assert w.proc.wait(timeout=10) == 1
    assert_all_gone(left, 1)


def test_a_worker_killed_outright_takes_its_jobs_processes_with_it(r, make_worker, tmp_path,
                                                                   left):
    script = write(tmp_path, "job.sh", f"{setsid_child(left)}sleep 30\n")
    w = make_worker(f"handler = exec\ncommand = /bin/sh {script}\ntimeout = 60s")
    enqueue(r, {})
    wait_until(lambda: pids(left), what="the command to start its child")
    w.proc.kill()
    w.proc.wait(timeout=10)
    assert_all_gone(left, 1)
