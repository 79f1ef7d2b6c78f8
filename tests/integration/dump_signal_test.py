#!/usr/bin/env python3
"""A fiber dump asked for from outside: examples/http_server runs with
BOBBIN_DUMP_SIGNAL=SIGQUIT and BOBBIN_DUMP_FORMAT=json under wrk; two
SIGQUITs while it serves must each append one JSON dump (parsed here with
Python's json) listing its fibers with stacks, and the server must keep
serving: wrk sees no errors, curl gets an answer afterwards, SIGTERM still
stops it cleanly. Prints "N passed, M failed"."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from harness import check, finish, start_server

server_exe = sys.argv[1]
work = tempfile.mkdtemp(prefix="bobbin_dump_")
dump_file = os.path.join(work, "dumps.jsonl")
env = dict(os.environ, BOBBIN_DUMP_SIGNAL="SIGQUIT", BOBBIN_DUMP_FILE=dump_file, BOBBIN_DUMP_FORMAT="json")
server, port = start_server([server_exe, "--port", "0", "--carriers", "2", "--root", work], env=env)
try:
    base = f"http://127.0.0.1:{port}"
    wrk = subprocess.Popen(["wrk", "-t", "1", "-c", "50", "-d", "4s", "--timeout", "10s", base + "/"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    for _ in range(2):
        server.send_signal(signal.SIGQUIT)
        time.sleep(0.7)
    lines = []
    deadline = time.time() + 15
    while time.time() < deadline:
        if os.path.exists(dump_file):
            with open(dump_file) as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
            if len(lines) >= 2:
                break
        time.sleep(0.1)
    out, err = wrk.communicate(timeout=60)
    check("two signals, two dumps", len(lines) == 2, f"{len(lines)} lines")
    for n, line in enumerate(lines):
        try:
            d = json.loads(line)
        except ValueError as e:
            check(f"dump {n} is JSON", False, str(e))
            continue
        fibers = d.get("fibers", [])
        # The accept loop, the connection fibers and the signal watcher.
        check(f"dump {n}: the fibers of 50 connections and more", len(fibers) >= 50, len(fibers))
        for f in fibers:
            if not all(k in f for k in ("id", "name", "state", "wait_reason", "carrier", "stack")):
                check(f"dump {n}: fiber fields", False, f)
                break
        walked = [f for f in fibers if f["stack"]]
        check(f"dump {n}: stacks of parked and runnable fibers", len(walked) >= len(fibers) // 2,
              f"{len(walked)} of {len(fibers)}")
        check(f"dump {n}: every stack unwinds to the fiber's base",
              all("fiber_entry" in f["stack"][-1]["function"] for f in walked),
              [f["stack"] for f in walked if "fiber_entry" not in f["stack"][-1]["function"]][:1])
        check(f"dump {n}: a connection's stack in the server's own code",
              any(any("serve_connection" in fr["function"] for fr in f["stack"]) for f in walked),
              [(f["state"], f["wait_reason"], [fr["function"] for fr in f["stack"]]) for f in fibers[:3]])
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    check("wrk kept being served through the dumps, no errors",
          rps is not None and float(rps.group(1)) > 100 and "Socket errors" not in out and "Non-2xx" not in out, out)
    r = subprocess.run(["curl", "-s", "--max-time", "10", base + "/"], capture_output=True, timeout=30)
    check("still serving after the dumps", r.stdout == b"Hello from bobbin\n", r.stdout)
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=15)
    check("SIGTERM still stops it, exit 0", rc == 0, f"rc={rc} {server.stderr.read()[-3000:]}")
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
    subprocess.run(["rm", "-rf", work])

finish()
