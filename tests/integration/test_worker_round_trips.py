"""corral-worker at steady state makes one round trip per round of jobs: the
acks of the runs that ended and the reserve that refills their slots go as
one corral_ack_reserve (docs/protocol.md), not as an ack and a reserve."""
import re
import subprocess

from conftest import declare, enqueue_many, wait_until
from worker_fixtures import Q, await_end, make_worker  # noqa: F401 (a fixture)


def test_a_busy_worker_acks_and_reserves_in_one_call(r, make_worker,  # noqa: F811
                                                     redis_server, tmp_path):
    declare(r, Q)
    ids = enqueue_many(r, Q, 200, '{"messages": [{"role": "user", "content": "hi"}]}')
    log = tmp_path / "monitor.log"
    with open(log, "w") as out:
        monitor = subprocess.Popen(["redis-cli", "-s", redis_server.socket, "monitor"],
                                   stdout=out)
    try:
        wait_until(lambda: any("O" in c["flags"] for c in r.client_list()),
                   what="redis-cli monitor to attach")
        make_worker("handler = echo\n")
        for jid in ids:
            assert await_end(r, jid)["state"] == "done"
    finally:
        monitor.terminate()
        monitor.wait()
    calls = re.findall(r'"fcall" "(corral_\w+)"', log.read_text(), re.I)
    n = {f: calls.count(f) for f in ("corral_ack", "corral_reserve", "corral_ack_reserve")}
    # Each round of finished runs goes out with the reserve that refills
    # their slots; a plain ack is left for the runs that end while the
    # worker waits for work (the queue empty) and a reserve for rounds
    # with nothing to ack (the first).
    assert n["corral_ack_reserve"] >= 10, n
    assert n["corral_ack"] + n["corral_reserve"] <= n["corral_ack_reserve"] // 4, n
