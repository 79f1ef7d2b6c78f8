"""One echo measurement, shared by perf/echo/compare_echo.py and
scripts/bench --compare: a server started pinned to its CPUs, a load
generator (perf/load/echo_load or perf/go/echoload) pinned to its own,
reading the server's CPU time through --server-pid."""
import json
import os
import subprocess

from procs import server  # perf/procs.py


def run(exe, generator, threads, conns, port, server_cpus, client_cpus, seconds, warmup, size=64, env=()):
    """The generator's JSON result (throughput_rps, p50_us, p99_us, p999_us,
    errors, connect_errors, server_cpu_us_per_msg, ...), with "failed": why
    when the generator exited non-zero or wrote no result. `env`: NAME=VALUE
    settings for the server (through env(1), which execs it: the pid read
    for its CPU time is the server's)."""
    argv = (["env", *env] if env else []) + [exe, "--port", str(port), "--threads", str(threads)]
    with server(exe, argv, port, server_cpus) as s:
        cmd = ["taskset", "-c", client_cpus, generator, "--port", str(port), "--connections", str(conns),
               "--size", str(size), "--duration", str(seconds), "--warmup", str(warmup),
               "--server-pid", str(s.proc.pid)]
        if os.path.basename(generator) == "echo_load":
            cmd.append("--json")  # go_echoload writes JSON only
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 180)
    try:
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"failed": out.stderr.strip()[-200:] or f"exit {out.returncode}"}
    if out.returncode != 0:
        result["failed"] = out.stderr.strip()[-200:] or f"exit {out.returncode}"
    return result
