#!/usr/bin/env python3
"""examples/http_server against HTTP clients nobody here wrote, on the rules
they depend on: persistence (RFC 9112 section 9.3) both ways and in both
versions, Content-Length and chunked request bodies (section 7.1),
Expect: 100-continue (RFC 9110 section 10.1.1), HEAD, and pipelining.

The clients, all Debian packages: Python's http.client and urllib, the
requests library (python3-requests), curl, wget, ApacheBench and wrk (with
a Lua script that pipelines). Where a client's own judgement is the check
(http.client deciding from the response whether the connection persists;
a second request on a connection after HEAD, which a body sent in error
would corrupt), the test asks the client rather than parsing bytes itself.

Usage: http_conformance_test.py HTTP_SERVER_EXE. Prints "N passed, M failed".
"""
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.request

try:
    import requests
except ImportError:
    # The python3 meson found may not be Debian's (a pyenv build, say);
    # scripts/bootstrap installs Debian's python3-requests, which is pure
    # Python, so that one serves.
    sys.path.append("/usr/lib/python3/dist-packages")
    import requests

from harness import check, finish, read_until_close, start_server, stop_server

server_exe = sys.argv[1]
root = tempfile.mkdtemp(prefix="bobbin_http_conf_")
with open(os.path.join(root, "index.html"), "w") as f:
    f.write("<title>bobbin</title>\n")
server, port = start_server([server_exe, "--port", "0", "--carriers", "2", "--root", root])
base = f"http://127.0.0.1:{port}"
HELLO = b"Hello from bobbin\n"


def peer_closed(sock, timeout=2.0):
    """True if the server closes `sock` within `timeout` (after any bytes)."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (socket.timeout, ConnectionResetError):
        return False


def run(*argv, timeout=60):
    return subprocess.run(list(argv), capture_output=True, timeout=timeout)


try:
    # --- Persistence, RFC 9112 section 9.3, judged by http.client ---------
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    sock = c.sock
    check("1.1 default: persistent (http.client will_close is False)", not r.will_close and body == HELLO,
          (r.will_close, r.getheaders()))
    c.request("GET", "/")
    r = c.getresponse()
    check("1.1 default: the second request rides the same socket", r.read() == HELLO and c.sock is sock)

    c.request("GET", "/", headers={"Connection": "close"})
    r = c.getresponse()
    body = r.read()
    check("1.1 with Connection: close: the response says close",
          r.will_close and r.getheader("Connection") == "close" and body == HELLO, r.getheaders())
    c.close()

    class HTTP10Connection(http.client.HTTPConnection):
        # http.client's own switch for speaking HTTP/1.0.
        _http_vsn = 10
        _http_vsn_str = "HTTP/1.0"

    c = HTTP10Connection("127.0.0.1", port, timeout=5)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    check("1.0 without keep-alive: the response ends the connection", r.will_close and body == HELLO,
          (r.will_close, r.getheaders()))
    c.close()
    c = HTTP10Connection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={"Connection": "keep-alive"})
    r = c.getresponse()
    body = r.read()
    sock = c.sock
    check("1.0 with keep-alive: persistent, and the response says keep-alive",
          not r.will_close and r.getheader("Connection") == "keep-alive" and body == HELLO, r.getheaders())
    c.request("GET", "/", headers={"Connection": "keep-alive"})
    r = c.getresponse()
    check("1.0 with keep-alive: the second request rides the same socket", r.read() == HELLO and c.sock is sock)
    c.close()

    # The server side of the rule, on the wire: after a response that ends
    # the connection, the server closes it.
    for name, wire in [("1.0 without keep-alive", b"GET / HTTP/1.0\r\n\r\n"),
                       ("1.1 with Connection: close", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")]:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(wire)
        check(f"{name}: the server closes the connection", peer_closed(s))
        s.close()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    check("1.1 default: the server keeps the connection open", not peer_closed(s, timeout=0.5))
    s.close()

    # ApacheBench speaks HTTP/1.0: without -k it waits for each close,
    # with -k it needs "Connection: keep-alive" back.
    for flags, want_keep_alive in [([], 0), (["-k"], 100)]:
        out = run("ab", "-q", *flags, "-c", "4", "-n", "100", "-s", "10", base + "/").stdout.decode()
        ok = "Complete requests:      100" in out and "Failed requests:        0" in out
        if want_keep_alive:
            ok = ok and "Keep-Alive requests:    100" in out
        check(f"ab {' '.join(flags) or '(HTTP/1.0, no keep-alive)'}: 100 requests, none failed", ok, out[-500:])

    # --- Request bodies: Content-Length and chunked -----------------------
    payload = os.urandom(300_000)
    r = requests.post(base + "/echo", data=payload, timeout=10)
    check("requests: Content-Length body echoed", r.status_code == 200 and r.content == payload, r.status_code)

    def pieces():
        for i in range(0, len(payload), 7_777):
            yield payload[i:i + 7_777]

    r = requests.post(base + "/echo", data=pieces(), timeout=10)  # a generator body goes chunked
    check("requests: chunked body (generator) echoed", r.status_code == 200 and r.content == payload,
          (r.status_code, len(r.content)))
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/echo", body=pieces(), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked", "Content-Type": "application/x-test"})
    r = c.getresponse()
    got = r.read()
    check("http.client encode_chunked: body echoed, connection persists",
          r.status == 200 and got == payload and not r.will_close and r.getheader("Content-Type") == "application/x-test",
          (r.status, len(got)))
    c.request("GET", "/")
    r = c.getresponse()
    check("http.client: a GET after the chunked POST on the same connection", r.read() == HELLO)
    c.close()
    payload_path = os.path.join(root, "payload.bin")
    with open(payload_path, "wb") as f:
        f.write(payload)
    out = run("curl", "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + payload_path,
              base + "/echo").stdout
    check("curl: chunked upload echoed", out == payload, len(out))
    out = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
              "--data-binary", "@" + payload_path, "-H", "Expect:", base + "/echo").stdout
    check("curl: chunked upload without Expect", out == b"200", out)
    big = os.path.join(root, "big.bin")
    with open(big, "wb") as f:
        f.write(b"x" * (1024 * 1024 + 1))
    out = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
              "--data-binary", "@" + big, base + "/echo").stdout
    check("curl: a chunked body over 1 MiB is refused with 413", out == b"413", out)
    got = run("wget", "-q", "-O", "-", "--post-file", payload_path, base + "/echo").stdout
    check("wget --post-file: body echoed", got == payload, len(got))
    got = urllib.request.urlopen(urllib.request.Request(base + "/echo", data=b"urllib body"), timeout=5).read()
    check("urllib POST echoed", got == b"urllib body", got)

    # --- Expect: 100-continue ----------------------------------------------
    out = run("curl", "-sS", "-v", "-H", "Expect: 100-continue", "--data-binary", "small", base + "/echo").stderr
    check("curl: Expect: 100-continue gets 100 Continue, then the answer",
          b"HTTP/1.1 100 Continue" in out and b"HTTP/1.1 200" in out, out[-600:])
    # HTTP/1.0 cannot take an interim response: the expectation is ignored
    # (RFC 9110 section 10.1.1), so nothing comes until the body is sent.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    s.settimeout(0.5)
    try:
        early = s.recv(4096)
    except socket.timeout:
        early = b""
    s.settimeout(5)
    s.sendall(b"hello")
    reply = early + read_until_close(s)
    s.close()
    check("HTTP/1.0 with Expect: 100-continue: no interim response, then 200",
          early == b"" and reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello"), reply)

    # --- HEAD ---------------------------------------------------------------
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("HEAD", "/static/index.html")
    r = c.getresponse()
    head_body = r.read()
    check("http.client HEAD: length given, no body",
          r.status == 200 and r.getheader("Content-Length") == "22" and head_body == b"", r.getheaders())
    c.request("GET", "/static/index.html")  # a body sent after HEAD would be read as this response
    r = c.getresponse()
    check("http.client: GET after HEAD on the same connection", r.status == 200 and r.read() == b"<title>bobbin</title>\n")
    c.close()
    r = requests.head(base + "/", timeout=5)
    check("requests HEAD", r.status_code == 200 and r.headers.get("Content-Length") == str(len(HELLO)) and r.content == b"")
    out = run("wget", "-S", "--spider", base + "/static/index.html").stderr.decode()
    check("wget --spider (HEAD)", "200 OK" in out and "Content-Length: 22" in out, out[-400:])

    # --- Pipelining, from a real client -------------------------------------
    lua = os.path.join(root, "pipeline.lua")
    with open(lua, "w") as f:
        # wrk's documented way to pipeline: one write holding several requests.
        f.write('init = function(args)\n'
                '  local r = {}\n'
                '  for i = 1, 16 do r[i] = wrk.format("GET", i % 2 == 0 and "/" or "/static/index.html") end\n'
                '  req = table.concat(r)\n'
                'end\n'
                'request = function() return req end\n')
    out = run("wrk", "-t", "1", "-c", "8", "-d", "1s", "--timeout", "10s", "-s", lua, base + "/").stdout.decode()
    n = re.search(r"(\d+) requests in", out)
    check("wrk pipelining 16 deep: requests answered, no errors, no non-2xx",
          n is not None and int(n.group(1)) > 100 and "Socket errors" not in out and "Non-2xx" not in out, out)
    # In order: distinct bodies interleaved on one connection.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    wire = b""
    for i in range(20):
        wire += b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\nbody-%02d\r\n0\r\n\r\n" % (7, i)
    s.sendall(wire + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = read_until_close(s)
    s.close()
    bodies = re.findall(rb"body-(\d\d)", got)
    check("20 pipelined chunked POSTs answered in order", bodies == [b"%02d" % i for i in range(20)] and got.endswith(HELLO),
          got[-300:])
finally:
    stop_server(server)
    subprocess.run(["rm", "-rf", root])

finish()
