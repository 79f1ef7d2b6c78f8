#!/usr/bin/env python3
"""Runs a program with private PostgreSQL, redis-server and http_server
instances started for it (servers.py), named in its environment, and stops
them afterwards. Usage: run_with_servers.py HTTP_SERVER_EXE PROGRAM [ARGS...]
Exits with the program's status. A GoogleTest PROGRAM asked only to list its
cases (--gtest_list_tests) runs without the servers."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402

http_exe, argv = sys.argv[1], sys.argv[2:]
if "--gtest_list_tests" in argv:  # only naming its cases: no servers needed
    sys.exit(subprocess.run(argv).returncode)
with servers.all_servers(http_exe) as env:
    rc = subprocess.run(argv, env=env).returncode
sys.exit(rc)
