#!/usr/bin/env python3
"""cpp-httplib (Debian's libcpp-httplib-dev, unmodified) three ways, the same
binary (examples/httplib_server): a fiber per connection on bobbin (2
carriers), cpp-httplib's default pool (8 threads, its own default), and a pool
of one thread per connection (as many threads as connections). At 100, 1,000
and 10,000 keep-alive connections, on a handler that answers at once
(/hello) and one that sleeps 10 ms in std::this_thread::sleep_for
(/sleep?ms=10, a stand-in for a blocking backend call); TCP_NODELAY on. Every
cell is a fresh server; rounds alternate the order of the servers; medians.
Cross-checks at 1,000 connections: ApacheBench (ab -k, a second, independent
load generator) on both handlers, and wrk with TCP_NODELAY off (Nagle).
The server's peak RSS is beside each figure.

  perf/servers/compare_httplib.py --build build-release [--seconds 5]
      [--rounds 2] [--connections 100,1000,10000] [--no-results]

Targets (issue 31): fibers at least 1.2x the thread-per-connection pool at
1,000 connections on both handlers, and 10,000 connections served without a
socket error, next to the thread-per-connection pool's RSS."""
import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
import results_md  # noqa: E402
import wrk  # noqa: E402  (perf/wrk.py)

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--seconds", type=int, default=5)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--connections", default="100,1000,10000")
ap.add_argument("--carriers", type=int, default=2)
ap.add_argument("--results", default="perf/RESULTS.md")
ap.add_argument("--raw", default="perf/servers/httplib_last_run.json")
ap.add_argument("--command", default="scripts/bench --servers")
ap.add_argument("--no-results", action="store_true")
args = ap.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

SERVERS = ["fibers", "default pool", "thread per connection"]
HANDLERS = {"instant": "/hello", "10 ms": "/sleep?ms=10"}
TARGET = 1.2


def server_argv(server, connections, nodelay=True):
    argv = [os.path.join(args.build, "examples", "httplib_server"), "--port", "0"]
    if server == "fibers":
        argv += ["--carriers", str(args.carriers)]
    elif server == "default pool":
        argv += ["--threads", "8"]
    else:
        argv += ["--threads", str(connections)]
    if not nodelay:
        argv.append("--no-nodelay")
    return argv


def start(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"httplib_server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(m.group(1))


def stop(proc):
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # The default pool with thousands of connections waiting: its
        # threads finish their keep-alive connections one after another.
        proc.kill()
        out, _ = proc.communicate()
    final = re.search(r"^final: (.*)$", out, re.M)
    return dict(kv.split("=", 1) for kv in final.group(1).split()) if final else {}


def run_wrk(port, path, connections):
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{args.seconds}s", "--latency",
                          "--timeout", "5s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=args.seconds + 120).stdout
    r = wrk.parse(out)
    if r is None:
        raise RuntimeError(f"wrk gave no result on port {port}: {out[-300:]}")
    return {"rps": r["rps"], "p99_ms": r["p99_ms"], "errors": r["errors"]}


def run_ab(port, path, connections):
    n = max(connections * 20, 20000)
    out = subprocess.run(["ab", "-q", "-k", "-c", str(connections), "-n", str(n), "-s", "30",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=600).stdout
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    if not rps:
        return {"rps": 0.0, "p99_ms": None, "errors": n}
    p99 = re.search(r"\s99%\s+(\d+)", out)
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) if p99 else None,
            "errors": failed + (int(non2xx.group(1)) if non2xx else 0)}


def cell(server, connections, run, nodelay=True):
    proc, port = start(server_argv(server, connections, nodelay))
    time.sleep(0.5 if server != "thread per connection" else 0.5 + connections / 5000)  # threads started
    try:
        result = run(port)
    finally:
        final = stop(proc)
    # A server that had to be killed (or printed no counters) has no RSS,
    # served count or pin events: None, left out of the figures, not zero.
    result["killed"] = not final
    result["rss_peak_mib"] = int(final["rss_peak_kib"]) / 1024 if "rss_peak_kib" in final else None
    result["served"] = int(final["connections_served"]) if "connections_served" in final else None
    result["pin_events"] = int(final["pin_events"]) if "pin_events" in final else None
    time.sleep(1)
    return result


def measure():
    conns = [int(c) for c in args.connections.split(",")]
    raw = {"wrk": {}, "ab": {}, "nagle": {}}
    for r in range(args.rounds):
        order = SERVERS if r % 2 == 0 else list(reversed(SERVERS))
        for c in conns:
            for hname, path in HANDLERS.items():
                for server in order:
                    print(f"round {r + 1}/{args.rounds}: {server}, {c} connections, {hname}", file=sys.stderr,
                          flush=True)
                    key = f"{server}|{c}|{hname}"
                    raw["wrk"].setdefault(key, []).append(cell(server, c, lambda p: run_wrk(p, path, c)))
    if 1000 in conns:
        for hname, path in HANDLERS.items():
            for server in ("fibers", "thread per connection"):
                print(f"ab: {server}, 1000 connections, {hname}", file=sys.stderr, flush=True)
                raw["ab"][f"{server}|{hname}"] = cell(server, 1000, lambda p: run_ab(p, path, 1000))
        for server in ("fibers", "thread per connection"):
            print(f"nagle: {server}, 1000 connections, instant", file=sys.stderr, flush=True)
            raw["nagle"][server] = cell(server, 1000, lambda p: run_wrk(p, "/hello", 1000), nodelay=False)
    return raw


def med(cells, field):
    vals = [c[field] for c in cells if c.get(field) is not None]
    return statistics.median(vals) if vals else None


def render(raw):
    m = raw["measured"]
    conns = sorted({int(k.split("|")[1]) for k in m["wrk"]})
    lines = ["## cpp-httplib on fibers against its own thread pools (issue 31)", "",
             f"Command: `{raw['command']}`. Machine: {raw['machine']}. Date: {raw['date']}. Commit: "
             f"{raw['commit']}. `examples/httplib_server` (cpp-httplib {raw['httplib']}, unmodified, Debian's "
             f"shared library): a fiber per connection on {raw['carriers']} carriers; cpp-httplib's default pool "
             "(8 threads); a pool of one thread per connection. wrk `-t 2 -c N "
             f"-d {raw['seconds']}s --timeout 5s`, keep-alive, TCP_NODELAY on, {raw['rounds']} rounds in "
             "alternating order, a fresh server per cell, medians. Server and load generator share the 2 cores. "
             "Connections served: how many of wrk's connections got at least one reply (the server counts client "
             "ports; the fewest of the rounds). Errors: wrk's socket errors (connect, read, write, timeout) and "
             "non-2xx replies. RSS: the server's peak.", ""]
    lines += ["| connections | handler | fibers req/s | default pool (8) | thread per connection | "
              "fibers / thread per connection | connections served (fibers / 8 / per conn.) | "
              "errors (fibers / 8 / per conn.) | peak RSS (fibers / 8 / per conn.) |",
              "|---:|---|---:|---:|---:|---:|---|---|---|"]
    verdicts = []
    for c in conns:
        for hname in HANDLERS:
            cells = {s: m["wrk"].get(f"{s}|{c}|{hname}", []) for s in SERVERS}
            rps = {s: med(cells[s], "rps") for s in SERVERS}
            errs = {s: sum(x["errors"] for x in cells[s]) for s in SERVERS}
            rss = {s: med(cells[s], "rss_peak_mib") for s in SERVERS}
            served = {s: min((x["served"] for x in cells[s] if x.get("served") is not None), default=None)
                      for s in SERVERS}
            killed = {s: sum(1 for x in cells[s] if x.get("killed")) for s in SERVERS}

            def fmt_served(srv):
                v = served[srv]
                text = f"{v:,}" if v is not None else "n/a"
                return text + (f" ({killed[srv]} killed)" if killed[srv] else "")

            def fmt_rss(srv):
                return f"{rss[srv]:.0f}" if rss[srv] is not None else "n/a"
            ratio = rps["fibers"] / rps["thread per connection"] if rps["thread per connection"] else None
            lines.append(f"| {c:,} | {hname} | {rps['fibers']:,.0f} | {rps['default pool']:,.0f} | "
                         f"{rps['thread per connection']:,.0f} | {ratio:.2f}x | "
                         f"{fmt_served('fibers')} / {fmt_served('default pool')} / "
                         f"{fmt_served('thread per connection')} | "
                         f"{errs['fibers']} / {errs['default pool']} / {errs['thread per connection']} | "
                         f"{fmt_rss('fibers')} / {fmt_rss('default pool')} / {fmt_rss('thread per connection')} MiB |")
            if c == 1000:
                verdicts.append(f"1,000 connections, {hname} handler: {ratio:.2f}x the thread-per-connection "
                                f"pool (target at least {TARGET}x): {results_md.verdict(ratio, TARGET)}")
            if c == 10000:
                all_served = served["fibers"] == c and errs["fibers"] == 0 and not killed["fibers"]
                verdicts.append(f"10,000 connections, {hname} handler: fibers served {fmt_served('fibers')} "
                                f"connections (in every round) with {errs['fibers']} errors (target: all, none: "
                                f"{'met' if all_served else '**missed**'}); peak RSS {fmt_rss('fibers')} MiB "
                                f"against {fmt_rss('thread per connection')} MiB for the thread-per-connection "
                                f"pool, which served {fmt_served('thread per connection')}")
    pins = max((x["pin_events"] or 0 for k, v in m["wrk"].items() if k.startswith("fibers|") for x in v),
               default=0)
    lines += ["", "Pin events on the fiber server, at most in one cell: " + str(pins) + ".", ""]
    if m["ab"]:
        lines += ["Cross-check at 1,000 connections with ApacheBench (`ab -k -c 1000`, one round) and with "
                  "Nagle's algorithm left on (wrk, `--no-nodelay`, one round):", "",
                  "| load | handler | fibers req/s | thread per connection | ratio | errors (fibers / threads) |",
                  "|---|---|---:|---:|---:|---|"]
        for hname in HANDLERS:
            f, t = m["ab"][f"fibers|{hname}"], m["ab"][f"thread per connection|{hname}"]
            ratio = f["rps"] / t["rps"] if t["rps"] else 0
            lines.append(f"| ab -k | {hname} | {f['rps']:,.0f} | {t['rps']:,.0f} | {ratio:.2f}x | "
                         f"{f['errors']} / {t['errors']} |")
        f, t = m["nagle"]["fibers"], m["nagle"]["thread per connection"]
        ratio = f["rps"] / t["rps"] if t["rps"] else 0
        lines.append(f"| wrk, Nagle on | instant | {f['rps']:,.0f} | {t['rps']:,.0f} | {ratio:.2f}x | "
                     f"{f['errors']} / {t['errors']} |")
        lines.append("")
    lines += ["Targets:", ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines)


def httplib_version():
    r = subprocess.run(["pkg-config", "--modversion", "cpp-httplib"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def commit():
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return (r.stdout.strip() or "unknown") + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


measured = measure()
raw = {"command": args.command, "machine": results_md.machine(), "date": datetime.date.today().isoformat(),
       "commit": commit(), "httplib": httplib_version(), "seconds": args.seconds, "rounds": args.rounds,
       "carriers": args.carriers, "measured": measured}
print(render(raw))
if not args.no_results:
    with open(args.raw, "w") as fh:
        json.dump(raw, fh, indent=1)
    results_md.write_section(args.results, "httplib", render(raw))
