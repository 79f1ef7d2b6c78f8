#!/usr/bin/env python3
"""The soak: examples/echo_server and examples/http_server, each under C
connections from tests/soak/soak_load for a while, with a share of the
requests cut off by a reset mid-request (and the connection reopened).

Every report interval it prints one row per server: the load generator's
throughput, p99, errors and injected resets, and the server's RSS (VmRSS),
open descriptors (/proc/PID/fd), fibers alive and stacks mapped (its
--stats line). After the load stops it waits for the server to settle.

Pass, per server:
  - no errors other than the injected resets (a wrong byte, a non-200, a
    close the client did not cause, a failed connect);
  - after the load, fibers alive and open descriptors return to what they
    were before it (within a few seconds);
  - RSS at the last interval is within 5% of RSS at the end of the first
    (growth under load after warm-up would be a leak);
  - the server then stops on SIGTERM with exit 0.

  soak.py --build build --seconds 60 [--connections 10000] [--report-every 10]
          [--results perf/RESULTS.md --command "scripts/soak ..."]   (scripts/soak)
Prints "N passed, M failed" (one check per pass criterion and server).
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import check, finish, rss_kib, start_server, stop_server  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", required=True)
ap.add_argument("--seconds", type=float, default=60, help="load time per server")
ap.add_argument("--connections", type=int, default=10000)
ap.add_argument("--report-every", type=float, default=10)
ap.add_argument("--reset-permille", type=int, default=5)
ap.add_argument("--carriers", type=int, default=2)
ap.add_argument("--results", help="write the table into this perf/RESULTS.md (section \"soak\")")
ap.add_argument("--command", default="scripts/soak", help="the command line to record with --results")
args = ap.parse_args()

LOAD = os.path.join(args.build, "tests", "soak", "soak_load")


def open_fds(pid):
    """Open descriptors, not counting files the process has mapped (the
    symbolizer of a pinning report keeps its ELF objects open, once each)."""
    mapped = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                mapped.add(parts[5].strip())
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") not in mapped:
                n += 1
        except FileNotFoundError:
            pass  # closed meanwhile
    return n


class StatsReader:
    """Keeps the server's last --stats line (stderr) as a dict, and writes
    its other stderr lines (pinning reports, say) to `log_path`."""

    def __init__(self, proc, log_path):
        self.last = {}
        self.tail = []
        self.pin_reports = 0
        self.log = open(log_path, "w")
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            if line.startswith("stats:"):
                self.last = dict(re.findall(r"(\w+)=(\d+)", line))
            else:
                self.log.write(line)
                self.log.flush()
                if line.startswith("bobbin: ") and "pinned" in line:
                    self.pin_reports += 1
                self.tail = (self.tail + [line.rstrip()])[-20:]

    def get(self, key):
        return int(self.last.get(key, -1))


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return cond()


def soak(name, argv, protocol, rows):
    server, port = start_server(argv + ["--port", "0", "--carriers", str(args.carriers), "--stats"])
    pid = server.pid
    log_path = os.path.join(args.build, f"soak-{name}.log")
    stats = StatsReader(server, log_path)
    try:
        wait_for(lambda: stats.get("fibers_alive") >= 0, 5)
        base_fibers, base_fds = stats.get("fibers_alive"), open_fds(pid)
        load = subprocess.Popen([LOAD, "--port", str(port), "--protocol", protocol, "--connections",
                                 str(args.connections), "--seconds", str(args.seconds), "--report-every",
                                 str(args.report_every), "--reset-permille", str(args.reset_permille)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_rss = None
        last_rss = None
        last = {}
        for line in load.stdout:
            r = json.loads(line)
            last = r
            if r["final"] and r["requests"] == 0:
                continue  # the totals line right after the last interval's row
            rss = rss_kib(pid)
            if first_rss is None:
                first_rss = rss
            last_rss = rss
            row = (name, r["t"], r["rps"], r["p99_us"], r["errors"] + r["connect_errors"], r["resets"], rss,
                   open_fds(pid), stats.get("fibers_alive"), stats.get("stacks_mapped"))
            rows.append(row)
            print("  %-12s t=%6.1fs %9.0f req/s p99 %8.0f us errors %d resets %d rss %d KiB fds %d fibers %d "
                  "stacks %d" % row, flush=True)
        load.wait(timeout=60)
        end_rss = rss_kib(pid)
        errors = last.get("errors", -1) + last.get("connect_errors", 0)
        check(f"{name}: no errors but the injected resets", load.returncode == 0 and errors == 0,
              f"{last} {load.stderr.read()[-500:]}")
        check(f"{name}: resets were injected", last.get("resets", 0) > 0, last)
        settled = wait_for(lambda: stats.get("fibers_alive") == base_fibers and open_fds(pid) == base_fds, 15)
        check(f"{name}: fibers and descriptors back to baseline after the load", settled,
              f"fibers {stats.get('fibers_alive')} (was {base_fibers}), fds {open_fds(pid)} (was {base_fds})")
        # Growth under load: the last interval against the first. Not the
        # RSS after the load: 10,000 connections closing at once add to it
        # (0.5-4 MB in scripts/soak runs; 20 MB once in a meson test run,
        # which sets MALLOC_PERTURB_; the cause is not pinned down). It is
        # reported in the "after" line.
        growth = (last_rss - first_rss) / first_rss if first_rss and last_rss else 1
        check(f"{name}: RSS growth under load after the first interval under 5%", growth < 0.05,
              f"{first_rss} -> {last_rss} KiB ({growth:+.1%})")
        rows.append((name, "after", base_fibers, stats.get("fibers_alive"), base_fds, open_fds(pid), end_rss, growth,
                     stats.pin_reports))
        print(f"  {name}: RSS {last_rss} KiB in the last interval, {end_rss} KiB after the load; "
              f"{stats.pin_reports} pinning reports (stderr kept in {log_path})")
    finally:
        rc = stop_server(server, grace=30)
    check(f"{name}: exit 0 on SIGTERM after the soak", rc == 0, f"rc={rc} {stats.tail}")


def markdown(rows):
    out = ["| server | t (s) | req/s | p99 µs | errors | resets (injected) | RSS KiB | fds | fibers alive | "
           "stacks mapped |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    after = []
    for r in rows:
        if r[1] == "after":
            after.append(f"- {r[0]}: RSS growth under load {r[7]:+.1%} from the first interval to the last; after "
                         f"the load, fibers alive {r[3]} (before it: {r[2]}), descriptors {r[5]} (before: {r[4]}), "
                         f"RSS {r[6]:,} KiB; {r[8]} pinning reports during the run.")
            continue
        out.append("| %s | %.0f | %s | %s | %d | %d | %s | %d | %d | %d |" %
                   (r[0], r[1], f"{r[2]:,.0f}", f"{r[3]:,.0f}", r[4], r[5], f"{r[6]:,}", r[7], r[8], r[9]))
    return "\n".join(out + [""] + after) + "\n"


if not os.path.exists(LOAD):
    sys.exit(f"soak: {LOAD} not built")
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if args.connections > hard - 200:  # one descriptor per connection on each side, and a margin
    print(f"soak: RLIMIT_NOFILE allows {hard} descriptors: {hard - 200} connections instead of {args.connections}")
    args.connections = hard - 200
rows = []
examples = os.path.join(args.build, "examples")
root = os.path.join(args.build, "soak-www")
os.makedirs(root, exist_ok=True)
print(f"echo_server: {args.connections} connections, {args.seconds:g} s, {args.reset_permille}/1000 requests reset")
soak("echo_server", [os.path.join(examples, "echo_server")], "echo", rows)
print(f"http_server: {args.connections} connections, {args.seconds:g} s, {args.reset_permille}/1000 requests reset")
soak("http_server", [os.path.join(examples, "http_server"), "--root", root], "http", rows)
if args.results:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "perf"))
    import datetime
    import results_md  # perf/results_md.py
    head = ("### Soak: `scripts/soak` (echo_server and http_server under load, with resets)\n\n"
            f"- Command: `{args.command}`: each server on {args.carriers} carriers, {args.connections:,} connections "
            f"from `tests/soak/soak_load` for {args.seconds:g} s, {args.reset_permille}/1000 requests cut off by a reset "
            "mid-request (the connection is then reopened); server and client share the 2 cores.\n"
            f"- Date: {datetime.date.today().isoformat()}\n- Machine: {results_md.machine()}\n"
            "- Pass: no errors but the injected resets, fibers and descriptors back to their baseline after the load, "
            "RSS growth after the first interval under 5%, exit 0 on SIGTERM. Rows: one per report interval; "
            "stacks mapped counts stacks ever mmap'd (flat: the rest were reused).\n\n")
    results_md.write_section(args.results, "soak", head + markdown(rows))
finish()
