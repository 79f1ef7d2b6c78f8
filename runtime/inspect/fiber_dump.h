// Not part of the bobbin API.
//
// Fiber dumps: what every live fiber of a runtime is doing, as text grouped
// by identical stacks (like Go's SIGQUIT traceback, with a count per group)
// or as JSON (like the JDK's `jcmd Thread.dump_to_file -format=json`).
//
// A dump pauses the runtime's carriers only where they mount a fiber
// (world_pause.h) while it walks the stacks of switched-out fibers
// (stack_walk.h). Running fibers keep running; the one that asked for the
// dump shows its own stack, others on a CPU show none.
#ifndef BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_
#define BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_

#include <cstdint>
#include <source_location>
#include <string>
#include <vector>

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
  const char* no_stack_why = nullptr;  // set when frames is empty
};

struct fiber_snapshot {
  int carriers = 0;
  int64_t taken_at_unix_ms = 0;
  std::vector<fiber_record> fibers;  // by id
};

// Takes a snapshot of every live fiber of `rt`, stacks included.
fiber_snapshot snapshot_fibers(runtime_impl& rt);

std::string render_text(const fiber_snapshot& s);
std::string render_json(const fiber_snapshot& s);

// The symbolized function containing return address `pc` ("??" if
// unknown); cached.
std::string symbolize_return_address(uintptr_t pc);

// snapshot + render, as runtime::dump() does.
std::string dump_runtime(runtime_impl& rt, dump_format format);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_FIBER_DUMP_H_
