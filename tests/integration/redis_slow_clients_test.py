#!/usr/bin/env python3
"""examples/redis_server against slow and non-reading clients, started with
--timeout 2 (Redis's `timeout`; 0, never, by default):

- a client that sends a 63 MiB bulk string slowly (1 MiB every 50 ms) while
  redis-benchmark runs GET/SET beside it: the benchmark sees no errors, the
  SET completes with +OK and the value reads back whole, and the server's
  RSS grows by a small multiple of the value (the buffered request and the
  stored value), not more;
- a client that pipelines PINGs and never reads the replies: the server
  stops reading once it cannot write, so what the client can send is bounded
  by the socket buffers, RSS does not grow, and the client is cut when the
  reply's write has waited --timeout;
- a client that connects and sends nothing is closed after --timeout.

Usage: redis_slow_clients_test.py REDIS_SERVER_EXE [NORMAL_BUILD (1, or 0 under the sanitizers)]. Prints "N passed, M failed".
"""
import socket
import subprocess
import sys
import time

from harness import check, check_client_that_never_reads, finish, rss_kib, start_server, stop_server

server_exe = sys.argv[1]
normal_build = len(sys.argv) < 3 or sys.argv[2] == "1"
# The sanitizers' shadow memory multiplies every byte the server holds
# (ThreadSanitizer: 681 MiB for the 63 MiB value, 10.8x).
RSS_FACTOR = 4 if normal_build else 16
TIMEOUT_S = 2.0
server, port = start_server([server_exe, "--port", "0", "--carriers", "2", "--timeout", str(TIMEOUT_S)])


def read_reply(s, n):
    data = b""
    while len(data) < n:
        b = s.recv(1 << 20)
        if not b:
            break
        data += b
    return data


try:
    # --- a 63 MiB bulk string, slowly, beside normal clients ----------------
    before = rss_kib(server.pid)
    size = 63 * 1024 * 1024
    bench = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", "20", "-n", "2000000",
                              "-q", "--csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$%d\r\n" % size)
    piece = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(size // len(piece)):
        s.sendall(piece)
        time.sleep(0.05)
    s.sendall(b"\r\n")
    reply = s.recv(64)
    peak = rss_kib(server.pid)
    s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
    head = b"$%d\r\n" % size
    got = read_reply(s, len(head) + size + 2)
    s.close()
    bench.terminate()
    out, err = bench.communicate(timeout=30)
    check("slow 63 MiB SET answered +OK", reply == b"+OK\r\n", reply)
    check("the value reads back whole", got == head + piece * (size // len(piece)) + b"\r\n", len(got))
    growth_mib = (peak - before) / 1024
    print(f"slow bulk: RSS {before} -> {peak} KiB ({growth_mib:.0f} MiB for a 63 MiB value)")
    check(f"RSS growth bounded by a small multiple of the value (under {RSS_FACTOR}x)", growth_mib < RSS_FACTOR * 63,
          f"{growth_mib:.0f} MiB")
    check("redis-benchmark beside it: no errors", "ERR" not in out and "rror" not in err, (out[-300:], err[-300:]))

    # --- pipelining without reading ------------------------------------------
    subprocess.run(["redis-cli", "-p", str(port), "DEL", "big"], capture_output=True)
    # A stall limit, not a whole-write limit: up to twice --timeout.
    check_client_that_never_reads(port, server.pid, b"PING\r\n" * 4096, 2 * TIMEOUT_S + 5)

    # --- an idle client --------------------------------------------------------
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S + 10)
    t0 = time.monotonic()
    try:
        closed = s.recv(16) == b""
    except ConnectionResetError:
        closed = True
    took = time.monotonic() - t0
    s.close()
    check("an idle client is closed after --timeout", closed and TIMEOUT_S - 0.1 <= took < TIMEOUT_S + 5, took)
    r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True, text=True)
    check("the server still answers", r.stdout.strip() == "PONG", r.stdout)
finally:
    stop_server(server)

finish()
