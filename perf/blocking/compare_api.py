#!/usr/bin/env python3
"""examples/api_server (a JSON API over PostgreSQL through unmodified
libpq) on bobbin fibers against the same code run thread-per-connection,
under wrk at 1,000 connections, cross-checked with ApacheBench (ab, a second
and independent load generator). A private PostgreSQL cluster is started and
stopped (tests/clients/servers.py). Rounds alternate the two modes; medians.

  perf/blocking/compare_api.py --build build-release [--seconds 10] [--rounds 3]
                               [--connections 1000] [--no-results]
--no-results prints the table without touching perf/RESULTS.md (scripts/demo).
"""
import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(here)), "tests", "clients"))
import results_md  # noqa: E402
import wrk  # noqa: E402  (perf/wrk.py)
import ab  # noqa: E402  (perf/ab.py)
import servers  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--seconds", type=int, default=10)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--connections", type=int, default=1000)
ap.add_argument("--carriers", type=int, default=2)
ap.add_argument("--pool", type=int, default=32)
ap.add_argument("--results", default="perf/RESULTS.md")
ap.add_argument("--raw", default="perf/blocking/api_last_run.json")
ap.add_argument("--command", default="scripts/bench --api")
ap.add_argument("--no-results", action="store_true")
ap.add_argument("--no-ab", action="store_true", help="skip the ApacheBench cross-check")
args = ap.parse_args()

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

WRK_SCRIPT = """
math.randomseed(7)
request = function()
  return wrk.format("GET", "/users/" .. math.random(1, 10000))
end
"""


def start_api(conninfo, mode):
    argv = [os.path.join(args.build, "examples", "api_server"), "--conninfo", conninfo, "--port", "0",
            "--pool", str(args.pool)]
    argv += ["--threads"] if mode == "threads" else ["--carriers", str(args.carriers)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"api_server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(m.group(1))


def stop_api(proc):
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    final = re.search(r"^final: (.*)$", out, re.M)
    return dict(kv.split("=", 1) for kv in final.group(1).split()) if final else {}


def run_wrk(port, script):
    out = subprocess.run(["wrk", "-t", "1", "-c", str(args.connections), "-d", f"{args.seconds}s", "--latency",
                          "--timeout", "10s", "-s", script, f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=args.seconds + 60).stdout
    r = wrk.parse(out)
    if r is None:
        raise RuntimeError(f"wrk gave no result on port {port}")
    return {"rps": r["rps"], "p99_ms": r["p99_ms"], "errors": r["errors"]}


def run_ab(port):
    r = ab.run(f"http://127.0.0.1:{port}/users/42", args.connections, requests=max(args.connections * 20, 20000))
    return {"rps": r["rps"], "p99_ms": r["p99_ms"], "errors": r["errors"]}


def measure():
    rows = {"fibers": [], "threads": []}
    with servers.postgres() as conninfo, tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        for r in range(args.rounds):
            for mode in (["fibers", "threads"] if r % 2 == 0 else ["threads", "fibers"]):
                print(f"round {r + 1}/{args.rounds}: {mode}", file=sys.stderr, flush=True)
                proc, port = start_api(conninfo, mode)
                row = {"wrk": run_wrk(port, script.name)}
                if not args.no_ab and r == 0:
                    row["ab"] = run_ab(port)
                row["final"] = stop_api(proc)
                rows[mode].append(row)
                time.sleep(1)
    return rows


def summarize(rows):
    out = {}
    for mode, rs in rows.items():
        out[mode] = {
            "wrk_rps": statistics.median(r["wrk"]["rps"] for r in rs),
            "wrk_p99_ms": statistics.median(r["wrk"]["p99_ms"] for r in rs),
            "wrk_errors": sum(r["wrk"]["errors"] for r in rs),
            "ab_rps": next((r["ab"]["rps"] for r in rs if "ab" in r), None),
            "ab_p99_ms": next((r["ab"]["p99_ms"] for r in rs if "ab" in r), None),
            "ab_errors": sum(r["ab"]["errors"] for r in rs if "ab" in r),
            "pin_events": max(int(r["final"].get("pin_events", 0)) for r in rs),
            "db_errors": sum(int(r["final"].get("db_errors", 0)) for r in rs),
            "rss_peak_mib": statistics.median(int(r["final"].get("rss_peak_kib", 0)) for r in rs) / 1024,
        }
    return out


def render(raw):
    s = raw["summary"]
    f, t = s["fibers"], s["threads"]
    lines = ["## api_server: JSON over PostgreSQL through unmodified libpq (issue 14)", "",
             f"Command: `{raw['command']}`. Machine: {raw['machine']}. Date: {raw['date']}. "
             f"`examples/api_server` with a pool of {raw['pool']} libpq connections to a private PostgreSQL 15 "
             f"(unix socket), `GET /users/<random id>`; bobbin on {raw['carriers']} carriers against the same "
             f"code with one thread per connection. wrk: `-t 1 -c {raw['connections']} -d {raw['seconds']}s`, "
             f"{raw['rounds']} alternating rounds, medians. ab (ApacheBench, keep-alive, "
             f"`-c {raw['connections']}`, `GET /users/42`), one round, as an independent cross-check. Server, "
             "PostgreSQL and load generator share the 2 cores.", "",
             "| server | wrk req/s | wrk p99 | ab req/s | ab p99 | errors | pin events | peak RSS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in (("bobbin fibers", f), ("thread per connection", t)):
        ab = f"{r['ab_rps']:,.0f}" if r["ab_rps"] else "n/a"
        abp = f"{r['ab_p99_ms']:.0f} ms" if r["ab_p99_ms"] is not None else "n/a"
        errs = r["wrk_errors"] + r["ab_errors"] + r["db_errors"]
        lines.append(f"| {name} | {r['wrk_rps']:,.0f} | {r['wrk_p99_ms']:.1f} ms | {ab} | {abp} | {errs} | "
                     f"{r['pin_events'] if name.startswith('bobbin') else 'n/a'} | {r['rss_peak_mib']:.1f} MiB |")
    lines.append("")
    ratio = f["wrk_rps"] / t["wrk_rps"]
    ab_ratio = (f["ab_rps"] / t["ab_rps"]) if f["ab_rps"] and t["ab_rps"] else None
    lines.append(f"bobbin / threads: {ratio:.2f}x under wrk" +
                 (f", {ab_ratio:.2f}x under ab." if ab_ratio else "."))
    return "\n".join(lines)


rows = measure()
raw = {"command": args.command, "machine": results_md.machine(), "date": datetime.date.today().isoformat(),
       "connections": args.connections, "seconds": args.seconds, "rounds": args.rounds, "carriers": args.carriers,
       "pool": args.pool, "rows": rows, "summary": summarize(rows)}
print(render(raw))
if not args.no_results:
    with open(args.raw, "w") as fh:
        json.dump(raw, fh, indent=1)
    results_md.write_section(args.results, "api_server", render(raw))
bad = any(raw["summary"][m]["wrk_errors"] or raw["summary"][m]["ab_errors"] or raw["summary"][m]["db_errors"]
          for m in raw["summary"])
sys.exit(1 if bad else 0)
