"""Server processes for the perf/ drivers: start one pinned to CPUs with
taskset, wait until it accepts, stop it, and read its CPU time."""
import os
import signal
import socket
import subprocess
import time


def wait_port(port, timeout=10.0, proc=None):
    """Until something accepts on 127.0.0.1:port; RuntimeError after
    `timeout`, or as soon as `proc` (the server, when given) has exited."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


class server:
    def __init__(self, name, argv, port, cpus):
        self.name, self.argv, self.port, self.cpus = name, argv, port, cpus
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(["taskset", "-c", self.cpus, *self.argv], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, proc=self.proc)
        except RuntimeError:
            # A server that exited (an unknown flag) or never listened: say
            # how it ended, and leave no process behind.
            code = self.proc.poll()
            if code is None:
                self.proc.kill()
                self.proc.wait()
            raise RuntimeError(f"{os.path.basename(self.name)} did not listen on {self.port}"
                               + (f" (exit status {code})" if code is not None else ""))
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.3)  # let the port's connections drain


def cpu_seconds(pid):
    """User + system CPU of a process and its direct children (nginx workers)."""
    total = 0.0
    tck = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tck
    return total
