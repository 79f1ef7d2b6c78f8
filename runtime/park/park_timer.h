// Not part of the bobbin API.
//
// The timer of a fiber's timed park(), made before the caller takes the
// spin lock it parks with. park() makes it itself, with that lock held, and
// for a primitive's own lock that is fine (the allocation is brief, and if
// it waits on an OS lock the carrier blocks rather than the fiber parking:
// park.cc). The futex table's bucket locks are different: an allocator's
// own lock waits in that table and its unlock wakes there, so an
// allocation made holding a bucket's lock can wait for a lock whose holder
// spins on that same bucket lock (or takes it again itself). So can a full
// submission queue's submit, which the timeout's arm may trigger. The table
// makes the timer first, as the kernel's futex_wait sets up its timer
// before it takes the hash bucket's lock. Both are made pinned: a wait on
// an allocator's lock inside blocks the carrier, as a thread's would,
// rather than park in the table and need a timer of its own.
#ifndef BOBBIN_RUNTIME_PARK_PARK_TIMER_H_
#define BOBBIN_RUNTIME_PARK_PARK_TIMER_H_

#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace bobbin::internal {

class carrier;
struct timed_wait_timer;

// Owns a timer made for a park with deadline `d` (none for never) on the
// calling fiber's carrier `c`, until park() takes it; frees it if no park
// did. Also makes room for the timeout's SQE on `c`'s queue, so that the
// arm under the lock cannot submit a full queue (whose operations
// allocate). Between this and park() the fiber must not switch. Costs an
// allocation.
class park_timer {
 public:
  park_timer() = default;
  park_timer(carrier* c, deadline d);
  ~park_timer();
  park_timer(const park_timer&) = delete;
  park_timer& operator=(const park_timer&) = delete;

 private:
  friend wait_state park(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason,
                         bool cancellable, park_timer& made);
  timed_wait_timer* timer_ = nullptr;
};

// park() (bobbin/internal/park.h) with the timer made beforehand, for a
// deadline that is not never (`made` must have been made for `d`). A
// plain thread's wait does not use it.
wait_state park(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason, bool cancellable,
                park_timer& made);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PARK_PARK_TIMER_H_
