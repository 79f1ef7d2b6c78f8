"""ApacheBench (ab) run and read once for every perf/ driver that cross-checks
wrk with it (compare_servers, compare_api). ab is a second, independent HTTP
load generator: one process, its own event loop and HTTP/1.0 keep-alive
(-k), where wrk is HTTP/1.1 with its own; a server comparison that holds
under both is not an artefact of one client."""
import re
import subprocess


def parse(text):
    """{"requests", "rps", "p50_ms", "p99_ms", "errors"} from an ab report, or
    None when it holds no result. errors counts failed requests and non-2xx
    responses; ab gives percentiles in whole milliseconds."""
    rps = re.search(r"Requests per second:\s+([\d.]+)", text)
    done = re.search(r"Complete requests:\s+(\d+)", text)
    if not rps or not done:
        return None

    def percentile(p):
        q = re.search(rf"^\s+{p}%\s+(\d+)", text, re.M)
        return float(q.group(1)) if q else None
    failed = re.search(r"Failed requests:\s+(\d+)", text)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", text)
    errors = (int(failed.group(1)) if failed else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return {"requests": int(done.group(1)), "rps": float(rps.group(1)), "p50_ms": percentile(50),
            "p99_ms": percentile(99), "errors": errors}


def run(url, conns, requests=None, seconds=None, cpus=None, timeout=300):
    """ab -k -c conns against url, for `requests` requests or about `seconds`
    seconds (-t, capped at 10 million requests); pinned to `cpus` with taskset
    when given. RuntimeError when ab gave no result."""
    argv = ["ab", "-q", "-k", "-c", str(conns), "-s", "30"]
    if seconds is not None:
        argv += ["-t", str(seconds), "-n", "10000000"]
    else:
        argv += ["-n", str(requests)]
    argv.append(url)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
    r = parse(out)
    if r is None:
        raise RuntimeError(f"ab gave no result for {url}")
    return r
