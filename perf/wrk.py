"""wrk --latency's report, read once for every perf/ driver that runs wrk
(compare_servers, compare_api, bench --compare)."""
import re

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse(text):
    """{"requests", "seconds", "rps", "p50_ms", "p99_ms", "errors"} from a
    `wrk --latency` report, or None when it holds no result (wrk failed).
    errors counts socket errors (connect, read, write, timeout) and non-2xx
    or 3xx responses; a percentile wrk did not print is None."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m or not rps:
        return None

    def percentile(p):
        q = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(q.group(1)) * _UNIT_MS[q.group(2)] if q else None
    errors = 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        errors += sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        errors += int(n.group(1))
    return {"requests": int(m.group(1)),
            "seconds": float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)],
            "rps": float(rps.group(1)), "p50_ms": percentile(50), "p99_ms": percentile(99), "errors": errors}
