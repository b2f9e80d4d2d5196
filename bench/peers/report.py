"""Writes docs/benchmarks.md and docs/img/peers-*.svg from
bench/peers/results.json (called by run.py; `run.py --report-only` alone)."""
import os
import subprocess
import tempfile

ORDER = ["corral", "rq", "celery", "sidekiq", "bullmq"]
SETUP = {
    "corral": "corrald, min = max = 1 worker process, concurrency = 4, echo handler",
    "rq": "4 × `rq worker` (RQ 1.13 has no pool), each forking a work horse per job (default)",
    "celery": "`celery worker -c 4 -P prefork`: a main process + 4 pool children, Redis broker, "
              "no result backend",
    "sidekiq": "`sidekiq -c 4`: one process, 4 threads",
    "bullmq": "one Node process, `new Worker(..., {concurrency: 4})`",
}
NOTE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")


def fmt(v, unit="", nd=0):
    if v is None:
        return "not measured yet"
    return f"{v:,.{nd}f}{unit}"


def peers(res):
    return [p for p in ORDER if p in res["peers"]]


def ms(us):
    return None if us is None else us / 1000


def get(d, *path):
    for k in path:
        if d is None:
            return None
        if isinstance(k, int):
            d = d[k] if isinstance(d, list) and len(d) > k else None
        else:
            d = d.get(k) if isinstance(d, dict) else None
    return d


def crash_text(c):
    if not c:
        return "not measured yet"
    parts = []
    for v in c:
        if v["rerun_s"] is None:
            why = ", the peer holds no copy of it" if v.get("gone") else ""
            parts.append(f"{v['variant']}: **not run again** (watched {v['waited_s']} s{why})")
        else:
            label = {"settled": "worker up > 10 s"}.get(v["variant"], v["variant"])
            t = v["rerun_s"]
            parts.append(f"{label}: run again after {t:.3f} s" if t < 0.1 else
                         f"{label}: run again after {t:.1f} s")
    return "; ".join(parts)


def outage_text(o):
    if not o:
        return "not measured yet"
    t = f"{o['failed_calls']:,} failed calls, {o['dead']:,} of {o['n']:,} dead, "
    f = o["finish_after_recovery_s"]
    if f is None:
        left = o["n"] - o["done"] - o["dead"]
        t += f"{left:,} still waiting {o['limit_s']} s after the start"
    elif f < 0:
        t += f"all ended {-f:.0f} s before the recovery"
    else:
        t += f"all ended {f:.1f} s after the recovery"
    return t


def burst_text(b):
    if not b:
        return "not measured yet"
    parts = []
    for x in b:
        who = (f"2..20 (peak {x['peak_slots']})" if x["slots"] == "2..20" else f"fixed {x['slots']}")
        runs = x.get("runs", [])
        of = f" (median of {len(runs)})" if len(runs) > 1 else ""
        parts.append(f"{who}: backlog gone {x['backlog_gone_s']:.1f} s, {x['slot_s']:.0f} slot-s{of}")
    return "; ".join(parts)


def mem_text(m, which):
    if not m:
        return "not measured yet"
    if which == "sup":
        return "none" if not m["supervisor"] else f"{m['supervisor'][0] / 1024:.1f}"
    ws = m["workers"]
    return f"{sum(w[0] for w in ws) / len(ws) / 1024:.1f} × {len(ws)}"


def plot(res, img):
    if not shutil_which("gnuplot"):
        return []
    os.makedirs(img, exist_ok=True)
    made = []
    ps = peers(res)
    specs = [
        ("peers-drain.svg", "Row 1: drain of pre-enqueued no-op jobs, 4 slots (jobs/s, log scale, higher is better)",
         [[get(res["peers"][p], "drain", "median")] for p in ps], ["jobs/s"]),
        ("peers-latency.svg", "Row 3: enqueue-to-start latency, idle workers (ms, log scale, lower is better)",
         [[ms(get(res["peers"][p], "latency", "p50_us")), ms(get(res["peers"][p], "latency", "p99_us"))]
          for p in ps], ["p50", "p99"]),
        ("peers-memory.svg", "Row 4: idle RSS for 4 slots, all processes (MiB, lower is better)",
         [[(get(res["peers"][p], "mem", "total_rss") or 0) / 1024 or None,
           (get(res["peers"][p], "mem", "total_pss") or 0) / 1024 or None] for p in ps], ["RSS", "PSS"]),
        ("peers-outage.svg", "Row 6: AI-service outage, 503 for 30 s (lower is better)",
         [[get(res["peers"][p], "outage", "failed_calls"), get(res["peers"][p], "outage", "dead")]
          for p in ps], ["failed calls (wasted)", "dead jobs"]),
    ]
    for name, title, rows, cols in specs:
        if all(v is None for r in rows for v in r):
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as f:
            for p, r in zip(ps, rows):
                f.write(p + " " + " ".join("0" if v is None else f"{v:.4f}" for v in r) + "\n")
            dat = f.name
        logscale = "set logscale y\n" if "log scale" in title else "set yrange [0:*]\n"
        usings = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title '{c}'" for i, c in enumerate(cols))
        script = (f"set terminal svg size 720,400 font 'sans,12' background '#ffffff'\n"
                  f"set output '{os.path.join(img, name)}'\nset title \"{title}\"\n"
                  f"set style data histograms\nset style histogram clustered gap 1\n"
                  f"set style fill solid 0.8 border -1\nset grid ytics\nset key below horizontal\n"
                  f"{logscale}plot {usings}\n")
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
        os.unlink(dat)
        made.append(name)
    return made


def shutil_which(x):
    import shutil
    return shutil.which(x)


def write(res, doc, img):
    made = plot(res, img)
    ps = peers(res)
    v = res.get("versions", {})
    m = res.get("machine", {})
    L = []
    L.append("# corral beside RQ, Celery, Sidekiq and BullMQ")
    L.append("")
    L.append("Generated by `make bench-peers` (`bench/peers/run.py`; the raw figures are in "
             "`bench/peers/results.json`). Do not edit by hand: edit `bench/peers/report.py` "
             "or `bench/peers/notes.md` and run `/usr/bin/python3 bench/peers/run.py --report-only`.")
    L.append("")
    L.append(f"**Taken on a shared 2-core VM** (other engineers were building and testing on it at "
             f"the same time), {m.get('cpus', '?')} CPUs ({m.get('cpu', '?')}), "
             f"{m.get('mem_mib', 0) / 1024:.0f} GiB, Linux {m.get('kernel', '?')}. The runs the "
             f"figures come from (a later run replaces the rows and peers it measured):")
    L.append("")
    for r in res.get("runs", []):
        what = ("all rows and peers" if set(r["rows"]) >= set("1234567") and len(r["peers"]) >= 5
                else f"row{'s' if len(r['rows']) > 1 else ''} {', '.join(r['rows'])} for {', '.join(r['peers'])}")
        L.append(f"- {r['date']}: `{r['command']}` ({what}; load average {r['load']} at the start"
                 + (f", {r['minutes']} min" if r.get("minutes") else "") + ")"
                 + (" — **development sizes (`--small`), not the full configuration**" if r["small"] else ""))
    L.append("")
    L.append("Versions: corral " + v.get("corral", "?").replace("corrald ", "") +
             f" (built from the shared working tree at {v.get('corral_commit', '?')}); RQ {v.get('python3-rq')} (Debian); "
             f"Celery {v.get('python3-celery')} with kombu {v.get('python3-kombu')} (Debian); "
             f"redis-py {v.get('python3-redis')}; Sidekiq {v.get('ruby-sidekiq')} on Ruby "
             f"{v.get('ruby')} with ruby-redis {v.get('ruby-redis')} (Debian); BullMQ "
             f"{v.get('bullmq')} (npm) on Node {v.get('node')}; redis-server {v.get('redis-server')}.")
    L.append("")
    L.append("All five run against one private redis-server (TCP on 127.0.0.1, no persistence), "
             "flushed between runs, each in its idiomatic setup for 4 execution slots:")
    L.append("")
    for p in ps:
        L.append(f"- **{p}**: {SETUP[p]}")
    L.append("")
    L.append("## Table")
    L.append("")
    hdr = "| row | " + " | ".join(ps) + " |"
    L.append(hdr)
    L.append("|---" * (len(ps) + 1) + "|")

    def row(label, f):
        L.append(f"| {label} | " + " | ".join(f(res["peers"][p]) for p in ps) + " |")

    n1 = next((get(res["peers"][p], "drain", "n") for p in ps if get(res["peers"][p], "drain")), None)
    r1 = next((len(get(res["peers"][p], "drain", "runs")) for p in ps if get(res["peers"][p], "drain")), None)
    # A peer whose row 1 is from an earlier run of another size says so.
    row(f"1. drain, {n1 or '?'} no-op jobs, 4 slots, jobs/s (median of {r1 or '?'})",
        lambda d: fmt(get(d, "drain", "median")) +
        (f" ({get(d, 'drain', 'n'):,} jobs, {len(get(d, 'drain', 'runs'))} runs, an earlier run)"
         if get(d, "drain", "n") not in (None, n1) else ""))
    w1 = next((get(res["peers"][p], "drain_wide") for p in ps if get(res["peers"][p], "drain_wide")), None)
    if w1:
        row(f"1. drain, {w1['n']} no-op jobs, one process with {w1['slots']} slots, jobs/s "
            f"(median of {len(w1['runs'])})",
            lambda d: fmt(get(d, "drain_wide", "median")) if get(d, "drain_wide") else "not run")
    row("2. enqueue, one call per job, jobs/s", lambda d: fmt(get(d, "enqueue", "single")))
    row("2. enqueue in bulk, jobs/s",
        lambda d: ("no bulk API" if get(d, "enqueue") and get(d, "enqueue", "bulk") is None
                   else fmt(get(d, "enqueue", "bulk"))))
    row("3. enqueue-to-start p50, ms", lambda d: fmt(ms(get(d, "latency", "p50_us")), nd=2))
    row("3. enqueue-to-start p99, ms", lambda d: fmt(ms(get(d, "latency", "p99_us")), nd=2))
    row("4. idle RSS, supervising process, MiB", lambda d: mem_text(get(d, "mem"), "sup"))
    row("4. idle RSS per worker process, MiB", lambda d: mem_text(get(d, "mem"), "w"))
    row("4. idle RSS for 4 slots, all processes, MiB",
        lambda d: fmt((get(d, "mem", "total_rss") or 0) / 1024 or None, nd=1))
    row("4. idle PSS for 4 slots (shared pages split), MiB",
        lambda d: fmt((get(d, "mem", "total_pss") or 0) / 1024 or None, nd=1))
    row("4. idle private memory for 4 slots (pages no other process maps), MiB",
        lambda d: fmt((get(d, "mem", "total_private") or 0) / 1024 or None, nd=1))
    row("5. 20 s job, executing process SIGKILLed", lambda d: crash_text(get(d, "crash")))
    o = next((get(res["peers"][p], "outage") for p in ps if get(res["peers"][p], "outage")), None)
    row(f"6. AI-service outage ({o['n'] if o else '?'} jobs, 503 for the first {o['outage_s'] if o else '?'} s)",
        lambda d: outage_text(get(d, "outage")))
    b = next((get(res["peers"][p], "burst", 0) for p in ps if get(res["peers"][p], "burst")), None)
    row(f"7. burst of 300 ms jobs ({b['phases'].replace(',', ', ') if b else '?'} jobs/s:s), "
        f"until the backlog is gone and slot-seconds spent", lambda d: burst_text(get(d, "burst")))
    L.append("")
    for name in made:
        L.append(f"![{name}](img/{name})")
        L.append("")
    if os.path.exists(NOTE_FILE):
        with open(NOTE_FILE) as f:
            L.append(f.read().rstrip())
        L.append("")
    os.makedirs(os.path.dirname(doc), exist_ok=True)
    with open(doc, "w") as f:
        f.write("\n".join(L))
