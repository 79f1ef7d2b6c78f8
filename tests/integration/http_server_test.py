#!/usr/bin/env python3
"""examples/http_server judged by real clients: curl and wrk, plus raw
sockets for what curl will not send (pipelining, malformed requests).

Starts the server on 127.0.0.1 with an ephemeral port and a temporary
--root, checks replies (status, headers, bodies), and ends with a graceful
stop: SIGTERM while a request is half sent, which must still be answered,
and a clean exit 0. Prints "N passed, M failed"; exits non-zero on a failure.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, finish, raw, start_server

server_exe = sys.argv[1]
def curl(*args):
    r = subprocess.run(["curl", "-s", "--max-time", "10", *args], capture_output=True, timeout=30)
    return r.returncode, r.stdout


root = tempfile.mkdtemp(prefix="bobbin_http_")
outside = tempfile.mkdtemp(prefix="bobbin_http_outside_")
with open(os.path.join(outside, "secret.txt"), "w") as f:
    f.write("root:secret\n")
os.makedirs(os.path.join(root, "docs"))
with open(os.path.join(root, "index.html"), "w") as f:
    f.write("<!doctype html><title>bobbin</title>\n")
with open(os.path.join(root, "docs", "notes.txt"), "w") as f:
    f.write("plain text\n")
big = os.urandom(3 * 1024 * 1024 + 17)
with open(os.path.join(root, "big.bin"), "wb") as f:
    f.write(big)
os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "escape"))
os.symlink("docs/notes.txt", os.path.join(root, "inside"))

server, port = start_server([server_exe, "--port", "0", "--carriers", "2", "--root", root])
try:
    base = f"http://127.0.0.1:{port}"

    rc, body = curl(base + "/")
    check("GET /", rc == 0 and body == b"Hello from bobbin\n", body)

    rc, out = curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                   base + "/", base + "/static/index.html")
    lines = out.decode().split()
    check("keep-alive reuses the connection", lines == ["200", "1", "200", "0"], out)

    # HTTP/1.0 keep-alive (RFC 9112 9.3): the response must say so, or the
    # client waits for a close. ApacheBench -k speaks exactly this.
    s10 = socket.create_connection(("127.0.0.1", port), timeout=3)
    s10.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    got = b""
    while b"Hello from bobbin\n" not in got:
        chunk = s10.recv(4096)
        if not chunk:
            break
        got += chunk
    s10.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")  # same connection, still open
    second = s10.recv(4096)
    s10.close()
    check("HTTP/1.0 keep-alive answered with Connection: keep-alive",
          b"Connection: keep-alive\r\n" in got and second.startswith(b"HTTP/1.1 200"), got + second)
    ab = subprocess.run(["ab", "-q", "-k", "-c", "10", "-n", "200", "-s", "10", base + "/"], capture_output=True,
                        text=True, timeout=60).stdout
    check("ab -k: 200 keep-alive requests, none failed",
          "Failed requests:        0" in ab and "Keep-Alive requests:    200" in ab, ab[-600:])
    rc, out = curl("-o", "/dev/null", "-w", "%{http_code}", base + "/sleep?ms=30")
    check("GET /sleep?ms=30", out == b"200", out)
    rc, out = curl("-o", "/dev/null", "-w", "%{http_code}", base + "/sleep?ms=-1")
    check("GET /sleep?ms=-1 is 400", out == b"400", out)

    rc, out = curl("-i", base + "/static/index.html")
    check("static html", b"200 OK" in out and b"Content-Type: text/html" in out and out.endswith(b"<title>bobbin</title>\n"), out[:300])
    rc, out = curl("-i", base + "/static/docs/notes.txt")
    check("static text in a subdirectory", b"Content-Type: text/plain" in out and out.endswith(b"plain text\n"), out[:300])
    rc, out = curl(base + "/static/inside")
    check("symlink that stays inside", out == b"plain text\n", out)
    rc, out = curl(base + "/static/big.bin")
    check("3 MiB file streams intact", out == big, f"{len(out)} bytes")
    rc, out = curl("-I", base + "/static/big.bin")
    check("HEAD gives the length, no body", b"Content-Length: %d" % len(big) in out and b"application/octet-stream" in out, out)

    for path in ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/static/docs/../../" + os.path.relpath(outside, os.path.dirname(root)) + "/secret.txt",
                 "/static//etc/passwd", "/static/escape"]:
        rc, out = curl("--path-as-is", "-w", "\n%{http_code}", base + path)
        check(f"traversal {path}", out.endswith(b"\n403") and b"root:" not in out, out)
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", base + "/static/missing.txt")
    check("missing file", out == b"404", out)
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", base + "/static/bad%zzescape")
    check("malformed percent-escape", out == b"400", out)
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", base + "/static/docs")
    check("directory is not a file", out == b"404", out)

    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", "-H", "X-Huge: " + "a" * 20000, base + "/")
    check("oversized header", out == b"431", out)
    many = []
    for i in range(100):
        many += ["-H", f"X-H{i}: v"]
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", *many, base + "/")
    check("too many headers", out == b"431", out)
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", base + "/" + "a" * 10000)
    check("request line too long", out == b"414", out)

    payload = os.urandom(200000)
    payload_path = os.path.join(root, "payload.bin")
    with open(payload_path, "wb") as f:
        f.write(payload)
    rc, out = curl("--data-binary", "@" + payload_path, "-H", "Content-Type: application/x-test", base + "/echo")
    check("POST /echo 200 kB (Expect: 100-continue)", out == payload, f"{len(out)} bytes")
    big_body = os.path.join(root, "toolarge.bin")
    with open(big_body, "wb") as f:
        f.write(b"x" * (2 * 1024 * 1024))
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", "--data-binary", "@" + big_body, base + "/echo")
    check("body too large", out == b"413", out)
    rc, out = curl("-i", "-X", "DELETE", base + "/")
    check("wrong method", b"405" in out.split(b"\r\n")[0] and b"Allow: GET, HEAD" in out, out[:200])
    rc, out = curl("-w", "%{http_code}", "-o", "/dev/null", base + "/nowhere")
    check("unknown route", out == b"404", out)

    # Pipelining: three requests in one segment, three answers in order.
    data, _ = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                        b"GET /static/docs/notes.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = re.findall(rb"HTTP/1\.1 (\d+)", data)
    check("pipelined requests answered in order",
          statuses == [b"200", b"200", b"200"] and data.index(b"Hello from bobbin") < data.index(b"hello") < data.index(b"plain text"),
          data)
    for name, wire, status in [
        ("garbage", b"GARBAGE\r\n\r\n", b"400"),
        ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n", b"400"),
        ("HTTP/2.0 on the wire", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
        ("unknown transfer coding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", b"501"),
        ("smuggling CL+TE", b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", b"400"),
    ]:
        data, closed = raw(port, wire)
        check(f"malformed: {name}", data.startswith(b"HTTP/1.1 " + status) and closed and b"Connection: close" in data, data)
    # A good request after a bad one on another connection still works.
    rc, body = curl(base + "/")
    check("server unaffected by bad clients", body == b"Hello from bobbin\n", body)

    r = subprocess.run(["wrk", "-t", "2", "-c", "200", "-d", "2s", "--timeout", "10s", base + "/"], capture_output=True, text=True, timeout=60)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    check("wrk -c 200: requests, no errors",
          rps is not None and float(rps.group(1)) > 1000 and "Socket errors" not in r.stdout and "Non-2xx" not in r.stdout,
          r.stdout)
    r = subprocess.run(["wrk", "-t", "2", "-c", "50", "-d", "1s", "--timeout", "10s", base + "/static/index.html"], capture_output=True, text=True, timeout=60)
    check("wrk static file, no errors", "Requests/sec" in r.stdout and "Socket errors" not in r.stdout and "Non-2xx" not in r.stdout, r.stdout)

    # (--timeout 10s: sanitizer builds answer slowly; a request wrk gives up
    # on is slowness, not an error, and would be miscounted as one.)

    # Graceful stop: an idle keep-alive connection is closed, a request in
    # flight (head sent, body not yet) is still answered, then exit 0.
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", port), timeout=5)
    busy.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    time.sleep(0.2)
    server.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    busy.sendall(b"cd")
    reply = b""
    while True:
        b = busy.recv(4096)
        if not b:
            break
        reply += b
    check("in-flight request finished on SIGTERM", reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"abcd") and b"Connection: close" in reply, reply)
    check("idle connection closed on SIGTERM", idle.recv(10) == b"")
    rc = server.wait(timeout=15)
    out = server.stdout.read()
    # The only 5xx answers are the 505 and 501 asked for above.
    check("exit 0 with final counters", rc == 0 and "final:" in out and "5xx=2 " in out,
          f"rc={rc} {out} {server.stderr.read()[-6000:]}")
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
    subprocess.run(["rm", "-rf", root, outside])

finish()
