"""Private instances of the real servers that the blocking-client tests and
benchmarks talk to, each under a temporary directory and stopped at the end:

  PostgreSQL   a fresh cluster (initdb, trust authentication) listening only
               on a unix socket in the directory
  redis-server persistence off, a unix socket in the directory, no TCP port
  http_server  bobbin's example HTTP server on 127.0.0.1, whose /sleep?ms=N
               answers after N ms

PostgreSQL refuses to run as root; as root the cluster runs as the
`postgres` user (created by Debian's postgresql package)."""
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time


def _pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: run scripts/bootstrap")
    return found[-1]


@contextlib.contextmanager
def postgres(max_connections=400):
    """Yields a libpq conninfo string for a private cluster."""
    d = tempfile.mkdtemp(prefix="bobbin-pg-")
    as_user = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(d, "data")
    try:
        subprocess.run(as_user + [_pg_bin("initdb"), "-D", data, "--auth=trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, text=True)
        opts = (f"-k {d} -c listen_addresses='' -p 5432 -c max_connections={max_connections} "
                "-c fsync=off -c shared_buffers=32MB")
        subprocess.run(as_user + [_pg_bin("pg_ctl"), "-D", data, "-o", opts, "-l", os.path.join(d, "log"), "-w",
                                  "start"], check=True, capture_output=True, text=True)
        try:
            yield f"host={d} port=5432 user=postgres dbname=postgres"
        finally:
            subprocess.run(as_user + [_pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"],
                           capture_output=True, text=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _stop(proc, grace=15):
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def redis(extra_args=()):
    """Yields the path of a private redis-server's unix socket; `extra_args`
    go on its command line."""
    d = tempfile.mkdtemp(prefix="bobbin-redis-")
    sock = os.path.join(d, "redis.sock")
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
                             "--dir", d, "--maxclients", "1000", *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield sock
    finally:
        _stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def http_server(exe, carriers=1):
    """Yields the base URL of bobbin's example HTTP server."""
    proc = subprocess.Popen([exe, "--port", "0", "--carriers", str(carriers)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise RuntimeError(f"http_server did not start: {line!r}")
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        _stop(proc)


@contextlib.contextmanager
def all_servers(http_exe):
    """Starts the three and yields the environment that names them."""
    with postgres() as pg, redis() as rs, http_server(http_exe) as url:
        env = dict(os.environ)
        env["BOBBIN_TEST_PG"] = pg
        env["BOBBIN_TEST_REDIS_SOCKET"] = rs
        env["BOBBIN_TEST_HTTP_URL"] = url
        yield env
