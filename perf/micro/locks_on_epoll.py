#!/usr/bin/env python3
"""OS-lock and futex waits on the epoll backend, before and after a change:
perf/micro/park_bench's std::mutex, std::shared_mutex, std::atomic::wait and
std::future rows from two release builds (REV's, e.g. the one
scripts/bench --compare REV leaves in build-compare/rev/build, and the work
tree's in build-release), each with BOBBIN_BACKEND=epoll, and the work
tree's again on io_uring for reference; interleaved rounds, the order
reversed every other round; prints a markdown table of medians.

  perf/micro/locks_on_epoll.py REV_PARK_BENCH TREE_PARK_BENCH ROUNDS"""
import json, os, statistics, subprocess, sys
rev, tree, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
FILTER = ("std_mutex_contended|shared_mutex_contended|atomic_wake_latency|future_wake_latency|"
          "std_mutex_uncontended")
sides = [("rev epoll", rev, "epoll"), ("tree epoll", tree, "epoll"), ("tree io_uring", tree, "io_uring")]
res = {}
for r in range(rounds):
    order = sides if r % 2 == 0 else list(reversed(sides))
    for name, exe, be in order:
        env = dict(os.environ, BOBBIN_BACKEND=be)
        out = subprocess.run([exe, f"--benchmark_filter={FILTER}", "--benchmark_format=json",
                              "--benchmark_min_time=0.3"], env=env, capture_output=True, text=True, timeout=900)
        try:
            data = json.loads(out.stdout)
        except ValueError:
            print(name, "failed", out.stderr[-300:], file=sys.stderr); continue
        for b in data["benchmarks"]:
            v = b.get("items_per_second")
            key = (b["name"], "items/s" if v else "ns")
            res.setdefault(key, {}).setdefault(name, []).append(v if v else b["real_time"])
        print(f"round {r+1} {name} done", file=sys.stderr, flush=True)
print("| benchmark | unit | " + " | ".join(n for n, _, _ in sides) + " | tree/rev (epoll) |")
print("|---|---|" + "---:|" * (len(sides) + 1))
for (bench, unit), per in res.items():
    med = {n: statistics.median(v) for n, v in per.items()}
    cells = []
    for n, _, _ in sides:
        cells.append(f"{med[n]:,.0f}" if n in med else "n/a")
    ratio = "n/a"
    if "rev epoll" in med and "tree epoll" in med:
        ratio = med["tree epoll"] / med["rev epoll"] if unit == "items/s" else med["rev epoll"] / med["tree epoll"]
        ratio = f"{ratio:.2f}x"
    print(f"| {bench} | {unit} | " + " | ".join(cells) + f" | {ratio} |")
