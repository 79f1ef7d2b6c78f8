"""What every perf/ report shares: the machine line, a target's verdict, and
replacing one marked section of perf/RESULTS.md without touching the
others."""
import os
import platform

HEADING = "# bobbin performance results\n"


def machine():
    """'<CPU model>, <n> CPUs, Linux <release>' for the report header."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def verdict(ratio, target):
    """'met', '**missed** by N%' for a ratio that must reach at least
    `target`, or 'n/a' when there is no ratio (None or 0: a side did not run)."""
    if not ratio:
        return "n/a"
    if ratio >= target:
        return "met"
    short = (1 - ratio / target) * 100
    return f"**missed** by {short:.0f}%" if short >= 0.5 else "**missed** by <1%"


def write_section(path, name, section, before=None):
    """Puts `section` between <!-- name:begin --> and <!-- name:end -->,
    replacing what was there, or adds it: just before the text `before` when
    that is in the file (a block inside another section), else at the end."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = HEADING
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif before is not None and before in text:
        at = text.index(before)
        text = text[:at] + block + "\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
