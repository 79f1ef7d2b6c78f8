"""One run of one workload for `scripts/bench --compare`: an echo server
under a load generator, http_server under wrk, or a perf/micro binary's
bobbin benchmarks. Each returns {figure: value} or {"failed": why}; servers
run on CPU 0 with one carrier and generators on CPU 1, as in
perf/echo/compare_echo.py."""
import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from procs import cpu_seconds, server  # noqa: E402  (perf/procs.py)

SERVER_CPU, CLIENT_CPU = "0", "1"
ECHO_SIZE = 64


class Ports:
    """A fresh, free port per server: no TIME_WAIT of the last cell in the
    way, and no other program's listener mistaken for the server."""

    def __init__(self, first=19400):
        self.port = first

    def next(self):
        while True:
            self.port += 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                    return self.port
                except OSError:
                    continue


def run_echo(exe, generator, conns, seconds, port):
    """{"msg/s", "server CPU µs/msg", "p99 µs"} for one echo server."""
    with server(exe, [exe, "--port", str(port), "--threads", "1"], port, SERVER_CPU) as s:
        cmd = ["taskset", "-c", CLIENT_CPU, generator, "--port", str(port), "--connections", str(conns),
               "--size", str(ECHO_SIZE), "--duration", str(seconds), "--warmup", "1", "--server-pid",
               str(s.proc.pid)]
        if os.path.basename(generator) == "echo_load":
            cmd.append("--json")  # go_echoload writes JSON only
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"failed": (out.stderr.strip()[-200:] or f"exit {out.returncode}")}
    if out.returncode != 0 or r.get("errors", 0) or r.get("connect_errors", 0):
        return {"failed": f"exit {out.returncode}, {r.get('errors', 0)} errors, "
                          f"{r.get('connect_errors', 0)} connect errors"}
    cpu = r.get("server_cpu_us_per_msg", -1)
    return {"msg/s": r["throughput_rps"], "server CPU µs/msg": cpu if cpu > 0 else None, "p99 µs": r.get("p99_us")}


def parse_wrk(text):
    """wrk --latency's report: (requests, seconds, p99 ms, errors), or None."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    requests = int(m.group(1))
    secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    p = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(p.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[p.group(2)] if p else None
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        errors += int(n.group(1))
    return requests, secs, p99, errors


def run_http(exe, conns, seconds, port, root):
    """{"req/s", "server CPU µs/req", "p99 ms"} for examples/http_server."""
    with server(exe, [exe, "--port", str(port), "--carriers", "1", "--root", root], port, SERVER_CPU) as s:
        c0 = cpu_seconds(s.proc.pid)
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t", "1", "-c", str(conns), "-d",
                              f"{seconds:g}s", "--latency", f"http://127.0.0.1:{port}/"], capture_output=True,
                             text=True, timeout=seconds + 120)
        c1 = cpu_seconds(s.proc.pid)
    parsed = parse_wrk(out.stdout)
    if out.returncode != 0 or parsed is None:
        return {"failed": out.stderr.strip()[-200:] or f"wrk exit {out.returncode}"}
    requests, secs, p99, errors = parsed
    if errors or requests == 0:
        return {"failed": f"{errors} errors in {requests} requests"}
    return {"req/s": requests / secs, "server CPU µs/req": (c1 - c0) * 1e6 / requests, "p99 ms": p99}


def run_micro(exe, min_time):
    """Every bobbin benchmark of one perf/micro binary: {name: ns per item},
    the median of 3 repetitions. A single run of a few hundred milliseconds
    moved by up to 16% between two runs of the same binary here; the median
    of three steadies each round's figure, and the rounds give the spread.
    A benchmark that reports an error (skynet's "wrong sum") makes the run
    a failed one, with the other figures kept."""
    out = subprocess.run([exe, "--benchmark_filter=bobbin", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}", "--benchmark_repetitions=3",
                          "--benchmark_report_aggregates_only=true"], capture_output=True, text=True, timeout=900)
    try:
        benchmarks = json.loads(out.stdout)["benchmarks"]
    except (ValueError, KeyError):
        return {"failed": out.stderr.strip()[-200:] or f"exit {out.returncode}"}
    figures, errors = {}, []
    for b in benchmarks:
        name = b.get("run_name", b["name"]).removesuffix("/real_time")
        if b.get("error_occurred"):
            errors.append(f"{name}: {b.get('error_message', 'error')}")
            continue
        ips = b.get("items_per_second")
        if b.get("aggregate_name", "median") == "median" and ips:
            figures[name] = 1e9 / ips
    if out.returncode != 0 or errors:
        figures["failed"] = "; ".join(errors)[:200] or f"exit {out.returncode}"
    return figures
