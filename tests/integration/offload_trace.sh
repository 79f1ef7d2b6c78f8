#!/usr/bin/env bash
# examples/offload under BOBBIN_TRACE_PINNED=full: the inline variant must be
# reported as pinned with a symbolized stack naming the CPU-heavy step, the
# offloaded one not at all.
set -euo pipefail
exe=$1
out=$(BOBBIN_TRACE_PINNED=full "$exe" --seconds 1 2>&1)
# Checks read $out from here-strings, never `echo "$out" | grep -q`: grep -q
# exits at its first match, a longer output's next write then gets SIGPIPE,
# and pipefail turns the match into a failure (CI failed so on stop 46).
fail() { echo "offload_trace: $1"; head -40 <<<"$out"; exit 1; }
grep -q 'pinned carrier 0 for .* ms \[cpu\]: running on the CPU' <<<"$out" || fail "no cpu pinning report"
grep -q '"conn (inline)" pinned carrier' <<<"$out" || fail "report does not name the inline fiber"
grep -qE '^    #[0-9]+ +0x[0-9a-f]+ .*cpu_heavy_step' <<<"$out" || fail "stack does not name cpu_heavy_step"
if grep -q '"conn (offload)" pinned' <<<"$out"; then fail "the offloaded variant was reported as pinned"; fi
offload_events=$(awk '$1 == "offload" {print $NF}' <<<"$out")
[ "$offload_events" = "0" ] || fail "offload row shows $offload_events pin events"
echo "1 passed, 0 failed"
