#!/usr/bin/env python3
"""The echo protocol in six programming models, side by side under one load
generator (perf/load/echo_load): bobbin fibers (on io_uring, and on its
epoll backend as where io_uring is refused), C++20 coroutines on the same
io_uring, Asio coroutines on its io_uring and its epoll backend, a raw
io_uring callback loop, thread-per-connection and Go.

Every (server threads, connections) cell runs each server once per round;
rounds are interleaved and the server order rotates between rounds, so slow
phases of a noisy machine hit every server alike. Tables give medians.

Pinning (2-core machine): with 1 server thread the server runs on CPU 0 and
the load generator on CPU 1. With 2 server threads the server gets CPUs 0-1
and shares CPU 1 with the load generator: those rows are what two cores give
to server and client together.

Each server comparison on 1 thread is then run again under a second,
independent load generator (perf/go/echoload, Go's netpoller instead of
echo_load's epoll loop, built with Debian's Go), and the two generators'
bobbin-to-peer ratios are set side by side.

Writes perf/echo/last_run.json, the "echo" section of perf/RESULTS.md and the
charts perf/charts/echo_throughput.png and perf/charts/echo_p99.png.

  perf/echo/compare_echo.py --build build-release [--rounds 3] [--seconds 3] [--quick]
  perf/echo/compare_echo.py --render-only      (re-render from last_run.json)
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

PERF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PERF)
import echo_cell  # noqa: E402  (perf/echo_cell.py)
import go_build  # noqa: E402  (perf/go_build.py)
import results_md  # noqa: E402  (perf/results_md.py)

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=3)
ap.add_argument("--warmup", type=float, default=1)
ap.add_argument("--quick", action="store_true", help="one round of 1 s per cell (about 2 minutes)")
ap.add_argument("--render-only", action="store_true")
ap.add_argument("--results", default=os.path.join(PERF, "RESULTS.md"))
ap.add_argument("--command", default="scripts/bench --echo")
args = ap.parse_args()
if args.quick:
    args.rounds, args.seconds, args.warmup = 1, 1, 0.3

LAST_RUN = os.path.join(PERF, "echo", "last_run.json")
CHARTS = os.path.join(PERF, "charts")
CONNECTIONS = [100, 1000, 10000]
THREADS = [1, 2]
SIZE = 64
# (key, label, executable); bobbin first, the peers in the order of the issue.
SERVERS = [
    ("bobbin", "bobbin fibers", "bobbin_echo"),
    ("bobbin_epoll", "bobbin fibers, epoll backend", "bobbin_echo"),
    ("uring_raw", "raw io_uring callback loop", "uring_raw_echo"),
    ("uring_coro", "C++20 coroutines on io_uring", "uring_coro_echo"),
    ("asio_uring", "Asio coroutines, io_uring backend", "asio_uring_echo"),
    ("asio_epoll", "Asio coroutines, epoll backend", "asio_epoll_echo"),
    ("threads", "thread per connection", "thread_echo"),
    ("go", "Go, goroutine per connection (net)", "go_echo"),
]
# bobbin on 1 carrier against each peer, in messages per second (issue 5).
TARGETS = {"uring_raw": 0.9, "uring_coro": 1.0, "asio_uring": 1.0, "asio_epoll": 1.5, "threads": 1.0}
# bobbin on its epoll backend against the peers that wait on epoll too
# (issue 36), both generators.
EPOLL_TARGETS = {"asio_epoll": 1.0, "go": 1.0}
# Settings a server runs with (env(1)).
SERVER_ENV = {"bobbin_epoll": ("BOBBIN_BACKEND=epoll",)}
CPUS = {1: ("0", "1"), 2: ("0,1", "1")}  # server CPUs, load generator CPUs


def run_cell(key, exe, threads, conns, port, generator="echo_load"):
    server_cpus, client_cpus = CPUS[threads]
    return echo_cell.run(exe, os.path.join(args.build, "perf", generator), threads, conns, port, server_cpus,
                         client_cpus, args.seconds, args.warmup, SIZE, env=SERVER_ENV.get(key, ()))


def build_go_peer():
    """perf/go/echo and perf/go/echoload (perf/go_build.py); a missing Go
    skips the Go peer and the cross-check, which say so."""
    for exe, pkg in (("go_echo", "./echo"), ("go_echoload", "./echoload")):
        go_build.build(os.path.join(args.build, "perf", exe), pkg)


def measure():
    if shutil.which("taskset") is None:
        sys.exit("compare_echo: taskset not found (util-linux)")
    build_go_peer()
    available = []
    for key, label, exe in SERVERS:
        path = os.path.join(args.build, "perf", exe)
        if os.path.exists(path):
            available.append((key, label, path))
        else:
            print(f"compare_echo: {path} not built, skipped", file=sys.stderr)
    runs = {}  # "key/threads/conns" -> [result]
    port = 17300
    for rnd in range(args.rounds):
        for threads in THREADS:
            for conns in CONNECTIONS:
                shift = rnd % len(available)
                for key, _, path in available[shift:] + available[:shift]:
                    port += 1  # a fresh port: no TIME_WAIT from the last cell in the way
                    r = run_cell(key, path, threads, conns, port)
                    runs.setdefault(f"{key}/{threads}/{conns}", []).append(r)
                    print(f"round {rnd + 1} threads={threads} C={conns} {key}: "
                          f"{r.get('throughput_rps', 0):,.0f} msg/s p99 {r.get('p99_us', 0):,.0f} us "
                          f"cpu {r.get('server_cpu_us_per_msg', -1):.2f} us/msg"
                          + (f" FAILED {r['failed']}" if "failed" in r else ""), file=sys.stderr, flush=True)
    # The cross-check: the same servers on 1 thread under the second,
    # independent generator (perf/go/echoload), interleaved the same way.
    cross = {}
    if os.path.exists(os.path.join(args.build, "perf", "go_echoload")):
        for rnd in range(args.rounds):
            for conns in CONNECTIONS:
                shift = rnd % len(available)
                for key, _, path in available[shift:] + available[:shift]:
                    port += 1
                    r = run_cell(key, path, 1, conns, port, generator="go_echoload")
                    cross.setdefault(f"{key}/1/{conns}", []).append(r)
                    print(f"cross-check round {rnd + 1} C={conns} {key}: {r.get('throughput_rps', 0):,.0f} msg/s "
                          f"cpu {r.get('server_cpu_us_per_msg', -1):.2f} us/msg"
                          + (f" FAILED {r['failed']}" if "failed" in r else ""), file=sys.stderr, flush=True)
    else:
        print("compare_echo: go_echoload not built (no Go); the cross-check is skipped", file=sys.stderr)
    data = {"date": datetime.date.today().isoformat(), "machine": results_md.machine(), "command": args.command,
            "rounds": args.rounds, "seconds": args.seconds, "size": SIZE, "servers": [s[:2] for s in available],
            "runs": runs, "cross": cross}
    with open(LAST_RUN, "w") as f:
        json.dump(data, f, indent=1)
    return data


def median_of(data, key, threads, conns, field, runs="runs"):
    rows = [r for r in data.get(runs, {}).get(f"{key}/{threads}/{conns}", []) if field in r and "failed" not in r]
    return statistics.median(r[field] for r in rows) if rows else None


def errors_of(data, key, threads, conns):
    rows = data["runs"].get(f"{key}/{threads}/{conns}", [])
    bad = sum(r.get("errors", 0) + r.get("connect_errors", 0) for r in rows)
    failed = sum(1 for r in rows if "failed" in r)
    return "none" if bad == 0 and failed == 0 else f"{bad} in {failed} of {len(rows)} runs"


def charts(data):
    """PNG charts with gnuplot: throughput and p99 against connections."""
    if shutil.which("gnuplot") is None:
        return "gnuplot not installed (scripts/bootstrap --bench installs it): no charts"
    os.makedirs(CHARTS, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="bobbin_charts_")
    servers = data["servers"]
    for threads in THREADS:
        for key, _ in servers:
            with open(os.path.join(tmp, f"{key}_{threads}.dat"), "w") as f:
                for conns in CONNECTIONS:
                    rps = median_of(data, key, threads, conns, "throughput_rps")
                    p99 = median_of(data, key, threads, conns, "p99_us")
                    if rps is not None:
                        f.write(f"{conns} {rps / 1000:.3f} {p99 / 1000:.3f}\n")
    for name, column, ylabel in [("echo_throughput", 2, "thousand messages/s"), ("echo_p99", 3, "p99 latency, ms")]:
        script = [
            "set terminal pngcairo size 1200,480 font ',10'" if _has_cairo() else "set terminal png size 1200,480",
            f"set output '{os.path.join(CHARTS, name + '.png')}'",
            "set multiplot layout 1,2",
            "set termoption noenhanced",
            "set logscale x", "set xrange [70:14000]", "set xtics (100, 1000, 10000)", "set xlabel 'connections'",
            f"set ylabel '{ylabel}'", "set key below", "set grid",
            # Latencies span three decades between 100 and 10,000 connections.
            "set logscale y" if column == 3 else "set yrange [0:*]",
        ]
        for threads in THREADS:
            plural = "s" if threads > 1 else ""
            script.append(f"set title '{threads} server thread{plural} (64-byte echo, {data['date']})'")
            plots = [f"'{tmp}/{key}_{threads}.dat' using 1:{column} with linespoints title '{label}'"
                     for key, label in servers]
            script.append("plot " + ", ".join(plots))
        script.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return None


def _has_cairo():
    out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in out.stdout + out.stderr


def render(data):
    lines = ["## Echo servers: the same protocol seven ways (issues 5 and 10)\n",
             f"- Command: `{data['command']}` ("
             + (f"{data['rounds']} interleaved rounds" if data["rounds"] > 1 else "1 round")
             + f" of {data['seconds']:g} s per cell after a warm-up, median shown)",
             f"- Date: {data['date']}",
             f"- Machine: {data['machine']}",
             f"- Load: `perf/load/echo_load`, C connections in a closed loop of {data['size']}-byte messages, each "
             "echo checked byte for byte; latency is per message, send to last byte back.",
             "- Pinning: 1 server thread on CPU 0, load generator on CPU 1; 2 server threads on CPUs 0-1, sharing "
             "CPU 1 with the load generator. Server CPU per message is the server's user+system time over the "
             "measured window divided by the messages echoed.",
             "- Charts: [throughput](charts/echo_throughput.png), [p99 latency](charts/echo_p99.png)\n"]
    note = charts(data)
    if note:
        lines.append(f"- {note}\n")
    servers = data["servers"]
    for threads in THREADS:
        plural = "s" if threads > 1 else ""
        lines.append(f"### {threads} server thread{plural} (bobbin: {threads} carrier{plural})\n")
        lines.append("| server | C | msg/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/msg | errors |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for conns in CONNECTIONS:
            for key, label in servers:
                m = lambda field: median_of(data, key, threads, conns, field)  # noqa: E731
                if m("throughput_rps") is None:
                    lines.append(f"| {label} | {conns:,} | failed | | | | | {errors_of(data, key, threads, conns)} |")
                    continue
                lines.append(f"| {label} | {conns:,} | {m('throughput_rps'):,.0f} | {m('p50_us'):,.0f} | "
                             f"{m('p99_us'):,.0f} | {m('p999_us'):,.0f} | {m('server_cpu_us_per_msg'):.2f} | "
                             f"{errors_of(data, key, threads, conns)} |")
        lines.append("")
    lines.append("### Targets: bobbin on 1 carrier against each peer on 1 thread\n")
    lines.append("Throughput ratio = bobbin msg/s ÷ peer msg/s (medians of the same run). CPU ratio = peer CPU per "
                 "message ÷ bobbin CPU per message (above 1: bobbin spends less per message).\n")
    lines.append("| peer | C | throughput ratio | target | verdict | CPU ratio |")
    lines.append("|---|---:|---:|---:|---|---:|")
    labels = dict(servers)
    for key, target in TARGETS.items():
        if key not in labels:
            continue
        for conns in CONNECTIONS:
            b = median_of(data, "bobbin", 1, conns, "throughput_rps")
            p = median_of(data, key, 1, conns, "throughput_rps")
            bc = median_of(data, "bobbin", 1, conns, "server_cpu_us_per_msg")
            pc = median_of(data, key, 1, conns, "server_cpu_us_per_msg")
            ratio = b / p if b and p else None
            cpu = f"{pc / bc:.2f}x" if bc and pc and bc > 0 and pc > 0 else "n/a"
            shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
            want = f"> {target:g}x" if key == "threads" else f"≥ {target:g}x"
            ok = results_md.verdict(ratio, target)
            if key == "threads" and ratio is not None and ratio <= 1:
                ok = "**missed**: not ahead"  # the target is strictly ahead
            lines.append(f"| {labels[key]} | {conns:,} | {shown} | {want} | {ok} | {cpu} |")
    lines.append("")
    lines += render_epoll_targets(data)
    lines.append("### Targets of issue 10: tail, and 2 carriers against 1\n")
    lines.append("p99.9 ratio = bobbin's p99.9 ÷ the raw loop's, 1 thread each (target at most 2x at 10,000; the "
                 "throughput targets are the raw-loop rows above, now ≥ 1.0x). Scaling = bobbin on 2 carriers ÷ bobbin "
                 "on 1 carrier, msg/s (target ≥ 1.0x: two carriers are never slower than one).\n")
    lines.append("| check | C | ratio | target | verdict |")
    lines.append("|---|---:|---:|---:|---|")
    for conns in CONNECTIONS:
        b = median_of(data, "bobbin", 1, conns, "p999_us")
        r = median_of(data, "uring_raw", 1, conns, "p999_us")
        ratio = b / r if b and r else None
        shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
        ok = ("met" if ratio <= 2.0 else "**missed**") if ratio is not None and conns == 10000 else "(context)"
        lines.append(f"| p99.9 vs raw loop | {conns:,} | {shown} | {'≤ 2x' if conns == 10000 else ''} | {ok} |")
    for conns in CONNECTIONS:
        two = median_of(data, "bobbin", 2, conns, "throughput_rps")
        one = median_of(data, "bobbin", 1, conns, "throughput_rps")
        ratio = two / one if two and one else None
        shown = f"{ratio:.2f}x" if ratio is not None else "n/a"
        lines.append(f"| 2 carriers vs 1 | {conns:,} | {shown} | ≥ 1.0x | {results_md.verdict(ratio, 1.0)} |")
    lines.append("")
    lines += render_cross_check(data)
    section = "\n".join(lines)
    results_md.write_section(args.results, "echo", section)
    return section


def render_epoll_targets(data):
    """bobbin on its epoll backend against Asio's epoll loop and Go, under
    both generators (issue 36)."""
    labels = dict(data["servers"])
    if "bobbin_epoll" not in labels:
        return []
    lines = ["### Targets: bobbin on epoll against the peers that wait on epoll (1 thread)\n",
             "Ratio = bobbin on its epoll backend (`BOBBIN_BACKEND=epoll`, as where io_uring is refused) ÷ the "
             "peer, msg/s medians of the same run, under each load generator.\n",
             "| peer | C | echo_load ratio | go_echoload ratio | target | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    show = lambda x: f"{x:.2f}x" if x is not None else "n/a"  # noqa: E731
    for key, target in EPOLL_TARGETS.items():
        if key not in labels:
            continue
        for conns in CONNECTIONS:
            found = []
            for runs in ("runs", "cross"):
                b = median_of(data, "bobbin_epoll", 1, conns, "throughput_rps", runs)
                p = median_of(data, key, 1, conns, "throughput_rps", runs)
                found.append(b / p if b and p else None)
            present = [r for r in found if r is not None]
            ok = results_md.verdict(min(present), target) if present else "n/a"
            lines.append(f"| {labels[key]} | {conns:,} | {show(found[0])} | {show(found[1])} | ≥ {target:g}x | {ok} |")
    lines.append("")
    return lines


# Above this spread between the two generators' bobbin-to-peer ratios, a row
# is called out: about twice the round-to-round spread of one generator here.
CROSS_DISAGREE = 0.10


def render_cross_check(data):
    if not data.get("cross"):
        return ["### Cross-check with a second load generator\n",
                "Not run: `perf/go/echoload` needs Go (`scripts/bootstrap --bench` installs it).\n"]
    lines = ["### Cross-check with a second load generator (1 server thread)\n",
             "The same servers, in the same run, under `perf/go/echoload`: one goroutine per connection with "
             "blocking `net.Conn` calls on Go's netpoller, sharing no code or I/O model with `echo_load`'s C++ epoll "
             "loop. It costs more CPU per message than `echo_load`, so on the shared 2-core machine it saturates "
             "first and every server's msg/s is lower under it; what must agree is the comparison. Ratio = bobbin "
             "÷ peer under that generator: msg/s, and the peer's server CPU per message ÷ bobbin's (above 1: bobbin "
             f"spends less). Rows where the two generators' ratios differ by more than {CROSS_DISAGREE:.0%} are "
             "marked.\n",
             "| peer | C | echo_load: msg/s ratio | go_echoload: msg/s ratio | echo_load: CPU ratio | "
             "go_echoload: CPU ratio | agree |",
             "|---|---:|---:|---:|---:|---:|---|"]

    def ratios(runs, key, conns):
        b = median_of(data, "bobbin", 1, conns, "throughput_rps", runs)
        p = median_of(data, key, 1, conns, "throughput_rps", runs)
        bc = median_of(data, "bobbin", 1, conns, "server_cpu_us_per_msg", runs)
        pc = median_of(data, key, 1, conns, "server_cpu_us_per_msg", runs)
        return (b / p if b and p else None), (pc / bc if bc and pc and bc > 0 and pc > 0 else None)

    show = lambda x: f"{x:.2f}x" if x is not None else "n/a"  # noqa: E731
    for key, label in data["servers"]:
        if key == "bobbin":
            continue
        for conns in CONNECTIONS:
            t1, c1 = ratios("runs", key, conns)
            t2, c2 = ratios("cross", key, conns)
            if None in (t1, t2, c1, c2):
                agree = "n/a"
            else:
                off = max(abs(t2 / t1 - 1), abs(c2 / c1 - 1))
                agree = "yes" if off <= CROSS_DISAGREE else f"**differ** by {off:.0%}"
            lines.append(f"| {label} | {conns:,} | {show(t1)} | {show(t2)} | {show(c1)} | {show(c2)} | {agree} |")
    lines.append("")
    lines.append("go_echoload's own figures (medians):\n")
    lines.append("| server | C | msg/s | p99 µs | server CPU µs/msg | errors |")
    lines.append("|---|---:|---:|---:|---:|---|")
    for conns in CONNECTIONS:
        for key, label in data["servers"]:
            m = lambda field: median_of(data, key, 1, conns, field, "cross")  # noqa: E731
            rows = data["cross"].get(f"{key}/1/{conns}", [])
            bad = sum(r.get("errors", 0) + r.get("connect_errors", 0) for r in rows)
            failed = sum(1 for r in rows if "failed" in r)
            errs = "none" if bad == 0 and failed == 0 else f"{bad} in {failed} of {len(rows)} runs"
            if m("throughput_rps") is None:
                lines.append(f"| {label} | {conns:,} | failed | | | {errs} |")
                continue
            lines.append(f"| {label} | {conns:,} | {m('throughput_rps'):,.0f} | {m('p99_us'):,.0f} | "
                         f"{m('server_cpu_us_per_msg'):.2f} | {errs} |")
    lines.append("")
    return lines


def main():
    data = json.load(open(LAST_RUN)) if args.render_only else measure()
    print(render(data))


main()
