// bobbin/sync/semaphore.h
//
// A counting semaphore that parks fibers: bounds concurrency, e.g. at most 64
// fibers inside a backend client at once.
//
//   bobbin::semaphore slots(64);
//   slots.acquire();            // parks while the count is 0
//   ... use the backend ...
//   slots.release();
//
// Blocks: acquire() parks the fiber (blocks a plain thread) until a permit is
// free. Permits released while fibers wait go straight to the longest waiter
// (FIFO), so a steady stream of acquirers cannot starve a waiter.
// Cost: uncontended acquire/release take a spin lock once; no allocation.
// Ordering: release() happens-before the acquire() it satisfies.
#ifndef BOBBIN_SYNC_SEMAPHORE_H_
#define BOBBIN_SYNC_SEMAPHORE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace bobbin {

class BOBBIN_API semaphore {
 public:
  explicit semaphore(std::ptrdiff_t initial) : count_(initial) {}
  // Destroying a semaphore that fibers wait on is a bug: it writes a report
  // naming them, and they stay parked for good.
  ~semaphore();
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  // Never interrupted by a cancellation.
  void acquire() { (void)acquire_until(deadline::never(), /*cancellable=*/false); }
  bool try_acquire() noexcept;
  // Parks until a permit is had (true) or `d` passes (false); false too
  // when the calling fiber is cancelled.
  bool try_acquire_until(deadline d) { return acquire_until(d, /*cancellable=*/true); }
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> timeout) {
    return try_acquire_until(deadline(timeout));
  }
  void release(std::ptrdiff_t n = 1);
  // Permits free now (racy by nature; for metrics).
  std::ptrdiff_t available() const noexcept;

 private:
  bool acquire_until(deadline d, bool cancellable);
  mutable internal::spin_lock lock_;
  std::ptrdiff_t count_;
  internal::waiter_list waiters_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_SEMAPHORE_H_
