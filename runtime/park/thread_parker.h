// Not part of the bobbin API.
//
// How a plain OS thread blocks in a bobbin primitive: a futex word per
// thread with permit semantics (like Java's LockSupport.park/unpark). A
// stale unpark only causes one spurious return, which callers tolerate by
// re-checking their waiter's state.
//
// Parkers are never freed. A thread takes one from a process-wide pool at
// its first wait and gives it back when it exits, so an unpark may come
// after the thread it was meant for has stopped waiting, or exited: it then
// lands on a live parker (at worst one spurious return for its next
// owner). That is what lets a notifier publish `notified` before its
// unpark (bobbin/internal/park.h), so that a woken thread never has to
// spin waiting for the notifier to finish: on a busy machine the kernel
// may preempt a notifier right after its futex wake, and a thread that
// spun for it burned its whole time slice (23% of all CPU in the
// four-library mix of perf/blocking).
#ifndef BOBBIN_RUNTIME_PARK_THREAD_PARKER_H_
#define BOBBIN_RUNTIME_PARK_THREAD_PARKER_H_

#include <atomic>
#include <cstdint>

#include "bobbin/deadline.h"

namespace bobbin::internal {

class thread_parker {
 public:
  // Returns when unparked (or spuriously) or when `d` passes.
  void park(deadline d) noexcept;
  void unpark() noexcept;
  // The calling thread's parker (taken from the pool at its first wait);
  // never freed.
  static thread_parker* current() noexcept;
  // Called when a thread's wait has ended: a wait made while the thread
  // exits, after its parker went back, gives back the one it took.
  static void wait_ended() noexcept;

 private:
  friend class thread_parker_pool;
  std::atomic<uint32_t> permit_{0};
  thread_parker* next_free_ = nullptr;  // in the pool's free list
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PARK_THREAD_PARKER_H_
