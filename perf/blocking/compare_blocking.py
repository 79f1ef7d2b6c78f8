#!/usr/bin/env python3
"""Unmodified blocking client libraries on bobbin, measured four ways in one
run (perf/blocking/blocking_bench.cc): intercepted on fibers (the naive
code), pinning (interception off), offloaded, and one plain thread per
caller. Against private PostgreSQL, redis-server and http_server instances
(tests/clients/servers.py). Rounds are interleaved, modes rotate between
rounds, and the tables give medians. Also runs perf/micro/intercept_bench for
the cost of interception. Writes the "blocking" section of perf/RESULTS.md
and perf/blocking/last_run.json.

  perf/blocking/compare_blocking.py --build build-release [--quick]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(here))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(here)), "tests", "clients"))
import results_md  # noqa: E402
import servers  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--quick", action="store_true", help="one round of 2 s per cell")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=3.0)
ap.add_argument("--callers", type=int, default=200)
ap.add_argument("--results", default="perf/RESULTS.md")
ap.add_argument("--raw", default="perf/blocking/last_run.json")
ap.add_argument("--command", default="scripts/bench --blocking")
ap.add_argument("--render-only", action="store_true")
ap.add_argument("--clients", help="comma-separated subset to measure; the other clients' cells are kept from "
                "the last run (--raw)")
args = ap.parse_args()
rounds = 1 if args.quick else args.rounds
seconds = 2.0 if args.quick else args.seconds

CLIENTS = [("pq", "libpq: `SELECT pg_sleep(0.02)` (PostgreSQL 15)"),
           ("pqpool", "libpq through a pool of 8 connections behind `std::mutex` + `std::condition_variable`: "
                      "`SELECT pg_sleep(0.02)`"),
           ("redis", "hiredis: `SET` + `GET` (redis-server 7)"),
           ("curl", "libcurl easy: `GET /sleep?ms=20` (examples/http_server, 1 carrier)"),
           ("https", "libcurl easy HTTPS with OpenSSL 3: a new handle, connection and TLS 1.3 handshake per call "
                     "(ECDSA P-256, verified) to a private Python `ssl` server on the same 2 cores"),
           ("future", "`std::future::get()` on a promise that a pool of 4 plain threads fulfils 20 ms later "
                      "(a shared futex wait: issue 32)"),
           ("shared", "`std::shared_mutex` held shared across a 1 ms sleep, every 50th call exclusive "
                      "(bobbin's own reader-writer lock: issue 33)"),
           ("spdlog", "spdlog 1.10 asynchronous logger: one line per call (its bounded queue behind `std::mutex` "
                      "+ `std::condition_variable`, one worker thread writing a file: issue 33)"),
           ("mix", "The four in one program, as a service mixes them: a quarter of the callers each log a line "
                   "through spdlog and sleep 1 ms, make an HTTPS call and sleep 5 ms, wait on a future from the "
                   "pool of 4 threads, or query PostgreSQL through the pool of 8; each logs its result (issue 33)")]
# Ways a client cannot run at all: with interception off, a fiber waiting for
# the std::shared_mutex blocks the carrier its holder is parked on (a hang).
SKIPPED = {("shared", "pinned"): "hangs: a waiter blocks the carrier its holder is parked on"}
MODES = [("intercept", "bobbin, intercepted (naive code)"), ("pinned", "bobbin, interception off (pinning)"),
         ("offload", "bobbin, every call in `offload()`"), ("threads", f"{args.callers} plain threads"),
         ("hogspares", "bobbin, intercepted, `spares_for_cpu_hogs` on")]
# Ways measured for one client only: a spare for a carrier that computes
# while fibers queue (runtime_options::spares_for_cpu_hogs) matters where
# calls hold carriers for milliseconds.
ONLY_FOR = {"hogspares": {"mix"}}


def ways(client):
    return [(m, label) for m, label in MODES if client in ONLY_FOR.get(m, {client})]


def measure():
    cells = {}
    bench = os.path.join(args.build, "perf", "blocking_bench")
    http_exe = os.path.join(args.build, "examples", "http_server")
    with servers.all_servers(http_exe) as env:
        for r in range(rounds):
            for client, _ in CLIENTS:
                if args.clients and client not in args.clients.split(","):
                    continue
                mine = ways(client)
                order = mine[r % len(mine):] + mine[:r % len(mine)]
                for mode, _ in order:
                    if (client, mode) in SKIPPED:
                        continue
                    print(f"round {r + 1}/{rounds}: {client} {mode}", file=sys.stderr, flush=True)
                    out = subprocess.run([bench, "--client", client, "--mode", mode, "--callers", str(args.callers),
                                          "--seconds", str(seconds)], env=env, capture_output=True, text=True,
                                         timeout=300)
                    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
                    res = json.loads(line)
                    if out.returncode != 0:
                        res["failed"] = True
                        print(out.stderr[-2000:], file=sys.stderr)
                    cells.setdefault(f"{client}/{mode}", []).append(res)
    return cells


def cost():
    out = subprocess.run([os.path.join(args.build, "perf", "intercept_bench"), "--benchmark_format=json",
                          "--benchmark_repetitions=7", "--benchmark_min_time=0.3",
                          "--benchmark_report_aggregates_only=true"], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"intercept_bench failed: {out.stderr}")
    ns = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            ns[b["run_name"].removesuffix("/real_time")] = b["real_time"]
    return ns


def med(rows, key):
    vals = [r[key] for r in rows if key in r and not r.get("failed")]
    return statistics.median(vals) if vals else None


def mix_kinds(cells):
    """The mix client per kind: calls a second, and where a call's time went
    (blocking_bench's us_per_call_by_kind: the call itself, the sleep beyond
    what was asked, the result's log line), medians over the rounds."""
    kinds = ["log line, sleep 1 ms", "HTTPS call, sleep 5 ms", "future from the pool", "query through the pool"]
    lines = ["Per kind: calls a second; mean time of the call / of the sleep beyond what was asked / of the result's "
             "log line (a fiber woken waits for its turn in all three).", "",
             "| way | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for mode, label in ways("mix"):
        rows = [r for r in cells.get(f"mix/{mode}", []) if "us_per_call_by_kind" in r and not r.get("failed")]
        if not rows:
            continue
        out = []
        for k in range(4):
            rate = statistics.median(r["by_kind_per_s"][k] for r in rows)
            steps = [statistics.median(r["us_per_call_by_kind"][k][j] for r in rows) / 1000 for j in range(3)]
            out.append(f"{rate:,.0f}/s; {steps[0]:.2f} / {steps[1]:.2f} / {steps[2]:.2f} ms")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    return lines + [""]


def render(raw):
    cells, ns = raw["cells"], raw["cost"]
    lines = [f"## Blocking libraries (issue 14)", "",
             f"Command: `{raw['command']}`. Machine: {raw['machine']}. Date: {raw['date']}. "
             f"{raw['callers']} callers for {raw['seconds']:g} s per cell, {raw['rounds']} interleaved round(s), "
             "medians. Every reply is checked; a cell with a bad reply is marked. The bystander is a fiber "
             "(a thread in the threads row) that sleeps 5 ms in a loop: its p99 lateness shows whether the "
             "carriers stay free. RSS is the whole process's at the end of the run. bobbin runs 2 carriers; the "
             "servers run on the same 2 cores."] + [
             f" Re-measured {p['date']} for {p['clients']} alone: `{p['command']}`." for p in raw.get("partial_runs", [])] + [""]
    verdicts = []
    for client, title in CLIENTS:
        lines += [f"### {title}", "", "| way | calls/s | vs threads | bystander p99 | pin events | RSS |",
                  "|---|---:|---:|---:|---:|---:|"]
        base = med(cells.get(f"{client}/threads", []), "calls_per_s")
        for mode, label in ways(client):
            rows = cells.get(f"{client}/{mode}", [])
            cps = med(rows, "calls_per_s")
            if (client, mode) in SKIPPED:
                lines.append(f"| {label} | {SKIPPED[(client, mode)]} | | | | |")
                continue
            if cps is None:
                lines.append(f"| {label} | failed | | | | |")
                continue
            bad = sum(r.get("bad", 0) + r.get("connect_failures", 0) for r in rows)
            ratio = f"{cps / base:.2f}x" if base else ""
            pins = max(r.get("pin_events", 0) for r in rows)
            mark = f" ({bad} bad)" if bad else ""
            lines.append(f"| {label} | {cps:,.0f}{mark} | {ratio} | {med(rows, 'bystander_p99_ms'):.1f} ms | "
                         f"{pins} | {med(rows, 'rss_kb') / 1024:.1f} MiB |")
            if mode == "intercept" and base:
                verdicts.append(f"- {client}: intercepted {cps / base:.2f}x threads: "
                                f"{results_md.verdict(cps / base, 1.0)} (target ≥ 1.0x); "
                                f"{pins} pin events")
        lines.append("")
        if client == "mix":
            lines += mix_kinds(cells)
    lines += ["### Targets", ""] + verdicts + [""]
    g, i = ns.get("glibc_recv_eagain"), ns.get("intercepted_recv_eagain")
    p, b = ns.get("intercepted_recv_park"), ns.get("bobbin_read_some_park")
    lines += ["### Cost of interception (`perf/micro/intercept_bench`, 7 repetitions, medians)", "",
              "| benchmark | time | compared with | ratio or difference |", "|---|---:|---|---:|"]
    if g and i:
        lines.append(f"| `recv` on an empty non-blocking socket from a plain thread, through bobbin | {i:.0f} ns | "
                     f"glibc's `recv` directly: {g:.0f} ns | {i - g:+.0f} ns |")
    if p and b:
        lines.append(f"| fiber ping-pong, plain `send`/`recv` on a blocking socketpair (parks) | {p / 1000:.1f} µs | "
                     f"`tcp_stream::write_all`/`read_some`: {b / 1000:.1f} µs | {p / b:.2f}x |")
    lines.append("")
    if g and i:
        lines.append(f"- Off a fiber, target within 5 ns: the wall-clock difference measured here is {i - g:+.0f} ns, "
                     "smaller than this benchmark can resolve around a system call; the README section "
                     "\"Performance\" gives the instruction count of the check, from callgrind.")
    if p and b:
        lines.append(f"- A parking `recv` against `read_some`, target ≤ 1.2x: {p / b:.2f}x, "
                     f"{'met' if p / b <= 1.2 else '**missed**'}.")
    return "\n".join(lines)


if args.render_only:
    raw = json.load(open(args.raw))
else:
    cells = measure()
    if args.clients and os.path.exists(args.raw):
        # A partial run: the other clients' cells (and their run's settings) stay.
        raw = json.load(open(args.raw))
        raw["cells"].update(cells)
        raw.setdefault("partial_runs", []).append({"clients": args.clients, "date": datetime.date.today().isoformat(),
                                                   "command": f"{args.command} --clients {args.clients}"})
        raw["cost"] = cost()
    else:
        raw = {"command": args.command, "machine": results_md.machine(), "date": datetime.date.today().isoformat(),
               "callers": args.callers, "seconds": seconds, "rounds": rounds, "cells": cells, "cost": cost()}
    with open(args.raw, "w") as f:
        json.dump(raw, f, indent=1)
results_md.write_section(args.results, "blocking", render(raw))
print(render(raw))
