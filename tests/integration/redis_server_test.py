#!/usr/bin/env python3
"""examples/redis_server judged by real clients: redis-cli for replies and
error wording, redis-benchmark (pipelined) for load, raw sockets for inline
commands and protocol errors. Prints "N passed, M failed"."""
import signal
import socket
import subprocess
import sys
import time

from harness import check, finish, raw, start_server

server_exe = sys.argv[1]
server, port = start_server([server_exe, "--port", "0", "--carriers", "2"])


def cli(*args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30)
    return r.stdout.rstrip("\n")


def raw_here(data):
    return raw(port, data, timeout=3.0)


try:
    expect = [
        (["PING"], "PONG"),
        (["PING", "hi"], "hi"),
        (["ECHO", "hello world"], "hello world"),
        (["SET", "k", "v"], "OK"),
        (["GET", "k"], "v"),
        (["GET", "missing"], ""),
        (["SET", "k", "w", "NX"], ""),
        (["SET", "k", "w", "XX"], "OK"),
        (["SET", "k", "x", "GET"], "w"),
        (["SET", "fresh", "1", "XX"], ""),
        (["EXISTS", "k", "fresh", "k"], "2"),
        (["SET", "n", "10"], "OK"),
        (["INCR", "n"], "11"),
        (["DECR", "n"], "10"),
        (["INCRBY", "n", "-15"], "-5"),
        (["DECRBY", "n", "5"], "-10"),
        (["INCR", "k"], "ERR value is not an integer or out of range"),
        (["INCRBY", "n", "abc"], "ERR value is not an integer or out of range"),
        (["SET", "big", "9223372036854775807"], "OK"),
        (["INCR", "big"], "ERR increment or decrement would overflow"),
        (["MSET", "a", "1", "b", "2", "c", "3"], "OK"),
        (["MGET", "a", "b", "nope", "c"], "1\n2\n\n3"),
        (["MSET", "a", "1", "b"], "ERR wrong number of arguments for 'mset' command"),
        (["DEL", "a", "b", "nope"], "2"),
        (["GET"], "ERR wrong number of arguments for 'get' command"),
        (["SET", "k"], "ERR wrong number of arguments for 'set' command"),
        (["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command"),
        (["SET", "k", "v", "EX", "ten"], "ERR value is not an integer or out of range"),
        (["SET", "k", "v", "BOGUS"], "ERR syntax error"),
        (["FOOBAR", "x", "y"], "ERR unknown command 'FOOBAR', with args beginning with: 'x' 'y' "),
        (["RPUSH", "list", "a", "b"], "2"),
        (["LPUSH", "list", "z"], "3"),
        (["LRANGE", "list", "0", "-1"], "z\na\nb"),
        (["GET", "list"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (["INCR", "list"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
        (["TYPE", "list"], "list"),
        (["SELECT", "0"], "OK"),
        (["SELECT", "1"], "ERR DB index is out of range"),
        (["EXPIRE", "k", "100"], "1"),
        (["TTL", "k"], "100"),
        (["PERSIST", "k"], "1"),
        (["TTL", "k"], "-1"),
        (["TTL", "nope"], "-2"),
        (["EXPIRE", "nope", "10"], "0"),
    ]
    for args, want in expect:
        got = cli(*args)
        check(" ".join(args), got == want, f"got {got!r}, want {want!r}")

    cli("FLUSHALL")
    check("DBSIZE after FLUSHALL", cli("DBSIZE") == "0")
    # Expiry: lazy on read, and by the background reaper without reads.
    vol = "".join(f"SET vol:{i} v PX 300\n" for i in range(50))
    subprocess.run(["redis-cli", "-p", str(port)], input=vol, capture_output=True, text=True, timeout=30)
    cli("SET", "keep", "v")
    cli("SET", "short", "v", "PX", "300")
    pttl = cli("PTTL", "short")
    check("PTTL counts down", pttl.isdigit() and 0 < int(pttl) <= 300, pttl)
    time.sleep(0.7)
    check("expired key reads as missing", cli("GET", "short") == "")
    check("reaper removed unread expired keys", cli("DBSIZE") == "1", cli("DBSIZE"))

    # Inline commands and pipelining over a raw socket (what `nc` sends).
    out, closed = raw_here(b"PING\r\nSET inl \"a b\"\r\nGET inl\r\n*2\r\n$4\r\nECHO\r\n$3\r\nxyz\r\nQUIT\r\n")
    check("inline + pipelined + QUIT", out == b"+PONG\r\n+OK\r\n$3\r\na b\r\n$3\r\nxyz\r\n+OK\r\n" and closed, out)

    # A protocol error closes that client only.
    bystander = socket.create_connection(("127.0.0.1", port), timeout=3)
    bystander.sendall(b"PING\r\n")
    check("bystander connected", bystander.recv(100) == b"+PONG\r\n")
    for wire, err in [(b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
                      (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
                      (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
                      (b"*1\r\n+PING\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
                      (b"SET \"open\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n")]:
        out, closed = raw_here(wire)
        check(f"protocol error {wire!r}", out == err and closed, out)
    bystander.sendall(b"*1\r\n$4\r\nPING\r\n")
    check("bystander unaffected", bystander.recv(100) == b"+PONG\r\n")
    bystander.close()

    # redis-benchmark, pipelined, every test it knows from the issue.
    cli("FLUSHALL")
    r = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "ping,set,get,incr,mset", "-n", "50000",
                        "-c", "50", "-P", "16", "--csv"], capture_output=True, text=True, timeout=120)
    rows = {}
    for line in r.stdout.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) >= 2 and f[0] != "test":
            rows[f[0]] = float(f[1])
    want_tests = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)"]
    check("redis-benchmark ran every test", all(rows.get(t, 0) > 0 for t in want_tests), r.stdout + r.stderr)
    # INCR without -r hits one key: its value is the number of requests.
    check("INCR count after the benchmark", cli("GET", "counter:__rand_int__") == "50000", cli("GET", "counter:__rand_int__"))
    check("SET value after the benchmark", len(cli("GET", "key:__rand_int__")) == 3, cli("GET", "key:__rand_int__"))

    # A client stuck in the middle of a command keeps its connection busy
    # through the 5 s drain; then the server cancels the connection fibers'
    # scope, and its pending read returns operation_canceled.
    stuck = socket.create_connection(("127.0.0.1", port), timeout=20)
    stuck.sendall(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
    time.sleep(0.2)
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=15)
    took = time.monotonic() - start
    out = server.stdout.read()
    err = server.stderr.read()
    check("exit 0 on SIGTERM with counters", rc == 0 and "final:" in out, f"rc={rc} {out} {err[-6000:]}")
    check("the stuck client was cut by cancellation after the drain", "cut clients still busy after 5s" in err
          and 4.5 < took < 10, f"{took:.1f}s {err[-2000:]}")
    try:
        check("the stuck client sees the close", stuck.recv(10) == b"")
    except ConnectionResetError:
        check("the stuck client sees the close", True)
    stuck.close()
finally:
    if server.poll() is None:
        server.kill()
        server.wait()

finish()
