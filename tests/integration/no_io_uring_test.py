"""examples/echo_server where io_uring is refused the way container runtimes
refuse it (scripts/no-io-uring: a seccomp filter answering EPERM, as
Docker's default profile does, or ENOSYS, as Podman's does).
  - Left to choose (the default), the server runs on epoll: one line on
    stderr names the true cause (a seccomp filter, not the
    kernel.io_uring_disabled sysctl, which is 0 here) and says so, and 200
    connections echo every byte, with SIGTERM stopping it cleanly.
  - Made to use io_uring (BOBBIN_BACKEND=io_uring), it exits at once,
    non-zero, with that line as the reason.

  python3 no_io_uring_test.py ECHO_SERVER NO_IO_URING_SCRIPT
"""
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish, start_server  # noqa: E402

server, script = sys.argv[1], sys.argv[2]
CAUSES = {"EPERM": "io_uring_setup was refused with EPERM by a seccomp filter or a security module, not by the sysctl",
          "ENOSYS": "the io_uring system calls do not exist here (ENOSYS); the cause is a seccomp filter answering ENOSYS"}

for name, flag in [("EPERM", []), ("ENOSYS", ["--enosys"])]:
    env = dict(os.environ)
    env.pop("BOBBIN_BACKEND", None)
    proc, port = start_server([sys.executable, script] + flag + [server, "--port", "0", "--carriers", "2"], env=env)
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    good = 0
    for i, s in enumerate(conns):
        msg = f"message {i} ".encode() * 100
        s.sendall(msg)
        back = b""
        while len(back) < len(msg):
            chunk = s.recv(65536)
            if not chunk:
                break
            back += chunk
        good += back == msg
    for s in conns:
        s.close()
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    print(f"{name}, backend left to bobbin: exit {proc.returncode}; {good}/200 echoed; stderr: {err.strip()}; "
          f"stdout: {out.strip().splitlines()[-1] if out.strip() else ''}")
    check(f"{name}: every connection echoed on epoll", good == 200, good)
    check(f"{name}: one line on stderr", len(lines) == 1, lines)
    check(f"{name}: it names the cause and the fallback",
          lines != [] and CAUSES[name] in lines[0] and "running on epoll instead" in lines[0], lines)
    check(f"{name}: the final counters say epoll", "backend=epoll" in out, out)
    check(f"{name}: stops cleanly on SIGTERM", proc.returncode == 0, proc.returncode)

    env["BOBBIN_BACKEND"] = "io_uring"
    try:
        forced = subprocess.run([sys.executable, script] + flag + [server, "--port", "0", "--carriers", "2"],
                                capture_output=True, text=True, timeout=20, env=env)
    except subprocess.TimeoutExpired:
        check(f"{name}, io_uring required: exits instead of running", False, "still running after 20 s")
        continue
    lines = [line for line in forced.stderr.splitlines() if line.strip()]
    print(f"{name}, BOBBIN_BACKEND=io_uring: exit {forced.returncode}; stderr: {forced.stderr.strip()}")
    check(f"{name}, io_uring required: exits non-zero", forced.returncode != 0, forced.returncode)
    check(f"{name}, io_uring required: one line naming the cause",
          len(lines) == 1 and CAUSES[name] in lines[0] and "Seccomp: 2" in lines[0], lines)
finish()
