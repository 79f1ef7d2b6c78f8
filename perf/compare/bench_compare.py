#!/usr/bin/env python3
"""scripts/bench --compare REV: the work tree measured against REV (any
commit, tag or HEAD~N) side by side, so that every runtime/ change shows what
it costs against the code before it.

  perf/compare/bench_compare.py REV [--quick] [--rounds N] [--seconds S]
  perf/compare/bench_compare.py REV --plan          (what would run; no build)
  perf/compare/bench_compare.py --render-only FILE  (re-render a saved run)

Builds. REV is checked out into a git worktree at build-compare/<sha>/src and
built in release mode in build-compare/<sha>/build; the work tree builds in
build-release/ (the one scripts/bench uses). Both are kept between runs, and
ninja rebuilds only what changed. Only the targets the workloads need are
built; a target REV does not have makes its workload say so in the table.

Rounds. Each round runs every workload on REV, on the work tree and, for
echo, on the yardstick (the raw io_uring loop of perf/echo, the work tree's
build), back to back, in an order that rotates between rounds. The load
generators (perf/load/echo_load, perf/go/echoload, wrk) are the same binaries
for both sides. Servers run on CPU 0 with 1 carrier, generators on CPU 1, as
in perf/echo/compare_echo.py.

Workloads (--quick keeps echo at 1,000 connections and the micro rows):
  echo at 100, 1,000 and 10,000 connections under echo_load and go_echoload:
      msg/s, server CPU µs per message, p99 µs
  examples/http_server under wrk at 50 and 1,000 connections:
      req/s, server CPU µs per request, p99 ms
  micro: every bobbin_* benchmark of perf/micro (switch, park, channel,
      mutex, spawn + join, skynet): ns per item

Writes the table to perf/RESULTS.md under "Comparisons" (one block per REV
as given on the command line) and the raw figures to
build-compare/last_run.json. Exit status: 0, or 1 when a figure is worse by
more than 5% in the median and the two sides' ranges do not overlap, or 2 on
a usage or build error."""
import argparse
import dataclasses
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PERF = os.path.dirname(HERE)
ROOT = os.path.dirname(PERF)
sys.path.insert(0, PERF)
sys.path.insert(0, HERE)
import compare_table  # noqa: E402  (perf/compare/compare_table.py)
import results_md  # noqa: E402  (perf/results_md.py)
from procs import cpu_seconds, server  # noqa: E402  (perf/procs.py)

COMPARE_DIR = os.path.join(ROOT, "build-compare")
TREE_BUILD = os.path.join(ROOT, "build-release")
SERVER_CPU, CLIENT_CPU = "0", "1"
ECHO_SIZE = 64
# Targets each side needs; the work tree also builds the generators and the
# yardstick, which both sides share.
SIDE_TARGETS = ["perf/bobbin_echo", "examples/http_server", "perf/switch_bench", "perf/park_bench",
                "perf/spawn_bench"]
SHARED_TARGETS = ["perf/echo_load", "perf/uring_raw_echo"]
MICRO_BENCHES = ["switch_bench", "park_bench", "spawn_bench"]


class UsageError(Exception):
    pass


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="scripts/bench --compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", nargs="?", help="commit, tag or HEAD~N to compare the work tree with")
    ap.add_argument("--quick", action="store_true", help="echo at 1,000 connections and micro only (3 rounds)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 7; 3 with --quick; at least 3)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per echo and wrk run")
    ap.add_argument("--plan", action="store_true", help="print the builds and workloads, run nothing")
    ap.add_argument("--render-only", metavar="FILE", help="re-render a saved run (build-compare/last_run.json)")
    ap.add_argument("--results", default=os.path.join(PERF, "RESULTS.md"))
    ap.add_argument("--command", help="the command line quoted in the table")
    args = ap.parse_args(argv)
    if args.render_only:
        return args
    if not args.rev:
        raise UsageError("a revision is needed: a commit, a tag or HEAD~N")
    if args.rounds is None:
        # 7: with 5, the same commit against itself still came out 5% worse
        # in one median of per-round ratios (echo at 1,000 connections under
        # go_echoload, pairs 0.89-1.09x). --quick is a smoke check before a
        # change; its 3 rounds are noisier.
        args.rounds = 3 if args.quick else 7
    if args.rounds < 3:
        raise UsageError(f"--rounds {args.rounds}: at least 3 rounds are needed for a median and a spread")
    if args.seconds <= 0:
        raise UsageError("--seconds must be positive")
    if args.command is None:
        args.command = "scripts/bench --compare " + " ".join(argv)
    return args


def workloads(quick):
    """The cells of one round, as (kind, parameters) in run order."""
    cells = []
    for conns in ([1000] if quick else [100, 1000, 10000]):
        for generator in ("echo_load", "go_echoload"):
            cells.append(("echo", {"connections": conns, "generator": generator}))
    if not quick:
        for conns in (50, 1000):
            cells.append(("http", {"connections": conns}))
    for bench in MICRO_BENCHES:
        cells.append(("micro", {"bench": bench}))
    return cells


def git(*argv, cwd=ROOT, check=True):
    out = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise UsageError(f"git {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout.strip()


def resolve(spec):
    """The full commit id and subject of REV, or a UsageError naming it."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise UsageError(f"{spec!r} is not a commit of this repository (try a commit id, a tag or HEAD~N)")
    sha = out.stdout.strip()
    return {"spec": spec, "sha": sha, "subject": git("log", "-1", "--format=%s", sha)}


def tree_info():
    sha = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"sha": sha, "dirty": dirty, "subject": git("log", "-1", "--format=%s", sha)}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def checkout(sha):
    """REV's source in a worktree that stays between runs."""
    src = os.path.join(COMPARE_DIR, sha[:12], "src")
    if os.path.exists(os.path.join(src, ".git")) and git("rev-parse", "HEAD", cwd=src, check=False) == sha:
        return src
    if os.path.exists(src):  # a checkout left half-made, or moved by hand
        shutil.rmtree(src)
    git("worktree", "prune")
    os.makedirs(os.path.dirname(src), exist_ok=True)
    log(f"bench --compare: checking {sha[:10]} out into {os.path.relpath(src, ROOT)}")
    git("worktree", "add", "--detach", "--force", src, sha)
    return src


def build(src, build_dir, wanted):
    """Configures (once) and builds the wanted targets that the source
    defines; returns the set of targets built."""
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        log(f"bench --compare: meson setup {os.path.relpath(build_dir, ROOT)} (release)")
        setup = ["meson", "setup", build_dir, src, "-Dbuildtype=release", "-Dtests=false"]
        out = subprocess.run(setup, capture_output=True, text=True)
        if out.returncode != 0:
            raise UsageError(f"meson setup of {src} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    listed = subprocess.run(["ninja", "-C", build_dir, "-t", "targets", "all"], capture_output=True, text=True,
                            check=True).stdout
    defined = {line.split(":", 1)[0] for line in listed.splitlines()}
    targets = [t for t in wanted if t in defined]
    log(f"bench --compare: ninja -C {os.path.relpath(build_dir, ROOT)} ({len(targets)} targets)")
    out = subprocess.run(["ninja", "-C", build_dir, *targets], capture_output=True, text=True)
    if out.returncode != 0:
        raise UsageError(f"building {build_dir} failed:\n{out.stdout[-3000:]}")
    return set(targets)


def build_go_generator():
    """perf/go/echoload (Debian's golang-go, scripts/bootstrap --bench), or
    None when there is no Go."""
    if shutil.which("go") is None:
        log("bench --compare: go not found; the go_echoload rows are skipped")
        return None
    exe = os.path.join(TREE_BUILD, "perf", "go_echoload")
    env = dict(os.environ, GOFLAGS="-mod=mod", GO111MODULE="on")
    subprocess.run(["go", "build", "-o", exe, "./echoload"], cwd=os.path.join(PERF, "go"), env=env, check=True,
                   timeout=600)
    return exe


class Ports:
    """A fresh port per server: no TIME_WAIT of the last cell in the way."""

    def __init__(self, first=19400):
        self.port = first

    def next(self):
        self.port += 1
        return self.port


@dataclasses.dataclass
class Bench:
    """What a run has set up: the targets each side built, the build
    folders, the shared generators and yardstick, ports and a scratch root."""
    have: dict
    builds: dict
    generators: dict
    yardstick: str
    ports: Ports
    root: str
    seconds: float
    min_time: str

    def run(self, kind, p, side, target):
        """One side's run of one workload in one round."""
        if side != "yardstick" and target not in self.have[side]:
            return {"missing": f"no {target}"}
        if kind == "echo":
            gen = self.generators[p["generator"]]
            if gen is None:
                return {"missing": "no Go"}
            exe = self.yardstick if side == "yardstick" else os.path.join(self.builds[side], target)
            return run_echo(exe, gen, p["connections"], self.seconds, self.ports.next())
        exe = os.path.join(self.builds[side], target)
        if kind == "http":
            return run_http(exe, p["connections"], self.seconds, self.ports.next(), self.root)
        return run_micro(exe, self.min_time)


def run_echo(exe, generator, conns, seconds, port):
    """One echo server on CPU 0 with one carrier under a generator on CPU 1:
    {"msg/s", "server CPU µs/msg", "p99 µs"} or {"failed": why}."""
    with server(exe, [exe, "--port", str(port), "--threads", "1"], port, SERVER_CPU) as s:
        cmd = ["taskset", "-c", CLIENT_CPU, generator, "--port", str(port), "--connections", str(conns),
               "--size", str(ECHO_SIZE), "--duration", str(seconds), "--warmup", "1", "--server-pid",
               str(s.proc.pid)]
        if os.path.basename(generator) == "echo_load":
            cmd.append("--json")
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


WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text):
    """wrk --latency's report: (requests, seconds, p99 ms, errors)."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    requests = int(m.group(1))
    secs = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    p = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(p.group(1)) * WRK_UNITS[p.group(2)] if p else None
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        errors += int(n.group(1))
    return requests, secs, p99, errors


def run_http(exe, conns, seconds, port, root):
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
    of three makes each round's figure steadier, and the rounds give the
    spread."""
    out = subprocess.run([exe, "--benchmark_filter=bobbin", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}", "--benchmark_repetitions=3",
                          "--benchmark_report_aggregates_only=true"], capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"failed": out.stderr.strip()[-200:] or f"exit {out.returncode}"}
    figures = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("error_occurred") or b.get("aggregate_name", "median") != "median":
            continue
        name = b["run_name"].removesuffix("/real_time") if "run_name" in b else b["name"]
        ips = b.get("items_per_second")
        if ips:
            figures[name] = 1e9 / ips
    return figures


ECHO_FIGURES = [("msg/s", "higher"), ("server CPU µs/msg", "lower"), ("p99 µs", "lower")]
HTTP_FIGURES = [("req/s", "higher"), ("server CPU µs/req", "lower"), ("p99 ms", "lower")]


def cell_name(kind, p):
    if kind == "echo":
        return f"echo, {p['connections']:,} conns, {p['generator']}"
    if kind == "http":
        return f"http_server, {p['connections']:,} conns, wrk"
    return f"micro: {p['bench']}"


def measure(args, rev, tree):
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            raise UsageError(f"{tool} not found (scripts/bootstrap --bench installs it)")
    rev_src = checkout(rev["sha"])
    rev_build = os.path.join(COMPARE_DIR, rev["sha"][:12], "build")
    have = {"rev": build(rev_src, rev_build, SIDE_TARGETS),
            "tree": build(ROOT, TREE_BUILD, SIDE_TARGETS + SHARED_TARGETS)}
    bench = Bench(have=have, builds={"rev": rev_build, "tree": TREE_BUILD},
                  generators={"echo_load": os.path.join(TREE_BUILD, "perf", "echo_load"),
                              "go_echoload": build_go_generator()},
                  yardstick=os.path.join(TREE_BUILD, "perf", "uring_raw_echo"), ports=Ports(),
                  root=tempfile.mkdtemp(prefix="bobbin_compare_"), seconds=args.seconds,
                  min_time="0.1" if args.quick else "0.2")
    cells = workloads(args.quick)
    # raw[cell][side] = [per-round result dict]
    raw = {cell_name(k, p): {"rev": [], "tree": [], "yardstick": []} for k, p in cells}
    sides = ["rev", "tree", "yardstick"]
    for rnd in range(args.rounds):
        order = sides[rnd % 3:] + sides[:rnd % 3]
        for kind, p in cells:
            name = cell_name(kind, p)
            for side in order:
                if side == "yardstick" and kind != "echo":
                    continue
                target = {"echo": "perf/bobbin_echo", "http": "examples/http_server",
                          "micro": f"perf/{p.get('bench')}"}[kind]
                try:
                    r = bench.run(kind, p, side, target)
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as e:
                    # A server that would not start or a generator that hung:
                    # the table says so for this workload; the run goes on.
                    r = {"failed": str(e).splitlines()[0][:200] if str(e) else type(e).__name__}
                raw[name][side].append(r)
                shown = ", ".join(f"{k} {compare_table.fmt(v)}" for k, v in list(r.items())[:3]
                                  if isinstance(v, (int, float)))
                log(f"round {rnd + 1}/{args.rounds} {name} {side}: "
                    f"{shown if shown else r.get('failed') or r.get('missing') or 'no figure'}")
    shutil.rmtree(bench.root, ignore_errors=True)
    return {"rev": rev, "tree": tree, "date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
            "machine": results_md.machine(), "command": args.command, "rounds": args.rounds, "quick": args.quick,
            "cells": [[k, p] for k, p in cells], "raw": raw}


def rows_of(run):
    """The measured results of a run turned into compare_table rows."""
    rows = []
    for kind, p in run["cells"]:
        name = cell_name(kind, p)
        res = run["raw"][name]
        missing = next((r["missing"] for r in res["rev"] if "missing" in r), None)
        tree_missing = next((r["missing"] for r in res["tree"] if "missing" in r), None)
        if tree_missing:
            rows.append({"workload": name, "figure": "(not run)", "better": "higher", "rev": [], "tree": [],
                         "missing": tree_missing})
            continue
        if kind == "micro":
            names = []
            for r in res["tree"] + res["rev"]:
                names += [n for n in r if n not in ("failed", "missing") and n not in names]
            figures = [(n, "lower") for n in names]
        else:
            figures = ECHO_FIGURES if kind == "echo" else HTTP_FIGURES
        for fig, better in figures:
            row = {"workload": name if kind != "micro" else f"micro: {fig}",
                   "figure": "ns per item" if kind == "micro" else fig, "better": better,
                   "rev": [r.get(fig) for r in res["rev"]], "tree": [r.get(fig) for r in res["tree"]]}
            if kind == "echo" and fig != "p99 µs":
                row["yardstick"] = [r.get(fig) for r in res["yardstick"]]
            if missing:
                row["missing"] = f"not in REV ({missing})"
            elif kind == "micro" and not compare_table.values(row["rev"]):
                row["missing"] = "not in REV"
            elif kind == "micro" and not compare_table.values(row["tree"]):
                row["missing"], row["missing_in"] = "not in the work tree", "tree"
            rows.append(row)
        failed = sum(1 for side in ("rev", "tree") for r in res[side] if "failed" in r)
        if failed:
            why = next(r["failed"] for side in ("rev", "tree") for r in res[side] if "failed" in r)
            rows.append({"workload": name, "figure": f"failed runs: {failed}", "better": "higher", "rev": [],
                         "tree": [], "missing": why[:80].replace("|", "/")})
    return rows


def section_name(spec):
    return "compare " + re.sub(r"[^A-Za-z0-9~^._-]", "_", spec)


COMPARISONS_INTRO = """## Comparisons: the work tree against an earlier commit (issue 28)

Written by `scripts/bench --compare REV`, one block per REV as given on the
command line (a later run with the same REV replaces its block). The project's
notes quote this table for every change to runtime/."""


def write_results(path, run, table):
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if "<!-- comparisons:begin -->" not in text:
        results_md.write_section(path, "comparisons", COMPARISONS_INTRO)
    results_md.write_section(path, section_name(run["rev"]["spec"]), table, before="<!-- comparisons:end -->")


def plan(args, rev, tree):
    lines = [f"REV {rev['spec']} = {rev['sha'][:10]} ({rev['subject'][:70]})",
             f"  source {os.path.relpath(os.path.join(COMPARE_DIR, rev['sha'][:12], 'src'), ROOT)}, "
             f"build {os.path.relpath(os.path.join(COMPARE_DIR, rev['sha'][:12], 'build'), ROOT)}",
             f"work tree {tree['sha'][:10]}{' (uncommitted changes)' if tree['dirty'] else ''}, "
             f"build {os.path.relpath(TREE_BUILD, ROOT)}",
             f"{args.rounds} rounds of {args.seconds:g} s per echo and wrk run:"]
    lines += [f"  {cell_name(k, p)}" for k, p in workloads(args.quick)]
    return "\n".join(lines)


def main(argv):
    try:
        args = parse_args(argv)
        if args.render_only:
            with open(args.render_only) as f:
                run = json.load(f)
        else:
            rev, tree = resolve(args.rev), tree_info()
            if args.plan:
                print(plan(args, rev, tree))
                return 0
            start = time.time()
            run = measure(args, rev, tree)
            os.makedirs(COMPARE_DIR, exist_ok=True)
            with open(os.path.join(COMPARE_DIR, "last_run.json"), "w") as f:
                json.dump(run, f, indent=1)
            log(f"bench --compare: measured in {(time.time() - start) / 60:.1f} minutes")
    except UsageError as e:
        print(f"scripts/bench --compare: {e}", file=sys.stderr)
        return 2
    rows = rows_of(run)
    table = compare_table.render(run, rows)
    write_results(args.results, run, table)
    print(table)
    return 1 if compare_table.regressions(rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
