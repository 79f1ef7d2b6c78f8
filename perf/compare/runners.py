"""One run of one workload for `scripts/bench --compare`: an echo server
under a load generator, http_server under wrk, or a perf/micro binary's
bobbin benchmarks. Each returns {figure: value} or {"failed": why}; servers
run on CPU 0 with one carrier and generators on CPU 1, as in
perf/echo/compare_echo.py."""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import echo_cell  # noqa: E402  (perf/echo_cell.py)
import wrk  # noqa: E402  (perf/wrk.py)
from procs import cpu_seconds, server  # noqa: E402  (perf/procs.py)

SERVER_CPU, CLIENT_CPU = "0", "1"


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


def run_echo(exe, generator, conns, seconds, port, env=()):
    """{"msg/s", "server CPU µs/msg", "p99 µs"} for one echo server on 1
    carrier, after a 1 s warm-up. `env`: NAME=VALUE settings for the server."""
    r = echo_cell.run(exe, generator, 1, conns, port, SERVER_CPU, CLIENT_CPU, seconds, 1, env=env)
    if "failed" in r or r.get("errors", 0) or r.get("connect_errors", 0):
        return {"failed": r.get("failed") or f"{r.get('errors', 0)} errors, "
                                              f"{r.get('connect_errors', 0)} connect errors"}
    cpu = r.get("server_cpu_us_per_msg", -1)
    return {"msg/s": r["throughput_rps"], "server CPU µs/msg": cpu if cpu > 0 else None, "p99 µs": r.get("p99_us")}


def run_http(exe, conns, seconds, port, root):
    """{"req/s", "server CPU µs/req", "p99 ms"} for examples/http_server."""
    with server(exe, [exe, "--port", str(port), "--carriers", "1", "--root", root], port, SERVER_CPU) as s:
        c0 = cpu_seconds(s.proc.pid)
        out = subprocess.run(["taskset", "-c", CLIENT_CPU, "wrk", "-t", "1", "-c", str(conns), "-d",
                              f"{seconds:g}s", "--latency", f"http://127.0.0.1:{port}/"], capture_output=True,
                             text=True, timeout=seconds + 120)
        c1 = cpu_seconds(s.proc.pid)
    r = wrk.parse(out.stdout)
    if out.returncode != 0 or r is None:
        return {"failed": out.stderr.strip()[-200:] or f"wrk exit {out.returncode}"}
    if r["errors"] or r["requests"] == 0:
        return {"failed": f"{r['errors']} errors in {r['requests']} requests"}
    return {"req/s": r["requests"] / r["seconds"], "server CPU µs/req": (c1 - c0) * 1e6 / r["requests"],
            "p99 ms": r["p99_ms"]}


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
