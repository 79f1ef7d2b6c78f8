"""The echo servers of perf/echo, each driven by perf/load/echo_load: every
message must come back byte for byte, with 64-byte messages and with
10,000-byte ones (larger than a server's 4 KiB read buffer, so echoes arrive
in pieces), on 1 and on 2 server threads.

  python3 echo_peers_test.py ECHO_LOAD SERVER...
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish, start_server  # noqa: E402

echo_load, servers = sys.argv[1], sys.argv[2:]
check("some echo servers are given", len(servers) >= 4, servers)
for exe in servers:
    name = os.path.basename(exe)
    for threads in (1, 2):
        proc, port = start_server([exe, "--port", "0", "--threads", str(threads)])
        try:
            for size, conns in ((64, 50), (10000, 20)):
                out = subprocess.run([echo_load, "--port", str(port), "--connections", str(conns), "--size", str(size),
                                      "--duration", "0.5", "--warmup", "0.2"], capture_output=True, text=True,
                                     timeout=60)
                line = out.stdout.strip()
                fields = dict(re.findall(r"(\w+)=([\d.]+)", line))
                label = f"{name} threads={threads} size={size}"
                check(f"{label}: echo_load succeeds", out.returncode == 0, line + out.stderr)
                check(f"{label}: no errors", fields.get("errors") == "0" and fields.get("connect_errors") == "0", line)
                check(f"{label}: messages came back", int(fields.get("requests", "0")) > 0, line)
        finally:
            proc.kill()
            proc.wait()
finish()
