// Not part of the bobbin API.
//
// How a plain OS thread blocks in a bobbin primitive: a futex word per
// thread with permit semantics (like Java's LockSupport.park/unpark). A
// stale unpark only causes one spurious return, which callers tolerate by
// re-checking their waiter's state. It lives in thread-local storage, so an
// unpark never touches a stack frame that has already returned.
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
  static thread_parker* current() noexcept;

 private:
  std::atomic<uint32_t> permit_{0};
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PARK_THREAD_PARKER_H_
