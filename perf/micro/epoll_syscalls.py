#!/usr/bin/env python3
"""System calls per echo message on the epoll backend, counted by the
kernel's tracepoints (perf stat on the server's pid), beside Asio's epoll
loop: how many epoll_ctl, recvfrom, sendto and epoll waits each message
costs. Each echo server (one thread, CPU 0) is loaded by perf/load/echo_load
(CPU 1) for SECONDS at each connection count; rounds interleave the servers.
Any number of bobbin_echo builds can be set side by side (e.g. REV's from
build-compare/rev/build and the work tree's), each run with
BOBBIN_BACKEND=epoll. Needs perf(1) with tracepoint access (root).

  perf/micro/epoll_syscalls.py BUILD_DIR [BUILD_DIR...] [--rounds N] [--seconds S]

Prints a markdown table of medians per message."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from procs import server  # noqa: E402  (perf/procs.py)

ap = argparse.ArgumentParser()
ap.add_argument("builds", nargs="+")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=3)
ap.add_argument("--connections", default="100,1000")
args = ap.parse_args()

CALLS = ["epoll_ctl", "recvfrom", "sendto", "epoll_pwait2", "epoll_wait"]
EVENTS = ",".join([f"syscalls:sys_enter_{c}" for c in CALLS] + ["raw_syscalls:sys_enter"])
servers = [(f"bobbin epoll ({b})", os.path.abspath(os.path.join(b, "perf/bobbin_echo")), ["BOBBIN_BACKEND=epoll"])
           for b in args.builds]
servers.append(("Asio epoll", os.path.abspath(os.path.join(args.builds[-1], "perf/asio_epoll_echo")), []))
load = os.path.abspath(os.path.join(args.builds[-1], "perf/echo_load"))


def one(exe, env, conns, port):
    argv = ["env", *env, exe, "--port", str(port), "--threads", "1"]
    with server(exe, argv, port, "0") as s, tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        stat = subprocess.Popen(["perf", "stat", "-x", ",", "-e", EVENTS, "-p", str(s.proc.pid), "-o", out.name])
        gen = subprocess.run(["taskset", "-c", "1", load, "--port", str(port), "--connections", str(conns),
                              "--duration", str(args.seconds), "--warmup", "0"],
                             capture_output=True, text=True, timeout=args.seconds + 120)
        stat.send_signal(2)
        stat.wait(timeout=30)
        counts = {}
        for line in open(out.name):
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].isdigit():
                counts[parts[2].split(":")[-1].replace("sys_enter_", "")] = int(parts[0])
    m = re.search(r"requests=(\d+)", gen.stdout)
    msgs = int(m.group(1)) if m else 0
    if msgs == 0:
        return None
    row = {c: counts.get(c, 0) / msgs for c in CALLS}
    row["all"] = counts.get("sys_enter", 0) / msgs
    row["msg/s"] = msgs / args.seconds
    return row


res = {}
port = 19800
for r in range(args.rounds):
    for conns in [int(c) for c in args.connections.split(",")]:
        order = servers if r % 2 == 0 else list(reversed(servers))
        for name, exe, env in order:
            port += 1
            row = one(exe, env, conns, port)
            if row is None:
                print(f"round {r + 1} {name} {conns}: no result", file=sys.stderr)
                continue
            for k, v in row.items():
                res.setdefault((conns, name), {}).setdefault(k, []).append(v)
            print(f"round {r + 1} {conns} conns {name}: {row['all']:.2f} calls/msg, "
                  f"epoll_ctl {row['epoll_ctl']:.4f}", file=sys.stderr, flush=True)

cols = ["all", *CALLS, "msg/s"]
print("| connections | server | " + " | ".join(c if c != "all" else "all system calls" for c in cols) + " |")
print("|---|---|" + "---:|" * len(cols))
for (conns, name), per in res.items():
    cells = []
    for c in cols:
        v = statistics.median(per[c])
        cells.append(f"{v:,.0f}" if c == "msg/s" else f"{v:.3f}")
    print(f"| {conns:,} | {name} | " + " | ".join(cells) + " |")
