// Not part of the bobbin API.
//
// Fiber dumps: what every live fiber of a runtime is doing, as text grouped
// by identical stacks (like Go's SIGQUIT traceback, with a count per group)
// or as JSON (like the JDK's `jcmd Thread.dump_to_file -format=json`).
//
// A dump pauses the runtime's carriers only where they mount a fiber
// (world_pause.h) while it walks the stacks of switched-out fibers
// (stack_walk.h). Running fibers keep running; the one that asked for the
// dump shows its own stack, and each other one the stack its carrier is
// on, scanned by the pinning monitor's signal (stack_capture.h), unless the
// carrier is blocked in a system call (a signal could cut it short).
#ifndef BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_
#define BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_

#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "bobbin/runtime.h"
#include "bobbin/wait_reason.h"
#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

class runtime_impl;

struct fiber_record {
  uint64_t id = 0;
  std::string name;
  fiber_state state = fiber_state::runnable;
  wait_reason reason = wait_reason::none;
  int carrier = -1;       // the carrier it runs on, or last ran on
  int64_t parked_ms = -1;  // how long it has been parked; -1 if not parked
  uint64_t parent_id = 0;
  std::source_location spawned_at;
  std::vector<uintptr_t> frames;  // return addresses, innermost first
  // A running fiber's stack comes from a scan of its carrier's stack
  // (stack_capture.h), which can include stale return addresses.
  bool scanned = false;
  std::string no_stack_why;  // set when frames is empty
  bool cancelled = false;    // fiber::request_stop() (or its scope, or shutdown) asked it to stop
};

struct fiber_snapshot {
  int carriers = 0;
  const char* backend = "io_uring";  // the reactors' (runtime_stats::backend)
  int64_t taken_at_unix_ms = 0;
  std::vector<fiber_record> fibers;  // by id
};

// Takes a snapshot of every live fiber of `rt`, stacks included; with
// `only`, of the fibers with those ids (the others' stacks are not walked).
fiber_snapshot snapshot_fibers(runtime_impl& rt, const absl::flat_hash_set<uint64_t>* only = nullptr);

std::string render_text(const fiber_snapshot& s);
// One fiber, ungrouped: a line naming it, its spawn site and its stack, each
// line indented by `indent`.
std::string render_one(const fiber_record& r, const std::string& indent);
std::string render_json(const fiber_snapshot& s);

// The symbolized function containing return address `pc` ("??" if
// unknown); cached.
std::string symbolize_return_address(uintptr_t pc);

// snapshot + render, as runtime::dump() does.
std::string dump_runtime(runtime_impl& rt, dump_format format);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_
