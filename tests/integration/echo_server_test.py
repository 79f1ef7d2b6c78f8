"""examples/echo_server's stop through cancellation: with connections open,
some idle and some in the middle of a large echo the client does not read,
SIGTERM cancels the scope that holds the connection fibers; every fiber
returns (its socket closes: the clients see end of stream or a reset), and
the server exits 0 at once, with no error counted.

  python3 echo_server_test.py ECHO_SERVER
"""
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish, start_server  # noqa: E402

server, port = start_server([sys.argv[1], "--port", "0", "--carriers", "2"])
try:
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    for s in idle[:10]:  # these have echoed once
        s.sendall(b"ping")
        check("echo before the stop", s.recv(4) == b"ping")
    # Clients that send a lot and read nothing: their server fibers park in
    # a write the peer never drains.
    stuck = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        sent = 0
        try:
            while sent < 64 << 20:
                sent += s.send(b"x" * 65536)
        except BlockingIOError:
            pass
        stuck.append(s)
    time.sleep(0.3)
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=20)
    took = time.monotonic() - start
    out = server.stdout.read()
    check("exit 0 on SIGTERM", rc == 0, f"rc={rc} {server.stderr.read()[-3000:]}")
    check("stopped promptly (cancellation, not a timeout)", took < 3.0, took)
    m = re.search(r"errors=(\d+)", out)
    check("no errors counted", m is not None and m.group(1) == "0", out)
    m = re.search(r"accepted=(\d+)", out)
    check("every connection was accepted", m is not None and int(m.group(1)) == 55, out)
    for s in idle:
        s.settimeout(5)
        try:
            check("idle client sees the close", s.recv(10) == b"")
        except ConnectionResetError:
            check("idle client sees the close", True)
        s.close()
    for s in stuck:
        s.close()
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
finish()
