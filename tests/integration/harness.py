"""What the example-server integration tests share: counting checks, the
final "N passed, M failed" line, starting and stopping a server on an
ephemeral port, a raw-socket exchange for what real clients will not send,
and the pieces of the slow-client tests (a server's RSS, a client that
sends without reading)."""
import re
import socket
import subprocess
import sys
import time

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


def stop_server(proc, grace=15):
    """SIGTERM, then SIGKILL if `proc` has not exited after `grace` seconds.
    Returns its exit status."""
    proc.terminate()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def read_until_close(sock):
    """Everything `sock` receives until the peer closes it."""
    data = b""
    while True:
        b = sock.recv(65536)
        if not b:
            return data
        data += b


def rss_kib(pid):
    """A process's resident set (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def send_without_reading(port, payload, limit_s=30):
    """A client that sends `payload` over and over and never reads: returns
    (bytes sent, when sending last got stuck, when the server cut the
    connection or None), times from time.monotonic()."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.setblocking(False)
    sent, stuck_since, cut = 0, None, None
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            sent += s.send(payload)
            stuck_since = None
        except BlockingIOError:
            stuck_since = stuck_since or time.monotonic()
            time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            cut = time.monotonic()
            break
    s.close()
    return sent, stuck_since, cut


def check_client_that_never_reads(port, pid, payload, cut_within_s):
    """Runs send_without_reading() against the server (process `pid`) and
    checks what every example server must do: stop reading, so the client's
    sending is bounded by the socket buffers; keep its RSS flat; cut the
    connection within `cut_within_s` of the client getting stuck."""
    before = rss_kib(pid)
    sent, stuck_since, cut = send_without_reading(port, payload)
    peak = rss_kib(pid)
    print(f"pipelining without reading: {sent:,} bytes sent before the server stopped reading; cut after "
          f"{(cut - stuck_since) if cut and stuck_since else -1:.1f} s stuck; RSS {before} -> {peak} KiB")
    check("a client that never reads: its sending is bounded by the buffers (under 64 MiB)",
          sent < 64 * 1024 * 1024, sent)
    check("a client that never reads: cut once the server's write stalled",
          cut is not None and stuck_since is not None and cut - stuck_since < cut_within_s, (cut, stuck_since))
    check("a client that never reads: server RSS did not grow (under 32 MiB)", peak - before < 32 * 1024,
          f"{before} -> {peak} KiB")
