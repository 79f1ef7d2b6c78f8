#!/usr/bin/env python3
"""Does a burst of new connections hold up the connections already open?

examples/http_server on 2 carriers serves wrk -c 100 and a keep-alive probe
client that sends one request at a time and times each. After 1.5 s, N new
connections (10,000 by default) are opened as fast as Python can, each
sending an unfinished request head, as a slowloris flood would; the server
times them out 2 s later (--request-timeout 2). Prints, per round, the
probe's worst request, when it happened (t = 0 at the start of the burst)
and the p99 of the probe's requests.

Give several builds to compare them in interleaved rounds (A B A B ...):

  perf/servers/accept_burst.py BUILD_DIR [BUILD_DIR ...] [--rounds 4] [--connections 10000]

Found the accept-burst starvation fixed in tcp_listener::accept (before:
worst request 28-757 ms; after: 12-14 ms, release builds, 2026-12-05).
"""
import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "integration"))
from harness import start_server, stop_server  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("builds", nargs="+")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--connections", type=int, default=10000)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count = min(args.connections, hard - 300)


def one_round(exe):
    root = tempfile.mkdtemp(prefix="bobbin_burst_")
    server, port = start_server([exe, "--port", "0", "--carriers", "2", "--root", root, "--request-timeout", "2"])
    wrk = subprocess.Popen(["wrk", "-t", "1", "-c", "100", "-d", "6s", f"http://127.0.0.1:{port}/"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples, stop = [], threading.Event()

    def probe():
        c = socket.create_connection(("127.0.0.1", port))
        while not stop.is_set():
            t = time.monotonic()
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            samples.append((t, time.monotonic() - t))
            time.sleep(0.002)
        c.close()

    th = threading.Thread(target=probe)
    th.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    for s in socks:
        try:
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        except OSError:
            pass
    time.sleep(4)
    stop.set()
    th.join()
    wrk.wait()
    for s in socks:
        s.close()
    stop_server(server)
    subprocess.run(["rm", "-rf", root])
    worst_t, worst = max(samples, key=lambda s: s[1])
    lat = sorted(s[1] for s in samples)
    return worst * 1000, worst_t - t0, lat[len(lat) * 99 // 100] * 1000


results = {b: [] for b in args.builds}
for r in range(args.rounds):
    for b in args.builds:
        worst, at, p99 = one_round(os.path.join(b, "examples", "http_server"))
        results[b].append(worst)
        print(f"round {r + 1} {b}: worst probe request {worst:.1f} ms at t={at:+.2f} s, p99 {p99:.1f} ms", flush=True)
print(f"{count} new connections beside wrk -c 100; worst probe request per round:")
for b, w in results.items():
    print(f"  {b}: median {statistics.median(w):.1f} ms, max {max(w):.1f} ms ({', '.join(f'{x:.0f}' for x in w)})")
