#!/usr/bin/env python3
"""examples/http_server against hostile-slow clients, with a 2 s request
timeout (--request-timeout 2; 15 s by default):

- slowloris: N connections each send a request head one byte every 0.5 s,
  never finishing it, while wrk runs 100 normal clients. Every slow
  connection must be answered 408 and closed by the server about 2 s after
  its first byte, although bytes keep coming (a per-read timeout would keep
  it open for as long as they do); the normal clients get every answer, and
  in the normal build their p99 stays under 50 ms; the server's RSS grows by
  a bounded amount per slow connection.
- a client that pipelines requests and never reads the answers: the server
  stops reading once it cannot write, so what the client manages to send is
  bounded by the socket buffers, the server's RSS does not grow with it, and
  the connection is cut when the answer's write times out.

Usage: slow_clients_test.py HTTP_SERVER_EXE SLOW_CONNECTIONS NORMAL_BUILD(1, or 0 under the sanitizers)
Prints "N passed, M failed".
"""
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, check_client_that_never_reads, finish, rss_kib, start_server, stop_server

server_exe, slow_count, normal_build = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
slow_count = min(slow_count, hard - 200)  # the server raises its own limit the same way
TIMEOUT_S = 2.0
# How late after its deadline a slow connection may be closed: timers fire
# on busy carriers, and under the sanitizers everything is 5-20x slower.
SLACK_S = 1.5 if normal_build else 5.0
root = tempfile.mkdtemp(prefix="bobbin_slow_")
server, port = start_server([server_exe, "--port", "0", "--carriers", "2", "--root", root,
                             "--request-timeout", str(TIMEOUT_S)])


try:
    # --- slowloris plus normal clients -------------------------------------
    base_rss = rss_kib(server.pid)
    slow = []  # [socket, start, last byte sent, received, closed at]
    for _ in range(slow_count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        s.setblocking(False)
        now = time.monotonic()
        slow.append([s, now, now, b"", None])
    connected_rss = rss_kib(server.pid)
    wrk = subprocess.Popen(["wrk", "-t", "1", "-c", "100", "-d", "3s", "--latency", "--timeout", "10s",
                            f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = slow[-1][1] + TIMEOUT_S + SLACK_S + 0.5  # the last one's deadline and slack, while bytes keep coming
    while time.monotonic() < end and any(c[4] is None for c in slow):
        for c in slow:
            if c[4] is not None:
                continue
            try:
                data = c[0].recv(4096)
                if data:
                    c[3] += data
                else:
                    c[4] = time.monotonic()  # the server closed it
                continue
            except BlockingIOError:
                pass
            except ConnectionResetError:
                c[4] = time.monotonic()
                continue
            if time.monotonic() - c[2] >= 0.5:
                try:
                    c[0].send(b"a")
                    c[2] = time.monotonic()
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
        time.sleep(0.05)
    wrk_out = wrk.communicate(timeout=60)[0]
    closed = [c for c in slow if c[4] is not None]
    late = [c[4] - c[1] for c in closed if c[4] - c[1] > TIMEOUT_S + SLACK_S]
    answered = sum(1 for c in slow if c[3].startswith(b"HTTP/1.1 408 "))
    spans = sorted(c[4] - c[1] for c in closed)
    print(f"slowloris: {len(closed)}/{slow_count} closed by the server, {answered} with a 408; "
          f"first byte to close: min {spans[0] if spans else 0:.2f} s, max {spans[-1] if spans else 0:.2f} s; "
          f"RSS {base_rss} KiB idle, {connected_rss} KiB with them all open")
    check("every slow connection closed by the server while still sending", len(closed) == slow_count,
          f"{slow_count - len(closed)} still open")
    check("closed at the request deadline, not the last byte's", not late, f"{len(late)} late: {late[:5]}")
    # A byte sent just as the deadline passed makes the close a reset, which
    # may take the 408 with it; nearly all must have been answered.
    check("slow connections answered 408", answered >= slow_count * 0.9, f"{answered} of {slow_count}")
    per_conn = (connected_rss - base_rss) / slow_count
    bound = 64 if normal_build else 512  # the sanitizers' shadow memory, redzones and 4x stacks
    check(f"RSS per slow connection bounded (under {bound} KiB)", per_conn < bound, f"{per_conn:.1f} KiB")
    n = re.search(r"(\d+) requests in", wrk_out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", wrk_out)
    p99_ms = None
    if p99:
        p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    print(f"normal clients beside them: wrk -c 100, {n.group(1) if n else '?'} requests, p99 {p99_ms} ms")
    check("normal clients: answers, no errors", n is not None and int(n.group(1)) > 100 and
          "Socket errors" not in wrk_out and "Non-2xx" not in wrk_out, wrk_out)
    if normal_build:
        check("normal clients: p99 under 50 ms", p99_ms is not None and p99_ms < 50, wrk_out)
    for c in slow:
        c[0].close()

    # --- pipelining without reading -----------------------------------------
    check_client_that_never_reads(port, server.pid, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 64, TIMEOUT_S + 5)
    rc, _ = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True).returncode, None
    check("the server still answers", rc == 0)
finally:
    stop_server(server)
    subprocess.run(["rm", "-rf", root])

finish()
