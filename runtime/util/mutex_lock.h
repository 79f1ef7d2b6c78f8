// Not part of the bobbin API.
//
// absl::MutexLock, plus happens-before annotations for ThreadSanitizer.
// Why: Debian's Abseil is not built with TSan, so TSan cannot see the
// synchronization inside absl::Mutex and reports every section it guards as
// a race. In TSan builds this lock tells TSan what the mutex orders; in all
// other builds it is exactly absl::MutexLock.
//
// It also keeps the calling fiber from parking while it waits for or holds
// the lock: absl::Mutex backs off with nanosleep, which bobbin intercepts,
// and the runtime's own critical sections (run queues, the idle list) must
// never unmount the fiber that is inside them. The fiber counts as pinned
// for those few instructions (no_park_scope), so intercepted calls made in
// them are the plain libc calls.
#ifndef BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_
#define BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {
fiber_control* current_fiber_or_null() noexcept;  // carrier.cc
}

namespace bobbin::internal {

// While it lives, intercepted libc calls made by the calling fiber (if the
// caller is one) do not park it.
class no_park_scope {
 public:
  no_park_scope() noexcept : fiber_(current_fiber_or_null()) {
    // Only the fiber itself writes its pin depth: no read-modify-write needed.
    if (fiber_) fiber_->pin_depth.store(fiber_->pin_depth.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  ~no_park_scope() {
    if (fiber_) fiber_->pin_depth.store(fiber_->pin_depth.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  no_park_scope(const no_park_scope&) = delete;
  no_park_scope& operator=(const no_park_scope&) = delete;

 private:
  fiber_control* const fiber_;
};

class ABSL_SCOPED_LOCKABLE mutex_lock {
 public:
  explicit mutex_lock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
#if BOBBIN_TSAN
    __tsan_acquire(mu_);
#endif
  }
  ~mutex_lock() ABSL_UNLOCK_FUNCTION() {
#if BOBBIN_TSAN
    __tsan_release(mu_);
#endif
    mu_->Unlock();
  }
  mutex_lock(const mutex_lock&) = delete;
  mutex_lock& operator=(const mutex_lock&) = delete;

 private:
  no_park_scope no_park_;  // constructed before Lock(), destroyed after Unlock()
  absl::Mutex* const mu_;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_
