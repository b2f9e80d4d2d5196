"""Cancel of a running job (docs/protocol.md, "Cancel"; docs/worker.md,
"Cancel"): corral_cancel ends it cancelled at once, its worker hears it on
its control channel and closes the call (the stand-in sees the connection
closed), the slot is free for the next job, and nothing the run reports
afterwards changes the job."""
import os
import subprocess
import time

from conftest import binary_path, declare, reserve, wait_until
from worker_fixtures import (HTTP_Q, K, Q, await_end, enqueue, job,  # noqa: F401
                             make_worker, stub)

PACED = {"sse": "openai", "chunks": 400, "output_tokens": 400, "chunk_ms": 50}  # a 20 s stream


def stream_of(srv, key):
    with srv.stub.lock:
        return next((dict(s) for s in srv.stub.streams if s["key"] == key), None)


def start_paced_call(r, srv, key):
    jid = enqueue(r, {"model": "m", "stub": dict(PACED, key=key)})
    wait_until(lambda: (stream_of(srv, key) or {}).get("events_sent", 0) > 0,
               what="the stand-in to start streaming")
    return jid


def test_a_running_http_call_is_closed_within_a_moment_of_its_cancel(r, make_worker, stub):
    make_worker(HTTP_Q, stub.url, extra=("--concurrency", "1"))
    jid = start_paced_call(r, stub, "c1")
    t0 = time.monotonic()
    assert r.fcall("corral_cancel", 1, Q, jid) == "cancelled"
    wait_until(lambda: (stream_of(stub, "c1") or {}).get("ended"), timeout=5,
               what="the worker to close the call")
    s = stream_of(stub, "c1")
    assert s["closed_by_client"], s
    assert s["ended"] - t0 < 0.5, s  # told at once, not at the next lease renewal
    assert s["events_sent"] < s["events_total"]
    j = job(r, jid)
    assert j["state"] == "cancelled" and "result" not in j, j
    assert r.zscore(f"{K}:active", jid) is None


def test_the_slot_of_a_cancelled_run_takes_the_next_job(r, make_worker, stub):
    make_worker(HTTP_Q, stub.url, extra=("--concurrency", "1"))
    first = start_paced_call(r, stub, "c2")
    second = enqueue(r, {"model": "m", "stub": {"key": "next"}})
    r.fcall("corral_cancel", 1, Q, first)
    j = await_end(r, second, timeout=5)
    assert j["state"] == "done", j
    assert job(r, first)["state"] == "cancelled"


def test_a_cancelled_exec_job_has_its_command_killed(r, make_worker, tmp_path):
    pidfile = tmp_path / "pid"
    make_worker(f"handler = exec\ncommand = /bin/sh -c 'echo $$ > {pidfile}; exec sleep 30'\n"
                "timeout = 60s")
    jid = enqueue(r, {})
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the command")
    pid = int(pidfile.read_text())
    r.fcall("corral_cancel", 1, Q, jid)

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:  # a zombie not yet reaped counts as gone
                return f.read().split(")")[-1].split()[0] == "Z"
        except FileNotFoundError:  # reaped between the kill(0) and the open
            return True
    wait_until(gone, timeout=5, what="the cancelled command to be killed")
    assert job(r, jid)["state"] == "cancelled"


def test_a_cancelled_run_that_reports_changes_nothing(r):
    declare(r, Q)
    jid = enqueue(r, {})
    (_, run, *_), = reserve(r, Q)
    assert r.fcall("corral_cancel", 1, Q, jid) == "cancelled"
    for call in (["corral_ack", 1, Q, "host1:1", jid, run, "late"],
                 ["corral_fail", 1, Q, "host1:1", jid, run, "retry", "late"],
                 ["corral_renew", 1, Q, "host1:1", jid, run]):
        assert r.fcall(*call) == ["STALE"]
    j = job(r, jid)
    assert j["state"] == "cancelled" and "result" not in j
    assert r.lrange(f"{K}:fin:{jid}", 0, -1) == ["cancelled"]


def test_a_cancel_of_a_running_job_is_published_to_its_worker(r):
    declare(r, Q)
    jid = enqueue(r, {})
    (_, run, *_), = reserve(r, Q)
    p = r.pubsub()
    p.subscribe("corral:ctl:host1:1")
    wait_until(lambda: p.get_message(timeout=0.01), what="the subscription")
    r.fcall("corral_cancel", 1, Q, jid)
    m = wait_until(lambda: p.get_message(timeout=0.01), what="the cancel message")
    assert m["data"] == f"cancel {Q} {jid} {run}"
    p.close()


def test_a_job_with_usage_reported_keeps_it_when_cancelled(r):
    declare(r, Q)
    jid = enqueue(r, {})
    reserve(r, Q)
    r.hset(f"{K}:job:{jid}", "usage", '{"input_tokens": 3}')
    r.fcall("corral_cancel", 1, Q, jid)
    assert job(r, jid)["usage"] == {"input_tokens": 3}  # corral_job reads it as JSON (tokens)


def test_corralctl_cancel_cancels_a_running_job_and_names_a_finished_or_unknown_one(
        r, build_dir, redis_server, tmp_path):
    ctl = binary_path(build_dir, "corralctl")
    conf = tmp_path / "ctl.conf"
    conf.write_text(redis_server.redis_section())
    declare(r, Q)

    def run(*args):
        return subprocess.run([ctl, "-c", str(conf), *args], capture_output=True, text=True,
                              timeout=20)
    jid = enqueue(r, {})
    reserve(r, Q)
    out = run("cancel", Q, jid)
    assert out.returncode == 0 and out.stdout == "cancelled\n", out.stderr
    assert job(r, jid)["state"] == "cancelled"
    again = run("cancel", Q, jid)
    assert again.returncode == 1 and f"job {jid} is cancelled and cannot be cancelled" \
        in again.stderr, again.stderr
    unknown = run("cancel", Q, "999")
    assert unknown.returncode == 1 and "no job 999" in unknown.stderr, unknown.stderr


def test_without_the_control_channel_a_cancel_stops_the_run_at_the_next_renewal(
        build_dir, tmp_path, stub):
    from conftest import RedisServer, acl_setuser_args
    from worker_fixtures import Worker
    server = RedisServer(mode="tcp-acl")
    server.start()
    w = None
    try:
        admin = server.client(decode_responses=True)
        args = [a for a in acl_setuser_args() if not a.startswith("&")]
        args[1] = "nochan"
        admin.execute_command("ACL", *[a.replace(">corral-test-acl-pw", ">nochan-pw")
                                       for a in args])
        pw = tmp_path / "nochan.pass"
        pw.write_text("nochan-pw\n")
        key = tmp_path / "key"
        key.write_text("sk-x\n")
        conf = tmp_path / "w.conf"
        conf.write_text(f"[redis]\nurl = redis://nochan@127.0.0.1:{server.port}/0\n"
                        f"password_file = {pw}\n[pool]\nconcurrency = 2\n"
                        f"[queue {Q}]\n{HTTP_Q}\nlease = 3s\n"
                        f"[service ai]\nurl = {stub.url}\napi_key_file = {key}\n")
        w = Worker(binary_path(build_dir, "corral-worker"), str(conf), str(tmp_path / "w.log"))
        wait_until(lambda: "may not use the control channel" in w.logs(),
                   what="the refused channel to be logged")
        jid = start_paced_call(admin, stub, "nochan")
        t0 = time.monotonic()
        assert admin.fcall("corral_cancel", 1, Q, jid) == "cancelled"
        wait_until(lambda: (stream_of(stub, "nochan") or {}).get("ended"), timeout=5,
                   what="the run to be stopped at a renewal")
        s = stream_of(stub, "nochan")
        # renewals every lease / 3 (1 s); within the lease (3 s) on a loaded
        # machine, far before the call would end by itself
        assert s["closed_by_client"] and s["ended"] - t0 < 3.0, s
        assert w.logs().count("may not use the control channel") == 1, w.logs()
        assert "job cancelled" not in w.logs()
        assert w.proc.poll() is None
    finally:
        if w is not None:
            assert w.stop() == 0, w.logs()
        server.cleanup()
