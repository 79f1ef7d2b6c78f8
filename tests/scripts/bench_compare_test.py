#!/usr/bin/env python3
"""scripts/bench --compare without the benchmarks: its option parsing, the
revision it resolves, the verdict on canned figures, the table it renders,
the block it writes into a RESULTS.md and its exit status. Nothing here is
timed. Prints "N passed, M failed"."""
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "perf", "compare"))
import bench_compare  # noqa: E402
import builds  # noqa: E402
import compare_table  # noqa: E402
import runners  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "perf"))
import wrk  # noqa: E402

IN_GIT = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode == 0


def row(rev, tree, better="higher", yardstick=None, workload="echo, 1,000 conns, echo_load", figure="msg/s"):
    r = {"workload": workload, "figure": figure, "better": better, "rev": rev, "tree": tree}
    if yardstick is not None:
        r["yardstick"] = yardstick
    return r


def canned_run(raw_tree_http=True, rev_http_missing=True, slow_tree=False):
    """A saved run as bench_compare.measure() writes it: echo at 1,000
    connections (echo_load), http_server at 50 connections and one micro
    binary, 5 rounds. REV predates http_server when rev_http_missing."""
    rounds = 5
    yard = [300e3, 150e3, 320e3, 155e3, 310e3]  # the machine: fast, slow, fast, slow, fast

    def echo(rps, cpu):
        return [{"msg/s": rps[i], "server CPU µs/msg": cpu[i], "p99 µs": 9000.0} for i in range(rounds)]
    rev_rps = [200e3, 100e3, 210e3, 104e3, 205e3]
    tree_rps = ([140e3, 99e3, 150e3, 102e3, 145e3] if slow_tree else [201e3, 101e3, 209e3, 103e3, 204e3])
    raw = {
        "echo, 1,000 conns, echo_load": {
            "rev": echo(rev_rps, [3.5] * rounds),
            "tree": echo(tree_rps, [5.0 if slow_tree else 3.5] * rounds),
            "yardstick": echo(yard, [2.9] * rounds)},
        "http_server, 50 conns, wrk": {
            "rev": [{"missing": "no examples/http_server"}] * rounds if rev_http_missing else
            [{"req/s": 50e3, "server CPU µs/req": 20.0, "p99 ms": 2.0}] * rounds,
            "tree": [{"req/s": 51e3, "server CPU µs/req": 19.0, "p99 ms": 2.0}] * rounds, "yardstick": []},
        "micro: switch_bench": {
            "rev": [{"bobbin_yield": 30.0 + i, "bobbin_old_thing": 7.0} for i in range(rounds)],
            "tree": [{"bobbin_yield": 30.5 + i, "bobbin_new_thing": 5.0} for i in range(rounds)],
            "yardstick": []},
    }
    return {"rev": {"spec": "HEAD~3", "sha": "a" * 40, "subject": "older"},
            "tree": {"sha": "b" * 40, "dirty": True, "subject": "newer"},
            "date": "2026-12-05 18:00 UTC", "machine": "test machine", "command": "scripts/bench --compare HEAD~3",
            "rounds": rounds, "quick": False,
            "cells": [["echo", {"connections": 1000, "generator": "echo_load"}], ["http", {"connections": 50}],
                      ["micro", {"bench": "switch_bench"}]],
            "raw": raw}


class OptionParsing(unittest.TestCase):
    def test_a_revision_is_required(self):
        with self.assertRaises(bench_compare.UsageError):
            bench_compare.parse_args([])
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(bench_compare.main([]), 2)

    def test_defaults_and_quick(self):
        a = bench_compare.parse_args(["HEAD~2"])
        self.assertEqual((a.rev, a.rounds, a.quick), ("HEAD~2", 7, False))
        self.assertEqual(a.command, "scripts/bench --compare HEAD~2")
        q = bench_compare.parse_args(["b0a5d92", "--quick"])
        self.assertEqual((q.rounds, q.quick), (3, True))
        self.assertEqual(bench_compare.parse_args(["v1", "--rounds", "9"]).rounds, 9)

    def test_fewer_than_three_rounds_is_refused(self):
        with self.assertRaises(bench_compare.UsageError):
            bench_compare.parse_args(["HEAD", "--rounds", "2"])

    def test_each_side_goes_first_equally_often(self):
        for kind, sides in (("echo", 3), ("http", 2), ("micro", 2)):
            firsts = [bench_compare.round_order(kind, r)[0] for r in range(sides * 3)]
            self.assertEqual({firsts.count(s) for s in set(firsts)}, {3}, kind)
            self.assertEqual(len(set(firsts)), sides)

    def test_each_revision_spec_has_its_own_block(self):
        names = {bench_compare.section_name(s) for s in ("origin/main", "origin_main", "HEAD~1", "a-->b")}
        self.assertEqual(len(names), 4)
        self.assertTrue(all("-->" not in n for n in names))

    def test_unknown_option_exits_with_usage(self):
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit) as e:
            bench_compare.parse_args(["HEAD", "--no-such-option"])
        self.assertEqual(e.exception.code, 2)

    def test_quick_keeps_echo_at_1000_and_the_micro_benchmarks(self):
        quick = bench_compare.workloads(True)
        self.assertEqual([p["connections"] for k, p in quick if k == "echo"], [1000, 1000, 1000, 1000])
        self.assertEqual([p.get("backend") for k, p in quick if k == "echo"], [None, None, "epoll", "epoll"])
        self.assertFalse([c for c in quick if c[0] == "http"])
        self.assertEqual(len([c for c in quick if c[0] == "micro"]), 3)
        full = bench_compare.workloads(False)
        self.assertEqual(sorted({(p["connections"], p["generator"]) for k, p in full if k == "echo"}),
                         sorted((c, g) for c in (100, 1000, 10000) for g in ("echo_load", "go_echoload")))
        self.assertEqual([p["connections"] for k, p in full if k == "http"], [50, 1000])

    @unittest.skipUnless(IN_GIT, "not a git checkout")
    def test_revisions_resolve_or_are_named_in_the_error(self):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        self.assertEqual(builds.resolve("HEAD")["sha"], head)
        with self.assertRaises(builds.SetupError) as e:
            builds.resolve("no-such-revision-anywhere")
        self.assertIn("no-such-revision-anywhere", str(e.exception))

    @unittest.skipUnless(IN_GIT, "not a git checkout")
    def test_a_bad_revision_exits_2_before_any_build(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(bench_compare.main(["no-such-revision-anywhere", "--plan"]), 2)
        self.assertIn("is not a commit", err.getvalue())


class Verdict(unittest.TestCase):
    def test_a_lower_throughput_with_ranges_apart_is_a_regression(self):
        j = compare_table.judge(row([100, 101, 102, 99, 100], [90, 91, 89, 90, 92]))
        self.assertTrue(j["worse"] and j["regressed"])
        self.assertAlmostEqual(j["change"], 91 / 101 - 1)  # the median of the per-round ratios, round 2
        self.assertEqual(j["rev"], (100, 99, 102))

    def test_more_cpu_per_message_is_worse(self):
        j = compare_table.judge(row([3.0, 3.1, 3.0], [3.6, 3.5, 3.7], better="lower"))
        self.assertTrue(j["regressed"])
        self.assertFalse(compare_table.judge(row([3.6, 3.5, 3.7], [3.0, 3.1, 3.0], better="lower"))["worse"])

    def test_overlapping_ranges_are_marked_but_not_a_regression(self):
        j = compare_table.judge(row([100, 80, 120], [90, 85, 100]))  # round 2 went the other way
        self.assertTrue(j["worse"])
        self.assertFalse(j["regressed"])
        self.assertEqual(compare_table.regressions([row([100, 80, 120], [90, 85, 100])]), [])

    def test_within_five_percent_is_not_marked(self):
        self.assertFalse(compare_table.judge(row([100, 100, 100], [96, 96, 96]))["worse"])

    def test_the_ratio_pairs_rounds_so_a_drifting_machine_cancels(self):
        # The machine halves its speed after round 2; both sides follow.
        j = compare_table.judge(row([200, 210, 100, 105, 102], [198, 208, 101, 104, 101]))
        self.assertLess(abs(j["change"]), 0.02)
        self.assertFalse(j["worse"])

    def test_p99_is_marked_past_its_own_threshold(self):
        p99 = dict(better="lower", figure="p99 µs")
        self.assertFalse(compare_table.judge(row([1000] * 3, [1150] * 3, **p99))["worse"])
        self.assertTrue(compare_table.judge(row([1000] * 3, [1250] * 3, **p99))["regressed"])

    def test_failed_rounds_are_left_out(self):
        j = compare_table.judge(row([100, None, 102], [101, 99, None]))
        self.assertEqual(j["rev"], (101, 100, 102))
        self.assertEqual(j["tree"], (100, 99, 101))
        self.assertAlmostEqual(j["change"], 101 / 100 - 1)  # only round 1 has both sides

    def test_a_loss_only_while_the_machine_runs_fast_shows_in_the_fast_rounds(self):
        r = row([200, 100, 210, 104, 205], [140, 99, 150, 102, 145], yardstick=[300, 150, 320, 155, 310])
        self.assertLess(compare_table.fast_half_ratio(r), 0.75)
        self.assertIsNotNone(compare_table.yardstick_moved(r))

    def test_fast_rounds_of_a_cpu_row_are_chosen_by_the_raw_loops_speed(self):
        # CPU per message: higher in the slow rounds (2 and 4). The work
        # tree costs 40% more only in the fast rounds 1, 3 and 5.
        r = row([3.0, 6.0, 3.0, 6.0, 3.0], [4.2, 6.0, 4.2, 6.0, 4.2], better="lower", figure="server CPU µs/msg",
                yardstick=[2.8, 5.5, 2.8, 5.5, 2.8])
        r["yardstick_speed"] = [300e3, 150e3, 300e3, 150e3, 300e3]
        self.assertAlmostEqual(compare_table.fast_half_ratio(r), 1.4)

    def test_every_round_worse_counts_though_the_machine_drifts_more(self):
        # Worse by 8% in every one of 7 rounds; the machine's 2x drift
        # makes the ranges overlap.
        j = compare_table.judge(row([200, 100, 210, 104, 205, 110, 198], [184, 92, 193, 96, 189, 101, 182]))
        self.assertTrue(j["overlap"])
        self.assertTrue(j["every_round"] and j["regressed"])
        # In 5 rounds, all five going one way is too likely by chance.
        j = compare_table.judge(row([200, 100, 210, 104, 205], [184, 92, 193, 96, 189]))
        self.assertFalse(j["every_round"] or j["regressed"])

    def test_a_steady_yardstick_did_not_move(self):
        r = row([100, 90, 110], [100, 91, 109], yardstick=[300, 301, 299])
        self.assertIsNone(compare_table.yardstick_moved(r))


class Rendering(unittest.TestCase):
    def render(self, run):
        return compare_table.render(run, bench_compare.rows_of(run))

    def test_the_table_has_both_commits_the_machine_and_marks(self):
        text = self.render(canned_run(slow_tree=True))
        self.assertIn("HEAD~3 = aaaaaaaaaa", text)
        self.assertIn("work tree at bbbbbbbbbb with uncommitted changes", text)
        self.assertIn("test machine", text)
        self.assertIn("| echo, 1,000 conns, echo_load | server CPU µs/msg | 3.50 (3.50–3.50) | 5.00 (5.00–5.00) | "
                      "1.43x |", text)
        self.assertIn("**worse by 43%**, ranges apart", text)
        self.assertIn("Verdict: **", text)
        self.assertIn("**yes**: compare the ratios", text)  # the yardstick moved 2x

    def test_a_workload_revision_lacks_says_so(self):
        text = self.render(canned_run())
        self.assertIn("| http_server, 50 conns, wrk | req/s | not in REV (no examples/http_server) | 51,000", text)
        self.assertIn("| micro: bobbin_new_thing | ns per item | not in REV |", text)
        self.assertIn("| micro: bobbin_old_thing | ns per item | 7.00 (7.00–7.00) | not in the work tree |", text)
        self.assertIn("Verdict: no figure worse", text)

    def test_a_target_the_work_tree_lacks_is_named_in_its_column(self):
        run = canned_run(rev_http_missing=False)
        run["raw"]["http_server, 50 conns, wrk"]["tree"] = [{"missing": "no examples/http_server"}] * 5
        text = self.render(run)
        self.assertIn("| http_server, 50 conns, wrk | (not run) | n/a | no examples/http_server |", text)

    def test_wrk_output_is_parsed(self):
        text = """Running 3s test @ http://127.0.0.1:19401/
  1 threads and 50 connections
  Latency Distribution
     50%  410.00us
     75%  520.00us
     90%  700.00us
     99%    1.52ms
  120000 requests in 3.00s, 12.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  40000.00
"""
        r = wrk.parse(text)
        self.assertAlmostEqual(r.pop("p50_ms"), 0.41)  # 410 us
        self.assertEqual(r, {"requests": 120000, "seconds": 3.0, "rps": 40000.0, "p99_ms": 1.52, "errors": 3})
        self.assertIsNone(wrk.parse("wrk: connection refused"))


class FailedRuns(unittest.TestCase):
    def test_a_work_tree_that_fails_where_rev_did_not_is_a_regression(self):
        run = canned_run(rev_http_missing=False)
        run["raw"]["http_server, 50 conns, wrk"]["tree"] = [{"failed": "http_server did not listen on 19402"}] * 5
        rows = bench_compare.rows_of(run)
        self.assertEqual([r["workload"] for r in compare_table.regressions(rows)], ["http_server, 50 conns, wrk"])
        text = compare_table.render(run, rows)
        self.assertIn("| http_server, 50 conns, wrk | failed runs | 0 of 5 | 5 of 5: http_server did not listen", text)
        self.assertIn("**the work tree failed more often**", text)

    def test_failures_rev_alone_had_are_shown_but_not_a_regression(self):
        run = canned_run(rev_http_missing=False)
        run["raw"]["http_server, 50 conns, wrk"]["rev"][0] = {"failed": "wrk exit 1"}
        rows = bench_compare.rows_of(run)
        self.assertEqual(compare_table.regressions(rows), [])
        self.assertIn("| failed runs | 1 of 5: wrk exit 1 | 0 of 5 |", compare_table.render(run, rows))

    def test_a_micro_benchmark_that_errors_is_a_failure_not_an_absence(self):
        run = canned_run()
        for i in range(5):
            run["raw"]["micro: switch_bench"]["tree"][i] = {"bobbin_new_thing": 5.0,
                                                           "failed": "bobbin_yield: wrong sum"}
        rows = bench_compare.rows_of(run)
        text = compare_table.render(run, rows)
        self.assertNotIn("not in the work tree", text.split("bobbin_old_thing")[0])
        self.assertIn("5 of 5: bobbin_yield: wrong sum", text)
        self.assertTrue(compare_table.regressions(rows))


class AServerThatDoesNotStart(unittest.TestCase):
    def test_is_a_failed_run_not_a_crash(self):
        """A REV whose server rejects today's flags: the round records why,
        and no process is left behind."""
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "examples"))
            exe = os.path.join(d, "examples", "http_server")
            with open(exe, "w") as f:
                f.write("#!/bin/sh\necho \"unknown flag $1\" >&2\nexit 3\n")
            os.chmod(exe, 0o755)
            bench = bench_compare.Bench(have={"rev": {"examples/http_server"}}, build_dirs={"rev": d},
                                        generators={}, yardstick="", ports=runners.Ports(29400), root=d, seconds=1,
                                        min_time="0.1")
            with self.assertRaises(RuntimeError) as e:
                bench.run("http", {"connections": 50}, "rev")
            self.assertIn("did not listen", str(e.exception))
            self.assertIn("exit status 3", str(e.exception))
            missing = bench.run("micro", {"bench": "park_bench"}, "rev")
            self.assertEqual(missing, {"missing": "no perf/park_bench"})


class ResultsFileAndExitStatus(unittest.TestCase):
    def run_main(self, run, results):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(run, f)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return bench_compare.main(["--render-only", f.name, "--results", results])
        finally:
            os.unlink(f.name)

    def test_exit_status_and_one_block_per_revision(self):
        with tempfile.TemporaryDirectory() as d:
            results = os.path.join(d, "RESULTS.md")
            with open(results, "w") as f:
                f.write("# bobbin performance results\n\n<!-- echo:begin -->\necho\n<!-- echo:end -->\n")
            self.assertEqual(self.run_main(canned_run(slow_tree=True), results), 1)
            self.assertEqual(self.run_main(canned_run(), results), 0)  # same REV: replaces its block
            other = canned_run()
            other["rev"]["spec"] = "b0a5d92"
            self.assertEqual(self.run_main(other, results), 0)
            with open(results) as f:
                text = f.read()
        self.assertEqual(text.count("<!-- compare HEAD~3:begin -->"), 1)
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertEqual(bench_compare.main(["--render-only", "/nonexistent/run.json"]), 2)
        self.assertEqual(text.count("<!-- compare b0a5d92:begin -->"), 1)
        self.assertNotIn("**worse by 43%**", text)  # the second run replaced the first
        self.assertLess(text.index("<!-- echo:end -->"), text.index("## Comparisons"))
        self.assertLess(text.index("<!-- compare b0a5d92:end -->"), text.index("<!-- comparisons:end -->"))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
