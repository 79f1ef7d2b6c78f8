"""What the example-server integration tests share: counting checks, the
final "N passed, M failed" line, starting a server on an ephemeral port, and
a raw-socket exchange for what real clients will not send."""
import re
import socket
import subprocess
import sys

_passed = 0
_failed = 0


def check(name, ok, detail=""):
    global _passed, _failed
    if ok:
        _passed += 1
    else:
        _failed += 1
        print(f"FAIL {name}: {detail!r}", flush=True)


def finish():
    """Prints the summary scripts/test counts and exits non-zero on a failure."""
    print(f"{_passed} passed, {_failed} failed")
    sys.exit(1 if _failed else 0)


def start_server(argv, env=None):
    """Starts argv (which must include --port 0) and returns (process, port),
    read from its "listening on 127.0.0.1:PORT" line; exits if it never says it.
    `env`: the environment, if not this process's."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        print("server did not start:", line, proc.stderr.read())
        sys.exit(1)
    return proc, int(m.group(1))


def raw(port, data, timeout=5.0):
    """Sends data, reads until the server closes or `timeout` passes without
    a byte. Returns (bytes received, whether the server closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    chunks = []
    closed = False
    try:
        while True:
            b = s.recv(65536)
            if not b:
                closed = True
                break
            chunks.append(b)
    except socket.timeout:
        pass
    s.close()
    return b"".join(chunks), closed
