// Not part of the bobbin API.
//
// absl::MutexLock, plus happens-before annotations for ThreadSanitizer.
// Why: Debian's Abseil is not built with TSan, so TSan cannot see the
// synchronization inside absl::Mutex and reports every section it guards as
// a race. In TSan builds this lock tells TSan what the mutex orders; in all
// other builds it is exactly absl::MutexLock.
#ifndef BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_
#define BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "runtime/fiber/context.h"  // BOBBIN_TSAN

namespace bobbin::internal {

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
  absl::Mutex* const mu_;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_UTIL_MUTEX_LOCK_H_
