// Not part of the bobbin API.
//
// Lock-cycle detection for bobbin::mutex (see "Lock cycles" in
// bobbin/sync/mutex.h), on while internal::g_track_mutex_holders is set.
//
// Each mutex records its holder; each fiber records the mutex it waits for
// (mutex_wait_mark, for the length of a lock_slow). A fiber about to park
// follows holder -> the mutex that holder waits for -> its holder ... If
// the chain returns to the fiber, every fiber on it waits for the next and
// none can go on: a deadlock the report names, with stacks.
//
// The chain is read without locks while it may change, so a cycle seen
// once is confirmed: each fiber on it must still wait for the same mutex,
// in the same wait (its wait sequence number unchanged), and each mutex
// still be held by the same fiber. A fiber can stop waiting only by
// getting its mutex, which ends that wait, so an unchanged sequence number
// means it waited all along; and a waiting fiber cannot release what it
// holds. A real cycle never breaks by itself, so the confirmation cannot
// miss it; the last fiber to close it reports it. Two fibers may close it at
// the same moment and both see it: the first to mark the cycle's member
// with the smallest id (in that member's current wait) reports, once.
// What a walk reads stays valid while it reads it: while tracking is on, a
// fiber control block is freed, and a mutex destroyed, only when no walk is
// in progress (wait_out_cycle_walks; the protocol is in lock_cycle.cc), and
// a fiber that ends holding a mutex is never freed (fiber_exited_holding).
#ifndef BOBBIN_RUNTIME_SYNC_LOCK_CYCLE_H_
#define BOBBIN_RUNTIME_SYNC_LOCK_CYCLE_H_

#include "bobbin/sync/mutex.h"
#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

// Marks `self` (null: a plain thread, or tracking off: nothing to do) as
// waiting for `m` until destroyed.
class mutex_wait_mark {
 public:
  mutex_wait_mark(fiber_control* self, const mutex* m) noexcept;
  ~mutex_wait_mark();
  mutex_wait_mark(const mutex_wait_mark&) = delete;
  mutex_wait_mark& operator=(const mutex_wait_mark&) = delete;

  // Follows the chain of holders from the mutex; reports a cycle back to
  // `self` on stderr (fibers, mutexes, stacks). Does not block.
  void check_for_cycle();

 private:
  fiber_control* self_;
  const mutex* wanted_;
};

// Called as fiber `f` ends while tracking is on: if it still holds
// mutexes, reports it (they stay locked for good) and keeps `f` from being
// freed, since their holder fields point at it.
void fiber_exited_holding(fiber_control* f);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SYNC_LOCK_CYCLE_H_
