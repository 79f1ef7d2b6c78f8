"""The two builds of `scripts/bench --compare`: REV checked out into one git
worktree that is kept and moved from commit to commit
(build-compare/rev/src), built in release mode beside it
(build-compare/rev/build), and the work tree's build-release/. Keeping one
worktree and one build folder means a comparison with HEAD~1 after the last
one with HEAD~1 recompiles only what the commits between them changed, not
the whole runtime."""
import os
import shutil
import subprocess
import sys

PERF = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(PERF)
COMPARE_DIR = os.path.join(ROOT, "build-compare")
REV_SRC = os.path.join(COMPARE_DIR, "rev", "src")
REV_BUILD = os.path.join(COMPARE_DIR, "rev", "build")
TREE_BUILD = os.path.join(ROOT, "build-release")
sys.path.insert(0, PERF)
import go_build  # noqa: E402  (perf/go_build.py)


class SetupError(Exception):
    """A revision that does not resolve, a checkout or a build that fails:
    scripts/bench --compare exits 2 with this message."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def git(*argv, cwd=ROOT, check=True):
    out = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SetupError(f"git {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout.strip()


def resolve(spec):
    """The full commit id and subject of REV, or a SetupError naming it."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SetupError(f"{spec!r} is not a commit of this repository (try a commit id, a tag or HEAD~N)")
    sha = out.stdout.strip()
    return {"spec": spec, "sha": sha, "subject": git("log", "-1", "--format=%s", sha)}


def tree_info():
    sha = git("rev-parse", "HEAD")
    # perf/RESULTS.md is what this tool writes: a second comparison right
    # after a first must not call the code changed.
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!perf/RESULTS.md"))
    return {"sha": sha, "dirty": dirty, "subject": git("log", "-1", "--format=%s", sha)}


def checkout(sha):
    """REV's source in the kept worktree, moved to `sha`. git rewrites only
    the files that differ, so ninja recompiles only what changed."""
    head = git("rev-parse", "HEAD", cwd=REV_SRC, check=False) if os.path.exists(os.path.join(REV_SRC, ".git")) else ""
    if head:
        if head != sha:
            log(f"bench --compare: moving {os.path.relpath(REV_SRC, ROOT)} to {sha[:10]}")
            git("checkout", "--quiet", "--force", "--detach", sha, cwd=REV_SRC)
        return REV_SRC
    if os.path.exists(REV_SRC):  # a checkout left half-made, or moved by hand
        shutil.rmtree(REV_SRC)
    git("worktree", "prune")
    os.makedirs(os.path.dirname(REV_SRC), exist_ok=True)
    log(f"bench --compare: checking {sha[:10]} out into {os.path.relpath(REV_SRC, ROOT)}")
    git("worktree", "add", "--detach", "--force", REV_SRC, sha)
    return REV_SRC


def build(src, build_dir, wanted):
    """Configures the build folder once (release, no tests) and builds the
    wanted targets that the source defines. A target that does not compile
    at REV is left out, as one REV does not have: its workload says so in
    the table. Returns the set of targets built."""
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        log(f"bench --compare: meson setup {os.path.relpath(build_dir, ROOT)} (release)")
        out = subprocess.run(["meson", "setup", build_dir, src, "-Dbuildtype=release", "-Dtests=false"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SetupError(f"meson setup of {src} failed (removing {build_dir} starts afresh):\n"
                             f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
    listed = subprocess.run(["ninja", "-C", build_dir, "-t", "targets", "all"], capture_output=True, text=True)
    if listed.returncode != 0:
        raise SetupError(f"ninja -C {build_dir} -t targets: {listed.stderr.strip()[-500:]}")
    defined = {line.split(":", 1)[0] for line in listed.stdout.splitlines()}
    targets = [t for t in wanted if t in defined]
    if not targets:
        return set()
    log(f"bench --compare: ninja -C {os.path.relpath(build_dir, ROOT)} ({len(targets)} targets)")
    out = subprocess.run(["ninja", "-k", "0", "-C", build_dir, *targets], capture_output=True, text=True)
    if out.returncode == 0:
        return set(targets)
    # A binary that failed to relink may still be there from another
    # revision: only a target ninja has no work left for counts as built.
    built = {t for t in targets if "no work to do" in subprocess.run(
        ["ninja", "-C", build_dir, "-n", t], capture_output=True, text=True).stdout}
    if build_dir == TREE_BUILD or not built:
        raise SetupError(f"building {build_dir} failed (removing it starts afresh):\n{out.stdout[-3000:]}")
    log(f"bench --compare: at REV, {', '.join(t for t in targets if t not in built)} did not build; "
        "its rows say so")
    return built


def go_echoload():
    """perf/go/echoload in the work tree's build, or None without Go."""
    return go_build.build(os.path.join(TREE_BUILD, "perf", "go_echoload"), "./echoload")
