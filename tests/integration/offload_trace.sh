#!/usr/bin/env bash
# examples/offload under BOBBIN_TRACE_PINNED=full: the inline variant must be
# reported as pinned with a symbolized stack naming the CPU-heavy step, the
# offloaded one not at all.
set -euo pipefail
exe=$1
out=$(BOBBIN_TRACE_PINNED=full "$exe" --seconds 1 2>&1)
fail() { echo "offload_trace: $1"; echo "$out" | head -40; exit 1; }
echo "$out" | grep -q 'pinned carrier 0 for .* ms \[cpu\]: running on the CPU' || fail "no cpu pinning report"
echo "$out" | grep -q '"conn (inline)" pinned carrier' || fail "report does not name the inline fiber"
echo "$out" | grep -qE '^    #[0-9]+ +0x[0-9a-f]+ .*cpu_heavy_step' || fail "stack does not name cpu_heavy_step"
if echo "$out" | grep -q '"conn (offload)" pinned'; then fail "the offloaded variant was reported as pinned"; fi
offload_events=$(echo "$out" | awk '$1 == "offload" {print $NF}')
[ "$offload_events" = "0" ] || fail "offload row shows $offload_events pin events"
echo "1 passed, 0 failed"
