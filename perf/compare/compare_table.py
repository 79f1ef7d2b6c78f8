"""The verdict and the table of `scripts/bench --compare REV`: figures of two
builds measured in the same interleaved rounds, reduced to medians with their
spread, a mark on every figure that got worse, and the exit status a script
can act on. Pure functions of the measured figures, so tests can feed them
canned ones (tests/scripts/bench_compare_test.py).

A row is one figure of one workload:
  {"workload": "echo, 1 carrier, 1,000 connections, echo_load",
   "figure": "msg/s", "better": "higher" | "lower",
   "rev": [per-round value or None], "tree": [...],
   "yardstick": [per-round value of the raw io_uring loop] (echo rows only),
   "yardstick_speed": [the raw loop's msg/s per round] (echo rows only),
   "missing": "why one side has no figure" (optional),
   "missing_in": "tree" when that side is the work tree (else REV)}
or, for a workload with failed runs,
  {"workload": ..., "figure": "failed runs", "rounds": N,
   "failures": {"rev": [count, first reason], "tree": [count, first reason]}}
Lists are indexed by round, so rev[i], tree[i] and yardstick[i] were measured
minutes apart on the same machine state."""
import statistics

# A figure is marked when the median of its per-round ratios is worse than
# this; the exit status also wants the two sides' ranges (min-max over the
# rounds) not to overlap.
WORSE = 0.05
# Tail latency gets its own bound. The same commit against itself
# (scripts/bench --compare HEAD, 5 rounds, 2026-12-05) gave per-round p99
# ratios from 0.84x to 2.05x, while throughput, CPU per message and the
# micro-benchmarks stayed within a few percent in the median: at 5% every p99
# row of an unchanged tree would be marked sooner or later.
WORSE_TAIL = 0.20


EVERY_ROUND_MIN = 7


def threshold(row):
    return WORSE_TAIL if row["figure"].startswith("p99") else WORSE


def values(xs):
    return [x for x in xs or [] if x is not None]


def summary(xs):
    """(median, low, high) of the rounds that produced a figure, or None."""
    v = values(xs)
    return (statistics.median(v), min(v), max(v)) if v else None


def spread(xs):
    """max/min - 1 over the rounds: how far the figure moved during the run."""
    v = [x for x in values(xs) if x > 0]
    return max(v) / min(v) - 1 if len(v) >= 2 else None


def paired_ratios(row):
    """tree/rev per round, for the rounds where both sides produced a figure:
    the machine's speed cancels in each, what remains is noise and change."""
    return [t / r for r, t in zip(row.get("rev") or [], row.get("tree") or [])
            if r is not None and t is not None and r > 0]


def judge(row):
    """The verdict on one row: a dict with each side's (median, low, high),
    the change of the work tree against REV (the median of the per-round
    ratios, minus 1; positive: the figure grew), whether it is worse by more
    than the row's threshold, and whether the two ranges overlap. Pairing
    matters on a machine whose speed drifts: the same commit against itself
    gave 0.82x as the ratio of the two medians and 0.99x as the median of
    the per-round ratios (spawn + join, 5 rounds)."""
    a, b = summary(row.get("rev")), summary(row.get("tree"))
    out = {"rev": a, "tree": b, "change": None, "worse": False, "overlap": True, "regressed": False}
    if a is None or b is None or a[0] == 0:
        return out
    pairs = paired_ratios(row)
    change = (statistics.median(pairs) if pairs else b[0] / a[0]) - 1
    limit = threshold(row)
    worse = change < -limit if row["better"] == "higher" else change > limit
    overlap = not (b[2] < a[1] or a[2] < b[1])
    # Apart: the two sides' ranges do not overlap, or (on a machine whose
    # speed drifts more than the change) every round's pair went the worse
    # way, in at least EVERY_ROUND_MIN rounds: by chance that happens once in
    # 2^7 = 128 (a one-sided sign test at p < 0.01); with 5 rounds it would
    # be once in 32, and a run has about 36 rows.
    every_round = len(pairs) >= EVERY_ROUND_MIN and all(
        (x < 1) if row["better"] == "higher" else (x > 1) for x in pairs)
    out.update(change=change, worse=worse, overlap=overlap, regressed=worse and (not overlap or every_round),
               every_round=every_round)
    return out


def failed_more(row):
    """A workload whose work tree failed more runs than REV did: a
    regression however its figures compare."""
    f = row.get("failures")
    return bool(f) and f["tree"][0] > f["rev"][0]


def fast_half_ratio(row):
    """Median tree/rev ratio over the rounds in which the yardstick ran at or
    above its median: a loss that shows only while the machine runs fast
    (issue 28) shows here even when the slow rounds hide it in the median.
    Rounds are chosen by the raw loop's msg/s, for CPU rows as well."""
    ys = row.get("yardstick_speed") or row.get("yardstick")
    if not ys or not values(ys):
        return None
    cut = statistics.median(values(ys))
    pairs = [t / r for r, t, y in zip(row["rev"], row["tree"], ys)
             if r is not None and t is not None and y is not None and r > 0 and y >= cut]
    return statistics.median(pairs) if pairs else None


def yardstick_moved(row):
    """(yardstick spread, noise) when the raw loop's figure moved across the
    rounds by more than the noise between rounds, else None. The noise is
    the spread of the paired tree/rev ratios, where the machine's speed
    cancels."""
    moved = spread(row.get("yardstick"))
    noise = spread(paired_ratios(row))
    if moved is None or noise is None:
        return None
    return (moved, noise) if moved > noise else None


def regressions(rows):
    """Rows worse than their threshold with the sides apart, and workloads
    the work tree failed more often than REV: what makes
    `scripts/bench --compare` exit 1."""
    return [r for r in rows if failed_more(r) or (not r.get("failures") and judge(r)["regressed"])]


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(s):
    return "n/a" if s is None else f"{fmt(s[0])} ({fmt(s[1])}–{fmt(s[2])})"


def mark(j):
    if not j["worse"]:
        return ""
    text = f"**worse by {abs(j['change']) * 100:.0f}%**"
    if not j["overlap"]:
        return text + ", ranges apart"
    return text + (", every round" if j["every_round"] else ", ranges overlap")


def render(run, rows):
    """The markdown table of one comparison, with its header lines."""
    rev, tree = run["rev"], run["tree"]
    rev_name = rev["spec"] if rev["spec"].startswith(rev["sha"][:7]) else f"{rev['spec']} = {rev['sha'][:10]}"
    tree_name = f"work tree at {tree['sha'][:10]}" + (" with uncommitted changes" if tree.get("dirty") else "")
    lines = [f"### {tree_name} against {rev_name}\n",
             f"- Command: `{run['command']}`: {run['rounds']} interleaved rounds; in each round every workload "
             "runs REV, the work tree and the yardstick back to back, in an order that rotates between rounds.",
             f"- REV: {rev['sha'][:10]} ({rev.get('subject', '')[:90]})",
             f"- Work tree: {tree['sha'][:10]} ({tree.get('subject', '')[:90]})"
             + (", with uncommitted changes" if tree.get("dirty") else ""),
             f"- Date: {run['date']}",
             f"- Machine: {run['machine']}",
             "- Figures: median over the rounds, (lowest–highest) beside it. Ratio: the median of the per-round "
             "ratios, work tree ÷ REV, each pair measured seconds apart so that the machine's drift cancels (for "
             f"µs, ns and ms figures lower is better). Marked: worse by more than {WORSE:.0%} ({WORSE_TAIL:.0%} "
             "for p99, whose noise floor is that wide here); the exit status counts a mark when the sides are "
             "apart: \"ranges apart\" "
             "when "
             "no round of the one side overlaps the other's range, \"every round\" when each round's pair went the "
             "worse way. Fast rounds: the median of the per-round ratios "
             "(work tree ÷ REV) in the rounds where the yardstick ran at or above its median.\n",
             "| workload | figure | REV | work tree | ratio | fast rounds | mark |",
             "|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        if row.get("failures"):
            f, n = row["failures"], row["rounds"]
            side = lambda s: f"{f[s][0]} of {n}" + (f": {f[s][1][:60]}" if f[s][1] else "")  # noqa: E731
            flag = "**the work tree failed more often**" if failed_more(row) else ""
            lines.append(f"| {row['workload']} | failed runs | {side('rev')} | {side('tree')} | | | {flag} |"
                         .replace("\n", " "))
            continue
        if row.get("missing") and row.get("missing_in") == "tree":
            lines.append(f"| {row['workload']} | {row['figure']} | {cell(summary(row.get('rev')))} | "
                         f"{row['missing']} | | | |")
            continue
        if row.get("missing"):
            tree_s = summary(row.get("tree"))
            lines.append(f"| {row['workload']} | {row['figure']} | {row['missing']} | {cell(tree_s)} | | | |")
            continue
        j = judge(row)
        change = "n/a" if j["change"] is None else f"{1 + j['change']:.2f}x"
        fast = fast_half_ratio(row)
        fast_s = "" if fast is None else f"{fast:.2f}x"
        lines.append(f"| {row['workload']} | {row['figure']} | {cell(j['rev'])} | {cell(j['tree'])} | {change} | "
                     f"{fast_s} | {mark(j)} |")
    lines.append("")
    yard = [r for r in rows if r.get("yardstick")]
    if yard:
        lines.append("Yardstick: the raw io_uring callback loop (perf/echo/uring_raw_echo, the work tree's) on the "
                     "same cell in the same round. Noise: the spread (highest ÷ lowest − 1) of the per-round ratios, "
                     "work tree ÷ REV, in which the machine's speed cancels.\n")
        lines.append("| workload | figure | raw loop | raw loop spread | noise | machine moved |")
        lines.append("|---|---|---:|---:|---:|---|")
        for row in yard:
            moved = yardstick_moved(row)
            m, n = spread(row["yardstick"]), spread(paired_ratios(row))
            lines.append(f"| {row['workload']} | {row['figure']} | {cell(summary(row['yardstick']))} | "
                         f"{'n/a' if m is None else f'{m:.0%}'} | {'n/a' if n is None else f'{n:.0%}'} | "
                         + ("**yes**: compare the ratios, not the absolute figures" if moved else "no") + " |")
        lines.append("")
    bad = regressions(rows)
    worse = [r for r in rows if not r.get("failures") and judge(r)["worse"]]
    if bad:
        lines.append(f"Verdict: **{len(bad)} regression(s)** (worse than the threshold with the sides apart, or "
                     "more failed runs): "
                     + "; ".join(f"{r['workload']} {r['figure']}" for r in bad) + ".\n")
    elif worse:
        lines.append(f"Verdict: {len(worse)} figure(s) worse than their threshold in the median, but each "
                     "within the other side's range: no regression is shown.\n")
    else:
        lines.append(f"Verdict: no figure worse by more than {WORSE:.0%} ({WORSE_TAIL:.0%} for p99).\n")
    return "\n".join(lines)
