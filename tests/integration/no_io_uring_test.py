"""examples/echo_server where io_uring is refused the way container runtimes
refuse it (scripts/no-io-uring: a seccomp filter answering EPERM, as
Docker's default profile does, or ENOSYS, as Podman's does): the server
exits at once, non-zero, with one line that names the true cause and what
to change, not the kernel.io_uring_disabled sysctl (which is 0 here).

  python3 no_io_uring_test.py ECHO_SERVER NO_IO_URING_SCRIPT
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

server, script = sys.argv[1], sys.argv[2]
for flag, cause in [([], "io_uring_setup was refused with EPERM by a seccomp filter or a security module, "
                         "not by the sysctl"),
                    (["--enosys"], "the io_uring system calls do not exist here (ENOSYS); the cause is a "
                                   "seccomp filter answering ENOSYS")]:
    name = flag[0] if flag else "EPERM"
    try:
        out = subprocess.run([sys.executable, script] + flag + [server, "--port", "0", "--carriers", "2"],
                             capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        check(f"{name}: the server exits instead of hanging", False, "still running after 20 s")
        continue
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    print(f"{name}: exit {out.returncode}; stderr: {out.stderr.strip()}")
    check(f"{name}: exits non-zero", out.returncode != 0, out.returncode)
    check(f"{name}: one line on stderr", len(lines) == 1, lines)
    check(f"{name}: the line names the cause", lines != [] and cause in lines[0], lines)
    check(f"{name}: says the process runs under a seccomp filter", "Seccomp: 2" in out.stderr, out.stderr)
    check(f"{name}: does not blame the sysctl", "is disabled on this system" not in out.stderr, out.stderr)
finish()
