#!/usr/bin/env python3
"""The example servers against the real thing, measured side by side in one
run: examples/redis_server vs redis-server (no persistence) under
redis-benchmark, and examples/http_server (on io_uring, and on epoll as where
io_uring is refused) vs nginx under wrk, cross-checked with ApacheBench (ab,
perf/ab.py), at 50 and 1,000 connections.

Pinning (2-core machine): single-threaded servers (bobbin on 1 carrier,
redis-server, nginx with 1 worker) run on CPU 0 and the load generator on
CPU 1. Two-thread servers (bobbin on 2 carriers, nginx with 2 workers) get
both CPUs and share them with the load generator, which then competes with
them: their figures are what 2 cores give to server plus client together.

Rounds are interleaved (A, B, C, A, B, C, ...) so slow phases of a noisy
machine hit every server alike; the tables give the median of the rounds.
Writes the section between the "servers" markers of perf/RESULTS.md.

  perf/servers/compare_servers.py --build build-release [--rounds 3] [--seconds 5]
"""
import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import results_md  # noqa: E402  (perf/results_md.py)
import wrk  # noqa: E402  (perf/wrk.py)
import ab  # noqa: E402  (perf/ab.py)
from procs import cpu_seconds, server  # noqa: E402  (perf/procs.py)
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--build", default="build-release")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=int, default=5)
ap.add_argument("--results", default="perf/RESULTS.md")
ap.add_argument("--command", default="scripts/bench --servers")
args = ap.parse_args()

REDIS_PORT = 16479
HTTP_PORT = 18480
BODY = "Hello from bobbin\n"


def run_redis_benchmark(port, conns, pipeline, client_cpus):
    n = 200000 if pipeline == 1 else 2000000
    out = subprocess.run(["taskset", "-c", client_cpus, "redis-benchmark", "-p", str(port), "-c", str(conns),
                          "-n", str(n), "-P", str(pipeline), "-t", "set,get", "--csv"], capture_output=True, text=True,
                         timeout=600).stdout
    rows = {}
    for line in out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) >= 6 and f[0] in ("SET", "GET"):
            rows[f[0]] = (float(f[1]), float(f[5]))  # rps, p50 ms
    return rows, 2 * n


def run_wrk(port, conns, seconds, client_cpus):
    out = subprocess.run(["taskset", "-c", client_cpus, "wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s",
                          "--latency", f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    r = wrk.parse(out)
    if r is None:
        raise RuntimeError(f"wrk gave no result on port {port}")
    return r["rps"], r["p50_ms"], r["errors"] > 0


def nginx_conf(tmp, workers):
    conf = os.path.join(tmp, f"nginx{workers}.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
worker_processes {workers};
pid {tmp}/nginx{workers}.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{HTTP_PORT};
    location = / {{ default_type "text/plain; charset=utf-8"; return 200 "{BODY.strip()}\\n"; }}
  }}
}}
""")
    return conf


def main():
    for tool in ["redis-server", "redis-benchmark", "wrk", "ab", "nginx", "taskset"]:
        if shutil.which(tool) is None:
            sys.exit(f"compare_servers: {tool} not found (scripts/bootstrap --bench installs it)")
    redis_exe = os.path.join(args.build, "examples/redis_server")
    http_exe = os.path.join(args.build, "examples/http_server")
    tmp = tempfile.mkdtemp(prefix="bobbin_cmp_")
    redis_servers = [
        ("bobbin redis_server, 1 carrier", [redis_exe, "--port", str(REDIS_PORT), "--carriers", "1"], "0", "1"),
        ("bobbin redis_server, 2 carriers", [redis_exe, "--port", str(REDIS_PORT), "--carriers", "2"], "0,1", "0,1"),
        ("redis-server 7 (io-threads 1)", ["redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
                                     "--bind", "127.0.0.1", "--protected-mode", "no", "--dir", tmp], "0", "1"),
    ]
    http_servers = [
        ("bobbin http_server, 1 carrier", [http_exe, "--port", str(HTTP_PORT), "--carriers", "1", "--root", tmp], "0", "1"),
        ("bobbin http_server, 2 carriers", [http_exe, "--port", str(HTTP_PORT), "--carriers", "2", "--root", tmp], "0,1", "0,1"),
        ("nginx, 1 worker", ["nginx", "-c", nginx_conf(tmp, 1), "-p", tmp], "0", "1"),
        ("nginx, 2 workers", ["nginx", "-c", nginx_conf(tmp, 2), "-p", tmp], "0,1", "0,1"),
        # As where io_uring is refused (issue 36): against nginx's one worker,
        # which waits on epoll too.
        ("bobbin http_server, 1 carrier, epoll backend",
         ["env", "BOBBIN_BACKEND=epoll", http_exe, "--port", str(HTTP_PORT), "--carriers", "1", "--root", tmp],
         "0", "1"),
    ]
    conns_list = [50, 1000]
    redis_res = {}  # (name, conns, pipeline, test) -> [(rps, p50)]
    redis_cpu = {}  # (name, conns, pipeline) -> [server CPU microseconds per request]
    http_res = {}   # (name, conns) -> [(rps, p50, errors, cpu us per request)]
    ab_res = {}     # (name, conns) -> [ab's result dict] (the cross-check)
    pipelines = [1, 16]
    for rnd in range(args.rounds):
        for conns in conns_list:
            for name, argv, cpus, client in redis_servers:
                with server(name, argv, REDIS_PORT, cpus) as s:
                    for pipeline in pipelines:
                        c0 = cpu_seconds(s.proc.pid)
                        rows, requests = run_redis_benchmark(REDIS_PORT, conns, pipeline, client)
                        redis_cpu.setdefault((name, conns, pipeline), []).append(
                            (cpu_seconds(s.proc.pid) - c0) * 1e6 / requests)
                        for test, v in rows.items():
                            redis_res.setdefault((name, conns, pipeline, test), []).append(v)
                print(f"round {rnd + 1} redis c={conns} {name} done", file=sys.stderr, flush=True)
            for name, argv, cpus, client in http_servers:
                with server(name, argv, HTTP_PORT, cpus) as s:
                    c0 = cpu_seconds(s.proc.pid)
                    rps, p50, errors = run_wrk(HTTP_PORT, conns, args.seconds, client)
                    cpu = (cpu_seconds(s.proc.pid) - c0) * 1e6 / max(1.0, rps * args.seconds)
                    http_res.setdefault((name, conns), []).append((rps, p50, errors, cpu))
                    ab_res.setdefault((name, conns), []).append(
                        ab.run(f"http://127.0.0.1:{HTTP_PORT}/", conns, seconds=args.seconds, cpus=client,
                               timeout=args.seconds + 120))
                print(f"round {rnd + 1} http c={conns} {name} done", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    med = lambda xs: statistics.median(xs)
    lines = []
    lines.append("## Example servers vs the real thing (issue 4)\n")
    lines.append(f"- Command: `{args.command}` ({args.rounds} interleaved rounds, median shown)")
    lines.append(f"- Date: {datetime.date.today().isoformat()}")
    lines.append(f"- Machine: {results_md.machine()}")
    lines.append("- Pinning: 1-thread servers on CPU 0, load generator on CPU 1; 2-thread servers on "
                 "CPUs 0-1, sharing them with the load generator.\n")
    ref_name = redis_servers[2][0]
    for pipeline in pipelines:
        lines.append(f"### Redis protocol: `redis-benchmark -t set,get -c C -P {pipeline}`\n")
        lines.append("| server | C | SET req/s | GET req/s | GET p50 ms | server CPU µs/req | GET vs redis-server |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for conns in conns_list:
            ref = med([r for r, _ in redis_res.get((ref_name, conns, pipeline, "GET"), [(0, 0)])])
            for name, *_ in redis_servers:
                key = (name, conns, pipeline)
                st = med([r for r, _ in redis_res.get(key + ("SET",), [(0, 0)])])
                g = med([r for r, _ in redis_res.get(key + ("GET",), [(0, 0)])])
                p = med([p for _, p in redis_res.get(key + ("GET",), [(0, 0)])])
                cpu = med(redis_cpu.get(key, [0]))
                ratio = f"{g / ref:.2f}x" if ref else "n/a"
                lines.append(f"| {name} | {conns} | {st:,.0f} | {g:,.0f} | {p:.3f} | {cpu:.2f} | {ratio} |")
        lines.append("")

    def http_rps(name, conns):
        rows = http_res.get((name, conns), [])
        return med([r[0] for r in rows]) if rows else 0

    # Each bobbin row's peer: nginx with as many threads (1 worker for the
    # epoll row, which waits on epoll as nginx does).
    def peer_of(i):
        return http_servers[2 + (i % 2)][0] if i < 2 else http_servers[2][0] if i == 4 else None

    def ab_rps(name, conns):
        rows = ab_res.get((name, conns), [])
        return med([r["rps"] for r in rows]) if rows else 0

    lines.append(f"### HTTP/1.1: `wrk -t 1 -c C -d {args.seconds}s http://127.0.0.1/` (keep-alive, 18-byte body)\n")
    lines.append("| server | C | req/s | p50 ms | errors | server CPU µs/req | vs nginx (same threads) |")
    lines.append("|---|---:|---:|---:|---|---:|---:|")
    for conns in conns_list:
        for i, (name, *_) in enumerate(http_servers):
            rows = http_res.get((name, conns), [])
            rps = med([r[0] for r in rows]) if rows else 0
            p50 = med([r[1] for r in rows]) if rows else 0
            errs = "yes" if any(r[2] for r in rows) else "none"
            peer = peer_of(i)
            ratio = ""
            if peer:
                prow = http_res.get((peer, conns), [])
                prps = med([r[0] for r in prow]) if prow else 0
                ratio = f"{rps / prps:.2f}x" if prps else "n/a"
            cpu = med([r[3] for r in rows]) if rows else 0
            lines.append(f"| {name} | {conns} | {rps:,.0f} | {p50:.3f} | {errs} | {cpu:.2f} | {ratio} |")
    lines.append("")

    # The cross-check: each bobbin row's ratio to its peer under ab beside
    # the same under wrk, from the same rounds (the server stays up between
    # the two generators).
    lines.append(f"### HTTP/1.1 cross-checked with ApacheBench: `ab -k -c C -t {args.seconds}` "
                 "(HTTP/1.0 keep-alive), same rounds\n")
    lines.append("Ratio = bobbin ÷ nginx with as many threads (1 worker for the epoll row), req/s medians under "
                 "each generator. Rows where the two generators' ratios differ by more than 10% are marked.\n")
    lines.append("| server | C | ab req/s | ab p50 ms | ab errors | vs nginx (ab) | vs nginx (wrk) | generators agree |")
    lines.append("|---|---:|---:|---:|---|---:|---:|---|")
    for conns in conns_list:
        for i, (name, *_) in enumerate(http_servers):
            rows = ab_res.get((name, conns), [])
            rps = ab_rps(name, conns)
            p50s = [r["p50_ms"] for r in rows if r["p50_ms"] is not None]
            p50 = f"{med(p50s):.0f}" if p50s else "n/a"
            errs = "yes" if any(r["errors"] for r in rows) else "none"
            peer = peer_of(i)
            ab_ratio = wrk_ratio = agree = ""
            if peer:
                pa, pw = ab_rps(peer, conns), http_rps(peer, conns)
                ra = rps / pa if pa else 0
                rw = http_rps(name, conns) / pw if pw else 0
                ab_ratio, wrk_ratio = f"{ra:.2f}x", f"{rw:.2f}x"
                if ra and rw:
                    gap = abs(ra - rw) / min(ra, rw)
                    agree = "yes" if gap <= 0.10 else f"**differ** by {gap * 100:.0f}%"
            lines.append(f"| {name} | {conns} | {rps:,.0f} | {p50} | {errs} | {ab_ratio} | {wrk_ratio} | {agree} |")
    lines.append("")

    # Issue 10's targets for the example servers, each with its verdict: the
    # Redis example on 1 carrier against redis-server with pipelining, and
    # http_server on 2 carriers against itself on 1 (nginx's 2 workers
    # against its 1, from the same run, for context: on this 2-core machine
    # the load generator shares the cores a 2-thread server uses).
    lines.append("### Targets for the example servers (issues 10 and 36)\n")
    lines.append("| check | C | ratio | target | verdict | context |")
    lines.append("|---|---:|---:|---:|---|---|")
    bobbin_get = med([r for r, _ in redis_res.get((redis_servers[0][0], 50, 16, "GET"), [(0, 0)])])
    redis_get = med([r for r, _ in redis_res.get((ref_name, 50, 16, "GET"), [(0, 0)])])
    ratio = bobbin_get / redis_get if redis_get else 0
    lines.append(f"| Redis example (1 carrier) vs redis-server, `-P 16` GET | 50 | {ratio:.2f}x | ≥ 1.0x | "
                 f"{results_md.verdict(ratio, 1.0)} | |")
    for conns in conns_list:
        one, two = http_rps(http_servers[0][0], conns), http_rps(http_servers[1][0], conns)
        ratio = two / one if one else 0
        n1, n2 = http_rps(http_servers[2][0], conns), http_rps(http_servers[3][0], conns)
        context = f"nginx 2 workers vs 1: {n2 / n1:.2f}x" if n1 else ""
        lines.append(f"| http_server, 2 carriers vs 1 (wrk) | {conns} | {ratio:.2f}x | ≥ 1.0x | "
                     f"{results_md.verdict(ratio, 1.0)} | {context} |")
    # Issue 36: bobbin on epoll against nginx's one worker (epoll too), under both generators.
    for conns in conns_list:
        for gen, rps_of in (("wrk", http_rps), ("ab", ab_rps)):
            e, n1 = rps_of(http_servers[4][0], conns), rps_of(http_servers[2][0], conns)
            ratio = e / n1 if n1 else 0
            io = rps_of(http_servers[0][0], conns)
            context = f"bobbin on epoll vs on io_uring: {e / io:.2f}x" if io else ""
            lines.append(f"| http_server on epoll (1 carrier) vs nginx 1 worker ({gen}) | {conns} | {ratio:.2f}x | "
                         f"≥ 1.0x | {results_md.verdict(ratio, 1.0)} | {context} |")
    lines.append("")
    section = "\n".join(lines)

    results_md.write_section(args.results, "servers", section)
    print(section)


main()
