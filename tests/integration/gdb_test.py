#!/usr/bin/env python3
"""scripts/gdb/bobbin.py in a real gdb: attached to a live process
(tests/inspect/gdb_target, fibers parked in functions with known names) it
must list every fiber with its name, state and wait reason, print a parked
fiber's backtrace through the function it parked in, and switch to that
stack and back; then the same on a core file the kernel wrote when the
process aborted (skipped where core dumps go elsewhere: a core_pattern pipe
such as systemd-coredump, or a sanitizer build, which turns them off).
Prints "N passed, M failed".
usage: gdb_test.py GDB_TARGET SCRIPT SANITIZED(0|1)"""
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

from harness import check, finish

target, script, sanitized = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"


def start_target(cwd=None, allow_core=False):
    def limits():
        if allow_core:
            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    p = subprocess.Popen([target], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=cwd, preexec_fn=limits)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        print("gdb_target did not start:", line, p.stderr.read())
        sys.exit(1)
    return p


def gdb(args, commands):
    argv = ["gdb", "-nx", "-batch", "-ex", "set width 0", "-ex", f"source {script}"]
    for c in commands:
        argv += ["-ex", c]
    r = subprocess.run(["gdb"] + argv[1:] + args, capture_output=True, text=True, timeout=120)
    return r.stdout + r.stderr


def fiber_table(out):
    """{name: (id, state, reason)} from `bobbin fibers`."""
    rows = {}
    for m in re.finditer(r'^\s*(\d+)\s+\d+\s+(\w+)\s+(\w*)\s+-?\d+\s+"([^"]+)"', out, re.M):
        rows[m.group(4)] = (int(m.group(1)), m.group(2), m.group(3))
    return rows


def check_fibers_and_stacks(where, args):
    out = gdb(args, ["bobbin fibers"])
    rows = fiber_table(out)
    check(f"{where}: all four fibers listed", sorted(rows) == ["napper", "waiter-0", "waiter-1", "waiter-2"], out)
    check(f"{where}: the waiters are parked on a channel receive",
          all(rows.get(f"waiter-{i}", (0, "", ""))[1:] == ("parked", "channel_receive") for i in range(3)), rows)
    if "waiter-1" not in rows:
        return
    fid = rows["waiter-1"][0]
    bt = gdb(args, [f"bobbin bt {fid}"])
    check(f"{where}: bobbin bt names the fiber", f'fiber {fid} "waiter-1" (parked, channel_receive)' in bt, bt)
    check(f"{where}: the backtrace runs through the function it parked in", "wait_in_named_function" in bt, bt)
    check(f"{where}: ... through bobbin's park", "bobbin::internal::park" in bt, bt)
    check(f"{where}: ... down to the fiber's entry", "bobbin::internal::fiber_entry" in bt, bt)
    check(f"{where}: ... and not through the thread's own frames", "main ()" not in bt, bt)
    out = gdb(args, [f"bobbin switch {fid}", "bt", "echo ===restored===\\n", "bobbin restore", "bt"])
    switched, _, restored = out.partition("===restored===")
    check(f"{where}: bobbin switch shows the fiber's frames", "wait_in_named_function" in switched, switched)
    check(f"{where}: bobbin restore gives the thread its own frames back",
          "wait_in_named_function" not in restored and "main ()" in restored, restored)


# A live process.
p = start_target()
try:
    check_fibers_and_stacks("live", ["-p", str(p.pid)])
    p.stdin.close()
    check("live: the process runs on after gdb detaches and ends cleanly", p.wait(timeout=30) == 0, p.stderr.read())
finally:
    if p.poll() is None:
        p.kill()

# A core file written by the kernel.
with open("/proc/sys/kernel/core_pattern") as f:
    pattern = f.read().strip()
if sanitized or pattern.startswith("|") or "/" in pattern:
    print(f"skipped the core-file half: core_pattern {pattern!r}, sanitized={sanitized}")
else:
    work = tempfile.mkdtemp(prefix="bobbin_gdb_")
    p = start_target(cwd=work, allow_core=True)
    p.send_signal(signal.SIGABRT)
    p.wait(timeout=30)
    core = None
    for _ in range(100):
        cores = [n for n in os.listdir(work) if n.startswith("core")]
        if cores:
            core = os.path.join(work, cores[0])
            size = os.path.getsize(core)
            time.sleep(0.2)
            if os.path.getsize(core) == size:
                break
        time.sleep(0.1)
    check("core: the kernel wrote a core file", core is not None, os.listdir(work))
    if core:
        check_fibers_and_stacks("core", [target, core])
        os.unlink(core)
    os.rmdir(work)

finish()
