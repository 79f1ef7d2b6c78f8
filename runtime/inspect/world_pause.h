// Not part of the bobbin API.
//
// world_pause: keeps every carrier of a runtime from mounting a fiber while
// a dump walks the stacks of fibers that are switched out.
//
// Nothing is stopped that does not need to be. A carrier runs on until it
// is about to mount a fiber (carrier::switch_away, carrier::run); there,
// with the fiber already published in its current_, it sees the request and
// waits (carrier::wait_out_pause). Fibers already running go on running:
// a CPU-bound or pinned fiber keeps its carrier, and the dump lists it as
// running.
//
// Which stacks are safe to walk is decided once, right after the request:
// every stack except those that a carrier has mounted (its current_) or is
// leaving (its leaving_, until the context is saved). The request and the
// carriers' checks form a Dekker pair: the carrier stores current_ then
// loads the request; the dump stores the request, then runs
// membarrier(PRIVATE_EXPEDITED), a full barrier on every thread of the
// process, then loads current_. Either the carrier sees the request and
// does not mount, or the dump sees what it mounted. This keeps the
// carrier's side a plain load, with no fence on the switch path.
//
// Without membarrier (kernels before 4.14) stacks are not walked.
#ifndef BOBBIN_RUNTIME_INSPECT_WORLD_PAUSE_H_
#define BOBBIN_RUNTIME_INSPECT_WORLD_PAUSE_H_

#include "absl/container/flat_hash_set.h"
#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

class runtime_impl;

class world_pause {
 public:
  explicit world_pause(runtime_impl& rt);
  ~world_pause();  // lets the carriers mount fibers again
  world_pause(const world_pause&) = delete;
  world_pause& operator=(const world_pause&) = delete;

  // Whether `f`'s stack stays unchanged until this pause ends: it is
  // switched out and no carrier is mounting or leaving it.
  bool stack_is_frozen(const fiber_control* f) const;

 private:
  runtime_impl& rt_;
  bool exact_ = false;
  absl::flat_hash_set<const fiber_control*> busy_;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_WORLD_PAUSE_H_
