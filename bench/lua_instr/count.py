"""The redis.call()s per job of the queue's cycle, per command, for each row
of bench/lua_instr/run.sh (without and with a service, one call at a time
and batched), from INFO commandstats around cycle.py's cycle on a private
redis-server (no valgrind: a few seconds).
usage: /usr/bin/python3 bench/lua_instr/count.py LUA_DIR [JOBS]"""
import os
import subprocess
import sys
import tempfile
import time

import redis

import cycle

OUTER = ("fcall", "flushall", "function|load", "config|resetstat", "info")


def main():
    d = sys.argv[1]
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    w = tempfile.mkdtemp(prefix="corral-lua-count.")
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", w + "/s", "--save", "",
                          "--appendonly", "no", "--dir", w, "--logfile", w + "/log"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(w + "/s") and time.monotonic() < deadline:
            time.sleep(0.05)
        r = redis.Redis(unix_socket_path=w + "/s", decode_responses=True)
        text = cycle.library(d)
        for svc in (0, 1):
            for batch in (0, 1):
                cycle.run(r, text, 64, svc, batch)
                r.config_resetstat()
                cycle.run(r, text, jobs, svc, batch)
                st = r.info("commandstats")
                rows = sorted(((v["calls"] / jobs, k.replace("cmdstat_", ""))
                               for k, v in st.items()), reverse=True)
                rows = [(n, name) for n, name in rows if name not in OUTER and n >= 0.005]
                print("service %-3s %-6s %5.2f per job: %s" % (
                    "yes" if svc else "no", "32" if batch else "1 each", sum(n for n, _ in rows),
                    ", ".join("%s %.2f" % (name, n) for n, name in rows)))
    finally:
        p.terminate()
        p.wait()
        subprocess.run(["rm", "-rf", w], check=False)


if __name__ == "__main__":
    main()
