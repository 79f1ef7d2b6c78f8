#!/usr/bin/env python3
"""Runs the micro-benchmarks (Google Benchmark, repeated, medians), the Go
peers (perf/go, built with Debian's golang-go) and the memory probe, compares
bobbin with each peer measured in the same run, checks the targets of issues
5 and 10, and writes the "micro" section of perf/RESULTS.md.

  perf/micro/report.py --build build-release [--repetitions 5] [--quick]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import go_build  # noqa: E402  (perf/go_build.py)
import results_md  # noqa: E402  (perf/results_md.py)

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--repetitions", type=int, default=5)
ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter runs, no 1M memory probe")
ap.add_argument("--results", default="perf/RESULTS.md")
ap.add_argument("--command", default="scripts/bench --micro")
ap.add_argument("--raw", default="perf/micro/last_run.json",
                help="where the measured figures are saved (and read from with --render-only)")
ap.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from --raw without measuring")
args = ap.parse_args()
reps = 3 if args.quick else args.repetitions
min_time = "0.05" if args.quick else "0.3"


def run_bench(binary):
    path = os.path.join(args.build, "perf", binary)
    out = subprocess.run([path, "--benchmark_format=json", f"--benchmark_repetitions={reps}",
                          f"--benchmark_min_time={min_time}", "--benchmark_report_aggregates_only=true"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{binary} failed: {out.stderr}")
    data = json.loads(out.stdout)
    ns_per_item = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].removesuffix("/real_time").removesuffix("/manual_time")
        ips = b.get("items_per_second")
        if ips:
            ns_per_item[name] = 1e9 / ips
    return ns_per_item


def run_go():
    """perf/go, built with the Go toolchain from Debian; {} if there is none."""
    exe = go_build.build(os.path.join(args.build, "perf", "gobench"), "./micro")
    if exe is None:
        return {}
    argv = [exe, "-reps", str(reps)] + (["-quick"] if args.quick else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        print(f"gobench failed: {out.stderr}", file=sys.stderr)
        return {}
    return json.loads(out.stdout)


def memory(kind, n):
    out = subprocess.run([os.path.join(args.build, "perf", "memory_bench"), kind, str(n)], capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        return None
    f = out.stdout.split()
    return float(f[f.index("per_unit_bytes") + 1])


if args.render_only:
    with open(args.raw) as f:
        raw = json.load(f)
    results = raw["ns_per_item"]
    mem = {(k, int(n)): v for k, n, v in raw["memory"]}
    reps = raw["repetitions"]
    run_date = raw["date"]
else:
    results = {}
    for b in ["switch_bench", "park_bench", "spawn_bench", "local_bench"]:
        print(f"running {b}", file=sys.stderr, flush=True)
        results.update(run_bench(b))
    print("running perf/go", file=sys.stderr, flush=True)
    go = run_go()
    go_memory = go.pop("go_memory/goroutines:1000000", None)
    results.update(go)
    mem = {}
    for kind, n in [("bobbin", 100000), ("threads", 10000)] + ([] if args.quick else [("bobbin", 1000000)]):
        print(f"memory {kind} {n}", file=sys.stderr, flush=True)
        mem[(kind, n)] = memory(kind, n)
    if go_memory is not None:
        mem[("go", 1000000)] = go_memory
    run_date = datetime.date.today().isoformat()
    with open(args.raw, "w") as f:
        json.dump({"date": run_date, "repetitions": reps, "ns_per_item": results,
                   "memory": [[k, n, v] for (k, n), v in mem.items()]}, f, indent=1)


def fmt_ns(v):
    if v is None:
        return "n/a"
    return f"{v / 1e6:,.1f} ms" if v >= 1e6 else f"{v / 1e3:,.2f} µs" if v >= 1e4 else f"{v:,.1f} ns"


rows = []  # (what, bobbin name, peer name, target kind, target value)
def ratio_row(what, mine, peer, kind, target):
    a, b = results.get(mine), results.get(peer)
    r = None if a is None or b is None else (a / b if kind == "within" else b / a)
    if kind == "within":
        verdict = "met" if r is not None and r <= target else f"missed: {r:.2f}x" if r else "n/a"
        ratio = f"takes {r:.2f}x the peer's time" if r else "n/a"
        tgt = f"at most {target}x the peer's time"
    else:
        verdict = "met" if r is not None and r >= target else f"missed: {r:.2f}x" if r else "n/a"
        ratio = ("n/a" if r is None else f"bobbin {r:.2f}x faster" if r >= 1 else f"bobbin {1 / r:.2f}x slower")
        tgt = f"bobbin ≥ {target}x faster" if target else "(context)"
        if not target:
            verdict = ""
    rows.append(f"| {what} | {fmt_ns(a)} | {peer}: {fmt_ns(b)} | {ratio} | {tgt} | {verdict} |")


ratio_row("yield round trip (2 switches)", "bobbin_yield", "boost_context_resume", "within", 2.0)
ratio_row("yield round trip (2 switches)", "bobbin_yield", "boost_fiber_yield", "faster", 3.0)
ratio_row("yield round trip (2 switches)", "bobbin_yield", "cxx20_coroutine", "faster", 0)
ratio_row("yield round trip (2 switches)", "bobbin_yield", "thread_semaphore/cross_core:0", "faster", 0)
ratio_row("yield round trip (2 switches)", "bobbin_yield", "thread_semaphore/cross_core:1", "faster", 0)
ratio_row("channel round trip, 1 carrier", "bobbin_channel/carriers:1", "boost_fiber_channel", "faster", 2.0)
ratio_row("channel round trip, 2 carriers", "bobbin_channel/carriers:2", "thread_semaphore/cross_core:1", "faster", 0)
ratio_row("spawn + join", "spawn_join_bobbin", "spawn_join_std_thread", "faster", 50.0)
ratio_row("spawn + join", "spawn_join_bobbin", "spawn_join_boost_fiber", "faster", 0)
ratio_row("skynet 100K, per fiber, 1 carrier", "skynet_bobbin/leaves:100000/carriers:1", "skynet_boost_fiber/leaves:100000", "faster", 10.0)
ratio_row("skynet 1M (bobbin) vs 100K (Boost.Fiber), per fiber", "skynet_bobbin/leaves:1000000/carriers:1", "skynet_boost_fiber/leaves:100000", "faster", 10.0)
# Go at GOMAXPROCS=1 (2 for the mutex), perf/go, the targets of issue 10.
ratio_row("yield round trip vs Go's Gosched ping-pong", "bobbin_yield", "go_gosched/procs:1", "faster", 0)
ratio_row("channel round trip, 1 carrier, vs Go unbuffered", "bobbin_channel/carriers:1", "go_chan/procs:1", "faster", 2.0)
ratio_row("spawn + join vs Go", "spawn_join_bobbin", "go_spawn_join/procs:1", "faster", 0)
ratio_row("skynet 1M, per fiber, 1 carrier vs Go", "skynet_bobbin/leaves:1000000/carriers:1", "go_skynet/leaves:1000000/procs:1", "faster", 2.0)
ratio_row("mutex, 16 contenders on 2 carriers, per lock, vs Go sync.Mutex", "bobbin_mutex_contended/fibers:16", "go_mutex/goroutines:16/procs:2", "within", 1.0)
# OS locks on fibers (issue 29): a std::mutex through bobbin's interposer.
ratio_row("std::mutex lock + unlock, free, on a fiber vs on a thread", "std_mutex_uncontended_fiber", "std_mutex_uncontended_thread", "within", 1.1)
ratio_row("std::mutex, 16 fibers on 2 carriers, per lock, vs bobbin::mutex", "std_mutex_contended/fibers:16", "bobbin_mutex_contended/fibers:16", "within", 1.5)
ratio_row("std::mutex, 16 fibers on 2 carriers, per lock, vs 16 threads", "std_mutex_contended/fibers:16", "std_mutex_contended_threads/threads:16", "faster", 0)
ratio_row("std::mutex, 16 fibers on 2 carriers, per lock, vs Go sync.Mutex", "std_mutex_contended/fibers:16", "go_mutex/goroutines:16/procs:2", "faster", 0)
# OS reader-writer locks on fibers (issue 33): std::shared_mutex, bobbin's own.
ratio_row("std::shared_mutex, 95% shared, 16 fibers on 2 carriers, per section, vs 16 threads", "shared_mutex_contended/fibers:16", "shared_mutex_contended_threads/threads:16", "faster", 0)
# Per-fiber storage (issue 33): bobbin::fiber_local against a thread_local.
ratio_row("fiber_local get() on a fiber vs a thread_local access", "fiber_local_get/fiber:1", "thread_local_access", "faster", 0)
ratio_row("spawn + join of a fiber making a fiber_local value vs one without", "fiber_local_first_get", "spawn_join_without_local", "faster", 0)
# OS condition variables on fibers (issue 30): std::condition_variable, bobbin's own.
ratio_row("std::condition_variable ping-pong, 2 fibers, 1 carrier, vs bobbin::condition_variable", "std_condvar_ping_pong/carriers:1", "bobbin_condvar_ping_pong/carriers:1", "within", 1.5)
ratio_row("std::condition_variable ping-pong, 2 fibers, 2 carriers, vs bobbin::condition_variable", "std_condvar_ping_pong/carriers:2", "bobbin_condvar_ping_pong/carriers:2", "within", 1.5)
ratio_row("std::condition_variable ping-pong, 2 fibers, 1 carrier, vs 2 threads", "std_condvar_ping_pong/carriers:1", "std_condvar_ping_pong_threads", "faster", 0)
ratio_row("std::condition_variable ping-pong, 2 fibers, 2 carriers, vs 2 threads", "std_condvar_ping_pong/carriers:2", "std_condvar_ping_pong_threads", "faster", 0)
# Futex waits on fibers (issue 32): std::atomic::wait (private futex) and
# std::future (shared futex) woken by a plain thread, one way, per wake.
ratio_row("std::atomic<int>::wait woken by a thread: a fiber's wake latency vs a thread's", "atomic_wake_latency/waiter:0", "atomic_wake_latency/waiter:1", "faster", 0)
ratio_row("std::future::get woken by set_value on a thread (shared futex): a fiber's wake latency vs a thread's", "future_wake_latency/waiter:0", "future_wake_latency/waiter:1", "faster", 0)
ratio_row("skynet 1M, per fiber, 2 carriers vs 1", "skynet_bobbin/leaves:1000000/carriers:2", "skynet_bobbin/leaves:1000000/carriers:1", "faster", 0)

lines = ["## Micro-benchmarks (issues 5 and 10)\n",
         f"- Command: `{args.command}` (Google Benchmark, {reps} repetitions, medians; "
         "each row's bobbin and peer figures come from the same run)",
         f"- Date: {run_date}",
         f"- Machine: {results_md.machine()}\n",
         "Times are per item: per round trip for switches and channels, per fiber for spawn and skynet.\n",
         "| what | bobbin | peer | ratio | target | verdict |",
         "|---|---:|---:|---|---|---|"] + rows + [""]
lines.append("All figures (median ns per item):\n")
lines.append("| benchmark | ns |")
lines.append("|---|---:|")
for k in sorted(results):
    lines.append(f"| {k} | {results[k]:,.1f} |")
lines.append("")
lines.append("Resident memory per parked unit (`perf/memory_bench`):\n")
lines.append("| what | N | bytes each | target |")
lines.append("|---|---:|---:|---|")
for (kind, n), v in mem.items():
    what = {"bobbin": "bobbin fiber parked on a channel (64 KiB stack)",
            "threads": "OS thread blocked on a semaphore (8 MiB stack)",
            "go": "goroutine parked on a channel (Go 1.19, perf/go)"}[kind]
    tgt = ""
    if kind == "bobbin" and n == 1000000:
        tgt = "≤ 4,608: met" if v is not None and v <= 4608 else f"≤ 4,608: missed ({v:,.0f})" if v else "n/a"
    lines.append(f"| {what} | {n:,} | {v:,.0f} | {tgt} |" if v is not None else f"| {what} | {n:,} | failed | {tgt} |")
lines.append("")
section = "\n".join(lines)

results_md.write_section(args.results, "micro", section)
print(section)
