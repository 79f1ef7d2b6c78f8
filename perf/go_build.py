"""Builds one of perf/go's programs with Debian's golang-go (installed by
scripts/bootstrap --bench), for the perf/ drivers that run the Go peers and
the Go load generator."""
import os
import shutil
import subprocess
import sys

GO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "go")


def build(out, package):
    """`go build -o out package` in perf/go; the absolute path of the
    executable, or None (with the reason on stderr) when there is no Go or
    the build fails, so that the caller skips only the Go rows."""
    if shutil.which("go") is None:
        print(f"perf: go not found; {package} is skipped (scripts/bootstrap --bench installs it)", file=sys.stderr)
        return None
    out = os.path.abspath(out)
    env = dict(os.environ, GOFLAGS="-mod=mod", GO111MODULE="on")
    try:
        subprocess.run(["go", "build", "-o", out, package], cwd=GO_DIR, env=env, check=True, capture_output=True,
                       text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        print(f"perf: go build {package} failed ({detail.strip()[-300:]}); it is skipped", file=sys.stderr)
        return None
    return out
