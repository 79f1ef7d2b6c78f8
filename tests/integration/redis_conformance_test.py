#!/usr/bin/env python3
"""examples/redis_server side by side with a real redis-server 7: the same
bytes go to both, in the same order on one connection each, and every reply
must be byte for byte the same, errors included (wrong arity, wrong type,
syntax, range, unknown command, protocol errors, inline commands). The real
server is a private instance on a unix socket under a temporary directory,
started and stopped here (tests/clients/servers.py).

Where a reply depends on the clock (TTL in ms), both must agree within a
second rather than to the millisecond. Commands whose replies are about the
server itself (COMMAND, CONFIG SET, INFO) are not compared: the example does
not claim to be Redis there.

Usage: redis_conformance_test.py REDIS_SERVER_EXE. Prints "N passed, M failed".
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients"))
from harness import check, finish, start_server  # noqa: E402
from servers import redis  # noqa: E402  (tests/clients/servers.py)

server_exe = sys.argv[1]


class Conn:
    """One connection and a reader of whole RESP2 replies."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(5)
        self.buf = b""

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError
        self.buf += b

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """The next whole reply, as its exact bytes."""
        line = self._line()
        out = line + b"\r\n"
        kind = line[:1]
        if kind == b"$":
            n = int(line[1:])
            if n >= 0:
                while len(self.buf) < n + 2:
                    self._fill()
                out += self.buf[:n + 2]
                self.buf = self.buf[n + 2:]
        elif kind == b"*":
            for _ in range(max(0, int(line[1:]))):
                out += self.reply()
        return out

    def reply_or_none(self):
        """reply(), or a description of why there was none."""
        try:
            return self.reply()
        except (socket.timeout, EOFError) as e:
            return f"no reply ({type(e).__name__})".encode()

    def closed(self):
        """True if the peer closes without sending more."""
        try:
            while True:
                b = self.sock.recv(4096)
                if not b:
                    return True
                self.buf += b
        except socket.timeout:
            return False


def encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def ttl_close(a, b, slack_ms):
    """Clock-dependent integer replies: equal, or both counts within slack."""
    if a == b:
        return True
    if a[:1] != b":" or b[:1] != b":":
        return False
    x, y = int(a[1:-2]), int(b[1:-2])
    return x >= 0 and y >= 0 and abs(x - y) <= slack_ms


# Each case: a command (list of arguments, sent as a multibulk), or
# ("inline", bytes) sent as is; ("ms", args) marks a reply in milliseconds
# that may differ by the time between the two sends.
CASES = [
    ["PING"], ["PING", "hi"], ["PING", "a", "b"], ["ping"],
    ["ECHO", "hello world"], ["ECHO"], ["ECHO", "a", "b"], ["ECHO", ""],
    ["GET", "k"], ["SET", "k", "v"], ["GET", "k"], ["get", "k"],
    ["SET", "k", "v2", "NX"], ["SET", "k", "v3", "XX"], ["GET", "k"], ["SET", "k", "v4", "GET"],
    ["SET", "nokey", "v", "XX", "GET"], ["EXISTS", "nokey"], ["SET", "fresh", "v", "NX", "GET"],
    ["SET", "k", "v", "NX", "XX"], ["SET", "k", "v", "EX", "10", "PX", "100"], ["SET", "k", "v", "EX", "0"],
    ["SET", "k", "v", "EX", "-1"], ["SET", "k", "v", "PX", "0"], ["SET", "k", "v", "EX", "abc"],
    ["SET", "k", "v", "EX"], ["SET", "k", "v", "BOGUS"], ["SET", "k", "v", "ex", "100"], ["TTL", "k"],
    ["SET", "k", "v5", "KEEPTTL"], ["TTL", "k"], ["SET", "k", "v", "EX", "100", "KEEPTTL"],
    ["SET", "k", "v6"], ["TTL", "k"], ["SET", "k"], ["SET"],
    ["SET", "bin", b"\x00\r\n\xff"], ["GET", "bin"],
    ["DEL", "k", "k", "k"], ["EXISTS", "k", "bin", "bin"], ["DEL"], ["EXISTS"],
    ["INCR", "n"], ["INCR", "n"], ["DECR", "n"], ["INCRBY", "n", "-15"], ["DECRBY", "n", "5"],
    ["INCRBY", "n", "abc"], ["INCRBY", "n", "1.5"], ["INCRBY", "n"], ["INCR", "n", "x"],
    ["SET", "big", "9223372036854775807"], ["INCR", "big"], ["INCRBY", "big", "0"],
    ["SET", "small", "-9223372036854775808"], ["DECR", "small"], ["DECRBY", "small", "-9223372036854775808"],
    ["INCRBY", "n", "9223372036854775808"],
    ["SET", "s", " 1"], ["INCR", "s"], ["SET", "s", "01"], ["INCR", "s"], ["SET", "s", "+1"], ["INCR", "s"],
    ["SET", "s", ""], ["INCR", "s"], ["SET", "s", "-0"], ["INCR", "s"], ["SET", "s", "abc"], ["DECR", "s"],
    ["MSET", "a", "1", "b", "2", "c", "3"], ["MGET", "a", "b", "nope", "c"], ["MSET", "a", "1", "b"], ["MGET"],
    ["MSET"],
    ["EXPIRE", "a", "100"], ["TTL", "a"], ("ms", ["PTTL", "a"]), ["EXPIRE", "a", "100", "NX"],
    ["EXPIRE", "a", "200", "XX"], ["EXPIRE", "b", "100", "XX"], ["EXPIRE", "a", "50", "GT"],
    ["EXPIRE", "a", "50", "LT"], ["TTL", "a"], ["EXPIRE", "a", "10", "BOGUS"], ["EXPIRE", "a", "10", "NX", "XX"],
    ["EXPIRE", "a", "10", "GT", "LT"], ["EXPIRE", "a", "abc"], ["EXPIRE", "a"], ["EXPIRE", "nope", "10"],
    ["PEXPIRE", "b", "100000"], ("ms", ["PTTL", "b"]), ["PERSIST", "b"], ["PERSIST", "b"], ["TTL", "b"],
    ["PERSIST", "nope"], ["TTL", "nope"], ["PTTL", "nope"], ["EXPIRE", "c", "-1"], ["EXISTS", "c"],
    ["PEXPIRE", "b", "0"], ["GET", "b"],
    ["EXPIRE", "a", "9223372036854775807"], ["PEXPIRE", "a", "9223372036854775807"],
    ["RPUSH", "list", "a", "b"], ["LPUSH", "list", "z"], ["LRANGE", "list", "0", "-1"],
    ["LRANGE", "list", "-100", "100"], ["LRANGE", "list", "2", "1"], ["LRANGE", "list", "5", "10"],
    ["LRANGE", "list", "-1", "-1"], ["LRANGE", "list", "0", "abc"], ["LRANGE", "nope", "0", "-1"],
    ["LLEN", "list"], ["LLEN", "nope"], ["TYPE", "list"], ["TYPE", "a"], ["TYPE", "nope"],
    ["GET", "list"], ["INCR", "list"], ["SET", "list", "x", "GET"], ["MGET", "list", "a"],
    ["LPUSH", "a", "x"], ["LLEN", "a"], ["LRANGE", "a", "0", "1"], ["LPOP", "a"],
    ["LPOP", "list"], ["RPOP", "list"], ["LPOP", "nope"], ["RPUSH", "list", "1", "2", "3", "4"],
    ["LPOP", "list", "2"], ["RPOP", "list", "2"], ["LPOP", "list", "0"], ["LPOP", "list", "-1"],
    ["LPOP", "list", "abc"], ["LPOP", "list", "10"], ["LPOP", "list", "1"], ["EXISTS", "list"],
    ["LPOP", "nope", "3"], ["RPOP", "nope", "0"], ["LPOP", "list", "1", "2"], ["LPUSH", "list"],
    ["DBSIZE"], ["DBSIZE", "x"], ["SELECT", "0"], ["SELECT", "1"], ["SELECT", "abc"], ["SELECT", "-1"],
    ["SELECT"], ["CONFIG", "GET", "save"], ["CONFIG", "GET", "appendonly"], ["CONFIG", "GET", "no-such-param"],
    ["CONFIG"],
    ["FLUSHDB", "BOGUS"], ["FLUSHALL", "ASYNC"], ["DBSIZE"], ["SET", "k", "v"], ["FLUSHDB", "SYNC"], ["DBSIZE"],
    ["FLUSHALL", "ASYNC", "SYNC"],
    ["FOOBAR"], ["FOOBAR", "x", "y"], ["foobar", "a" * 200], [""],
    ("inline", b"PING\r\n"), ("inline", b"SET inl \"a b\\x41\\n\"\r\n"), ("inline", b"GET inl\r\n"),
    ("inline", b"ECHO 'single quoted'\r\n"), ("inline", b"\r\n"), ("inline", b"   PING   \n"),
    ("inline", b"GET nope\r\n"),
]

# Protocol errors: the reply, then the server closes the connection. One
# deliberate difference is not listed: the example refuses a multibulk of
# more than 1,048,576 arguments (resp_parser.h, request_limits) where Redis
# accepts up to INT_MAX and waits for them, so "*2000000000" is refused by
# the example only. Beyond INT_MAX both refuse it.
FATAL = [
    b"*1\r\n:5\r\n",
    b"*abc\r\n",
    b"*1\r\n$x\r\n",
    b"*1\r\n$-5\r\n",
    b"*1\r\n$999999999999\r\n",
    b"*3000000000\r\n",  # over INT_MAX: refused by both (see the note above FATAL)
    b"SET k \"unbalanced\r\n",
    b"ECHO 'a'b\r\n",
]

# One database, as the example has: SELECT 1 is then out of range in both.
with redis(["--databases", "1"]) as real_sock:
    server, port = start_server([server_exe, "--port", "0", "--carriers", "2"])
    try:
        def connect_both():
            r = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            r.connect(real_sock)
            return Conn(r), Conn(socket.create_connection(("127.0.0.1", port)))

        real, ours = connect_both()
        for case in CASES:
            kind, what = ("cmd", case) if isinstance(case, list) else case
            wire = what if kind == "inline" else encode(what)
            real.sock.sendall(wire)
            ours.sock.sendall(wire)
            if kind == "inline" and wire.strip() == b"":
                # An empty inline line has no reply in Redis: both must stay
                # silent, which the next case's reply shows.
                continue
            want, got = real.reply_or_none(), ours.reply_or_none()
            ok = ttl_close(want, got, 1000) if kind == "ms" else want == got
            check(f"{what!r}", ok, f"redis-server {want!r}, example {got!r}")
        # Nothing left over on either side.
        real.sock.sendall(b"PING\r\n")
        ours.sock.sendall(b"PING\r\n")
        check("in step at the end", real.reply() == ours.reply() == b"+PONG\r\n")

        for wire in FATAL:
            real, ours = connect_both()
            real.sock.sendall(wire)
            ours.sock.sendall(wire)
            want, got = real.reply_or_none(), ours.reply_or_none()
            check(f"protocol error {wire[:40]!r}", want == got, f"redis-server {want!r}, example {got!r}")
            check(f"protocol error {wire[:40]!r} closes", real.closed() == ours.closed() == True)
    finally:
        server.terminate()
        server.wait(timeout=15)

finish()
