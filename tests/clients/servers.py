"""Private instances of the real servers that the blocking-client tests and
benchmarks talk to, each under a temporary directory and stopped at the end:

  PostgreSQL   a fresh cluster (initdb, trust authentication) listening only
               on a unix socket in the directory
  redis-server persistence off, a unix socket in the directory, no TCP port
  http_server  bobbin's example HTTP server on 127.0.0.1, whose /sleep?ms=N
               answers after N ms
  tls_server   an HTTPS server on 127.0.0.1 (Python's http.server behind its
               ssl module, OpenSSL 3) with a fresh self-signed certificate;
               GET /<anything> answers the path back

PostgreSQL refuses to run as root; as root the cluster runs as the
`postgres` user (created by Debian's postgresql package)."""
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
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


_TLS_SERVER = r'''
import http.server, ssl, sys
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
srv = Server(("127.0.0.1", 0), Echo)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
# The handshake happens on the handler's thread, at its first read, not in
# the accepting thread.
srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
print(srv.server_address[1], flush=True)
srv.serve_forever()
'''


@contextlib.contextmanager
def tls_server():
    """Yields (base URL, CA file) of a private HTTPS server."""
    d = tempfile.mkdtemp(prefix="bobbin-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    proc = None
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        proc = subprocess.Popen([sys.executable, "-c", _TLS_SERVER, cert, key], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the TLS server did not start: {port!r}")
        yield f"https://127.0.0.1:{port}", cert
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def all_servers(http_exe):
    """Starts them all and yields the environment that names them."""
    with postgres() as pg, redis() as rs, http_server(http_exe) as url, tls_server() as (https_url, ca):
        env = dict(os.environ)
        env["BOBBIN_TEST_PG"] = pg
        env["BOBBIN_TEST_REDIS_SOCKET"] = rs
        env["BOBBIN_TEST_HTTP_URL"] = url
        env["BOBBIN_TEST_HTTPS_URL"] = https_url
        env["BOBBIN_TEST_HTTPS_CA"] = ca
        yield env
