#!/usr/bin/env python3
"""Runs the tests of one meson build folder N times and counts failures per
test: the way to show that a test is not flaky (scripts/test --repeat).

Usage: repeat_tests.py BUILD_DIR TIMES [PATTERN]

PATTERN is a gtest-style filter: patterns separated by ':', with '*' and
'?'. A pattern selects a meson test by its name (slow_clients) or the
GoogleTest cases of any gtest test by their full names
(FiberTest.SleepOrdering, TcpTest.*); without one, every test runs. Each run
of a test is a fresh process, started as meson would start it (its command,
environment, working folder and timeout), one at a time. A GoogleTest case
that fails is counted under its own name; a test that fails in any other
way (a failed check of a script test, a crash, a timeout) under the meson
test's name. The output of every failed run is kept in
BUILD_DIR/repeat-logs/.

Prints one line per selected test or case with its failure count, and
"repeat: N runs of M tests, K failed at least once"; exits 1 if any did.
"""
import fnmatch
import json
import os
import random
import re
import subprocess
import sys
import time

build_dir, times = sys.argv[1], int(sys.argv[2])
patterns = [p for p in (sys.argv[3] if len(sys.argv) > 3 else "").split(":") if p]


def matches(name):
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def test_env(test):
    env = dict(os.environ)
    env.update(test.get("env") or {})
    # As meson does for every test: freed and new memory filled with a
    # random byte, so reads of it fail loudly.
    env.setdefault("MALLOC_PERTURB_", str(random.randint(1, 255)))
    return env


def gtest_cases(test):
    """The full names of the cases a gtest test runs, honouring a
    --gtest_filter already in its command (intercept_off)."""
    out = subprocess.run(test["cmd"] + ["--gtest_list_tests"], env=test_env(test), cwd=test.get("workdir") or build_dir,
                         capture_output=True, text=True, timeout=120).stdout
    cases, suite = [], None
    for line in out.splitlines():
        if not line.strip() or line.startswith(("Running", "[")):
            continue
        if not line.startswith(" "):
            suite = line.split()[0]
        elif suite:
            cases.append(suite + line.split()[0])
    return cases


tests = json.loads(subprocess.run(["meson", "introspect", build_dir, "--tests"], capture_output=True, text=True,
                                  check=True).stdout)
selected = []  # (test, cases to run or None for the whole test)
for t in tests:
    if matches(t["name"]):
        selected.append((t, None))
    elif t.get("protocol") == "gtest":
        cases = [c for c in gtest_cases(t) if matches(c)]
        if cases:
            selected.append((t, cases))
if not selected:
    print(f"repeat: nothing in {build_dir} matches {':'.join(patterns)!r}")
    sys.exit(1)

names = []
for t, cases in selected:
    names += cases if cases else [t["name"]]
failures = {n: 0 for n in names}
log_dir = os.path.join(build_dir, "repeat-logs")
os.makedirs(log_dir, exist_ok=True)
started = time.monotonic()
for i in range(1, times + 1):
    for t, cases in selected:
        cmd = list(t["cmd"])
        if cases:
            cmd.append("--gtest_filter=" + ":".join(cases))
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=test_env(t), cwd=t.get("workdir") or build_dir, capture_output=True,
                               text=True, timeout=t.get("timeout") or 30)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc = "timeout"
            out = ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) + \
                f"\nrepeat: killed after {t.get('timeout')} s (meson's timeout)\n"
        failed_cases = set(re.findall(r"^\[  FAILED  \] (\S+\.\S+) \(", out, re.M))
        blamed = []
        if rc != 0 or failed_cases:
            blamed = [c for c in (cases or []) if c in failed_cases] or [t["name"]]
            for n in blamed:
                failures[n] = failures.get(n, 0) + 1
            log = os.path.join(log_dir, f"{t['name']}-run{i}.txt")
            with open(log, "w") as f:
                f.write(" ".join(cmd) + "\n\n" + out)
            checks = [ln for ln in out.splitlines() if ln.startswith("FAIL ")][:3]
            print(f"  run {i}: {t['name']} FAILED ({', '.join(blamed)}; exit {rc}, {time.monotonic() - t0:.1f} s)"
                  f" -> {log}" + "".join("\n      " + c[:200] for c in checks), flush=True)
    print(f"  run {i} of {times} done, {time.monotonic() - started:.0f} s", flush=True)

print(f"repeat summary, {build_dir}: {times} runs each")
for n in names + [n for n in failures if n not in names]:
    if patterns or failures[n]:
        print(f"  {n:<70} {failures[n]:>3} of {times} failed")
flaky = [n for n, c in failures.items() if c]
print(f"repeat: {times} runs of {len(names)} tests, {len(flaky)} failed at least once")
sys.exit(1 if flaky else 0)
